"""``aupguard review``, ``report violations`` and ``reviewer`` on a real store."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from aupguard import Keyring, Policy, Safeguards
from aupguard.cli.main import main
from tests.cli.test_main import run

POLICY = """
[ladder]
window = "30d"
warn = 1
throttle = 2
suspend = 3

[[moderation.rules]]
category = "weapons"
action = "block"
keywords = ["nerve agent synthesis"]
"""


@pytest.fixture
def cli(tmp_path: Path, key_entry: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    (tmp_path / "aupguard.toml").write_text(POLICY)
    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    args = ["--policy", str(tmp_path / "aupguard.toml"), "--store", f"sqlite:///{tmp_path / 'aupguard.db'}"]
    assert main([*args, "migrate"]) == 0  # the store exists, as after a first deploy: commands never create one
    return args


def seed(cli: list[str], keyring: Keyring, flags: dict[str, int]) -> dict[str, str]:
    """Flagged prompts per user, through the engine; returns user -> hash."""
    with Safeguards(Policy.from_toml(cli[1], env={}), store=cli[3], keyring=keyring) as guard:
        for user, n in flags.items():
            guard.check(user, prompt="hello")
            for _ in range(n):
                guard.check(user, prompt="nerve agent synthesis please")
        return {user: guard.hash_user(user) for user in flags}


@pytest.mark.parametrize(
    "command",
    [["review"], ["review", "list"], ["review", "show"], ["review", "claim"], ["review", "confirm"],
     ["review", "dismiss"], ["review", "suspend"], ["review", "reinstate"], ["review", "note"], ["report"],
     ["report", "violations"], ["reviewer"], ["reviewer", "add"], ["reviewer", "list"], ["reviewer", "remove"],
     ["console"]],
)  # fmt: skip
def test_every_review_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0 and "usage: aupguard" in capsys.readouterr().out


def test_list_show_confirm_dismiss(cli: list[str], keyring: Keyring, capsys: pytest.CaptureFixture[str]) -> None:
    hashes = seed(cli, keyring, {"alice": 2})
    code, out, _ = run(capsys, *cli, "review", "list", "--json")
    items = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(items) == 2 and {i["user_hash"] for i in items} == {hashes["alice"]}
    first, second = items[0]["id"], items[1]["id"]
    code, out, _ = run(capsys, *cli, "review", "show", first)
    assert code == 0 and "weapons" in out and "rate 66.7% (2 flagged / 3 calls)" in out
    code, out, _ = run(capsys, *cli, "review", "confirm", first, "--reviewer", "ops-ann", "--reason", "clear")
    assert code == 0 and f"item {first} confirmed by ops-ann" in out
    code, out, _ = run(capsys, *cli, "review", "dismiss", second, "--reviewer", "ops-ann")
    assert code == 0 and "dismissed" in out
    code, out, _ = run(capsys, *cli, "user", "status", "alice", "--json")
    assert json.loads(out)["strikes"] == 1  # the dismissed flag's strike is voided
    code, _, err = run(capsys, *cli, "review", "dismiss", first)
    assert code == 2 and "already confirmed" in err
    code, out, _ = run(capsys, *cli, "review", "list", "--status", "confirmed", "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [first]


def test_a_claim_held_in_the_console_blocks_the_cli(
    cli: list[str], keyring: Keyring, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(cli, keyring, {"bob": 1})
    item = json.loads(run(capsys, *cli, "review", "list", "--json")[1])["id"]
    assert run(capsys, *cli, "review", "claim", item, "--reviewer", "dana")[0] == 0
    code, _, err = run(capsys, *cli, "review", "confirm", item, "--reviewer", "eli")
    assert code == 2 and "dana is working on this item" in err


def test_suspend_reinstate_and_note_by_hash(
    cli: list[str], keyring: Keyring, capsys: pytest.CaptureFixture[str]
) -> None:
    hashes = seed(cli, keyring, {"carol": 1})
    code, out, _ = run(capsys, *cli, "review", "suspend", hashes["carol"], "--for", "2h", "--reason", "abuse")
    assert code == 0 and "suspended until" in out
    assert json.loads(run(capsys, *cli, "user", "status", "carol", "--json")[1])["level"] == "suspended"
    assert run(capsys, *cli, "review", "note", hashes["carol"], "called the customer")[0] == 0
    code, out, _ = run(capsys, *cli, "review", "reinstate", hashes["carol"])
    assert code == 0 and " ok" in out


def test_report_violations_table_csv_json(
    cli: list[str], keyring: Keyring, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    hashes = seed(cli, keyring, {"dave": 3, "erin": 1})
    code, out, _ = run(capsys, *cli, "report", "violations")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["rate", "flagged", "calls", "level", "strikes", "user"]
    assert lines[1].split()[-1] == hashes["dave"] and "suspended" in lines[1]  # the whole hash, never cut
    assert lines[1].split()[0] == "-" and "too few to rate" in lines[-1]  # 4 calls < report_min_calls (20)
    rated = run(capsys, *cli, "report", "violations", "--min-calls", "2", "--window", "7d")[1].splitlines()
    assert rated[1].split()[0] == "75.0%" and rated[2].split()[0] == "50.0%"
    run(capsys, *cli, "report", "violations", "--format", "csv", "--out", str(tmp_path / "r.csv"))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert [(r["user_hash"], r["flagged"], r["total"], r["rate"]) for r in rows] == [
        (hashes["dave"], "3", "4", "0.75"), (hashes["erin"], "1", "2", "0.5")
    ]  # fmt: skip
    data = json.loads(run(capsys, *cli, "report", "violations", "--format", "json")[1])
    assert data["users"][1]["level"] == "warned"
    printed = lines[2].split()[-1]  # pasted as printed into `review suspend`
    code, out, _ = run(capsys, *cli, "review", "suspend", printed, "--reviewer", "dana", "--reason", "from the report")
    assert code == 0 and printed == hashes["erin"] and "suspended" in out


def test_reviewer_accounts(cli: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    code, out, _ = run(capsys, *cli, "reviewer", "add", "dana", "--password-stdin")
    assert code == 0 and "reviewer dana added" in out
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code, _, err = run(capsys, *cli, "reviewer", "add", "eli", "--password-stdin")
    assert code == 2 and "at least 12" in err and "short" not in err
    code, _, err = run(capsys, *cli, "reviewer", "add", "bad name!", "--password-stdin")
    assert code == 2 and "reviewer name" in err
    assert run(capsys, *cli, "reviewer", "list")[1] == "dana\n"
    assert run(capsys, *cli, "reviewer", "remove", "dana")[0] == 0
    assert run(capsys, *cli, "reviewer", "remove", "dana")[0] == 2


def test_console_command_serves_the_console_alone(cli: list[str], tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-m", "aupguard", *cli, "console", "--port", str(port), "--insecure-cookie"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        response = None
        for _ in range(200):  # wait (bounded) for the server to listen
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2, follow_redirects=True)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert response is not None, proc.stderr.read1(4096) if proc.stderr else b""  # type: ignore[attr-defined]
        assert str(response.url).endswith("/login") and response.status_code == 200
        assert "default-src 'none'" in response.headers["content-security-policy"]
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "Secure" not in cookie  # --insecure-cookie
    finally:
        proc.terminate()
        proc.wait(10)


def test_audit_find_prints_headers_and_whole_ids(
    cli: list[str], keyring: Keyring, capsys: pytest.CaptureFixture[str]
) -> None:
    hashes = seed(cli, keyring, {"gina": 1})
    code, out, _ = run(capsys, *cli, "audit", "find", "--user", "gina")
    header, *rows = out.splitlines()
    assert code == 0 and header.split()[:3] == ["request_id", "at", "(UTC)"] and "message_id" in header
    assert len(rows) == 2 and all(hashes["gina"] in row.split() for row in rows)


@pytest.mark.parametrize(("new", "old"), [(["hash-key", "generate"], ["key", "generate"]),
                                          (["gateway-keys", "list"], ["keys", "list"])])  # fmt: skip
def test_renamed_key_commands_keep_their_old_names(
    new: list[str], old: list[str], cli: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [] if new[0] == "hash-key" else cli
    code_new, out_new, _ = run(capsys, *args, *new)
    code_old, out_old, _ = run(capsys, *args, *old)
    assert code_new == code_old == 0
    assert (out_new.split(":")[0] == out_old.split(":")[0]) if new[0] == "hash-key" else (out_new == out_old)
    with pytest.raises(SystemExit):
        main(["--help"])
    helptext = capsys.readouterr().out
    assert f"{new[0]} ({old[0]})" in helptext  # the help names both

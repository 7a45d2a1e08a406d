"""The ``aupguard`` command line: every command, its help, and clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aupguard import Keyring, generate_key_entry
from aupguard.cli.main import main
from aupguard.testing import CHAT_PATH, MessagesDouble

POLICY = """
[identity]
require_account = true

[terms]
version = "2026-01"
url = "https://example.com/aup"

[ladder]
window = "30d"
warn = 1
throttle = 2
suspend = 3
"""


@pytest.fixture
def cli(tmp_path: Path, key_entry: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Common arguments: a policy file and a store in tmp_path, the key in the environment."""
    (tmp_path / "aupguard.toml").write_text(POLICY)
    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    args = ["--policy", str(tmp_path / "aupguard.toml"), "--store", f"sqlite:///{tmp_path / 'aupguard.db'}"]
    assert main([*args, "migrate"]) == 0  # the store exists, as after a first deploy: commands never create one
    return args


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "command",
    [[], ["user"], ["user", "status"], ["user", "strike"], ["user", "void-strike"], ["user", "suspend"],
     ["user", "reinstate"], ["user", "accept-terms"], ["user", "events"], ["audit"], ["audit", "find"], ["key"],
     ["key", "generate"], ["doctor"], ["demo"], ["moderation"], ["moderation", "eval"]],
)  # fmt: skip
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: aupguard" in capsys.readouterr().out


def test_user_lifecycle(cli: list[str], capsys: pytest.CaptureFixture[str], keyring: Keyring) -> None:
    code, out, _ = run(capsys, *cli, "user", "accept-terms", "u-42", "--json")
    assert code == 0 and json.loads(out)["terms_version"] == "2026-01"
    code, out, _ = run(capsys, *cli, "user", "strike", "u-42", "--reason", "malware", "--category", "cyber")
    assert code == 0 and "level     warned" in out
    strike_id = out.split()[1]
    run(capsys, *cli, "user", "strike", "u-42", "--reason", "again")
    code, out, _ = run(capsys, *cli, "user", "status", "u-42", "--json")
    status = json.loads(out)
    assert (status["level"], status["strikes"]) == ("throttled", 2)
    assert status["user_hash"].startswith("t1_") and "u-42" not in out
    code, out, _ = run(capsys, *cli, "user", "void-strike", strike_id, "--reason", "appeal upheld")
    assert code == 0 and "level     warned" in out
    code, out, _ = run(capsys, *cli, "user", "suspend", "u-42", "--reason", "fraud", "--for", "2h")
    assert code == 0 and "level     suspended" in out and "until     20" in out
    code, out, _ = run(capsys, *cli, "user", "status", "u-42")
    assert "VOIDED (appeal upheld)" in out and "malware" in out
    code, out, _ = run(capsys, *cli, "user", "reinstate", "u-42", "--actor", "ops:jo")
    assert code == 0 and "level     ok" in out
    code, out, _ = run(capsys, *cli, "user", "events", "u-42")  # what was done about the user, newest first
    actions = [line.split()[3] for line in out.splitlines() if " level_changed " not in line]
    assert actions == ["reinstate", "suspend", "void_strike", "strike", "strike", "accept_terms"], out
    assert "reinstate              by ops:jo  reinstated by operator" in out and "u-42" not in out


def test_audit_find(cli: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from aupguard import Policy, Safeguards

    with Safeguards(Policy.from_toml(tmp_path / "aupguard.toml", env={}), store=cli[3]) as guard:
        decision = guard.check("u-42")
        guard.audit.link(decision.request_id, anthropic_request_id="req_01", message_id="msg_01")
    code, out, _ = run(capsys, *cli, "audit", "find", "--anthropic-request-id", "req_01", "--json")
    record = json.loads(out)
    assert code == 0 and record["request_id"] == decision.request_id and record["outcome"] == "terms_not_accepted"
    code, out, _ = run(capsys, *cli, "audit", "find", "--user", "u-42")
    assert decision.request_id in out and "msg_01" in out
    code, out, _ = run(capsys, *cli, "audit", "find", "--user", "nobody")
    assert out.strip() == "no matching records"
    code, _, err = run(capsys, *cli, "audit", "find")
    assert code == 2 and "give at least one of" in err


def test_doctor_reports_practices_and_checks(cli: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *cli, "doctor")
    assert code == 0
    assert "[x] Require an account before using Claude: on" in out
    assert "[x] Make sure users understand permitted uses: on" in out
    assert "[ ] Run a moderation API on every prompt before Claude: off" in out
    assert "[ ] Limit users to a set of prompts or a known corpus: off" in out
    for tier in ("Basic", "Intermediate", "Advanced", "Comprehensive"):
        assert f"\n{tier}\n" in out
    assert "ok  hash key ring: current key t1" in out


def test_doctor_sees_prompt_policy_and_moderators(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key_entry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    (tmp_path / "p.toml").write_text(
        "[prompts]\nmode = 'allowlist'\nallowlist = ['hi']\n"
        "[moderation]\nmode = 'before'\n[[moderation.rules]]\ncategory = 'weapons'\nkeywords = ['bomb']\n"
        "[moderation.openai]\nurl = 'http://127.0.0.1:9/v1/moderations'\n"
    )
    code, out, _ = run(capsys, "--policy", str(tmp_path / "p.toml"), "--store", "memory://", "doctor")
    assert code == 1  # the moderation endpoint does not answer: doctor says so
    assert "[x] Limit users to a set of prompts or a known corpus: on" in out
    assert "[x] Additional safety filters on prompts: on" in out
    assert "1 local rule(s), then an OpenAI-compatible endpoint" in out
    assert "[x] Run a moderation API on every prompt before Claude: on" in out
    assert "[ ] Use Claude for content moderation: off" in out
    assert "ok  moderator rules: 1 exact-phrase rule(s), local" in out
    assert (
        "ERR moderator openai: format /v1/moderations, model omni-moderation-latest, "
        "http://127.0.0.1:9/v1/moderations: did not answer a probe (connection error)"
    ) in out


def test_doctor_says_rules_alone_are_exact_phrases_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key_entry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    (tmp_path / "p.toml").write_text("[[moderation.rules]]\ncategory = 'weapons'\nkeywords = ['bomb']\n")
    code, out, _ = run(capsys, "--policy", str(tmp_path / "p.toml"), "--store", "memory://", "doctor")
    assert code == 0
    assert "[~] Additional safety filters on prompts: exact-phrase rules only (no model or remote moderator)" in out
    assert "[ ] Run a moderation API on every prompt before Claude: off" in out


def test_doctor_names_each_guard_model_and_probes_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    key_entry: str,
    monkeypatch: pytest.MonkeyPatch,
    messages_double: MessagesDouble,
) -> None:
    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    url = messages_double.chat_url
    (tmp_path / "p.toml").write_text(
        f"[[moderation.guard]]\nurl = '{url}'\nmodel = 'llama-guard3:1b'\nformat = 'llama-guard-3'\n"
        f"[[moderation.guard]]\nurl = '{url}'\nmodel = 'qwen3guard'\nformat = 'qwen3guard'\n"
        "[[moderation.guard]]\nurl = 'http://127.0.0.1:9/v1/chat/completions'\nmodel = 'm'\nformat = 'shieldgemma'\n"
    )
    messages_double.chat.answer("safe")
    messages_double.chat.answer("Safety: Safe\nCategories: None")
    code, out, _ = run(capsys, "--policy", str(tmp_path / "p.toml"), "--store", "memory://", "doctor")
    assert code == 1
    assert "[x] Additional safety filters on prompts: on" in out
    assert "guard model llama-guard-3 (format llama-guard-3), guard model qwen3guard (format qwen3guard)" in out
    assert f"ok  moderator llama-guard-3: format llama-guard-3, model llama-guard3:1b, {url}: answered a probe" in out
    assert f"ok  moderator qwen3guard: format qwen3guard, model qwen3guard, {url}: answered a probe" in out
    assert "ERR moderator shieldgemma: format shieldgemma, model m, " in out and "(connection error)" in out
    assert len(messages_double.requests_to(CHAT_PATH)) == 2


def test_doctor_without_terms_or_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.toml").write_text("[identity]\nrequire_account = false\n")
    code, out, _ = run(capsys, "--policy", str(tmp_path / "p.toml"), "--store", "memory://", "doctor")
    assert code == 1
    assert "[ ] Require an account before using Claude: off" in out
    assert "[ ] Make sure users understand permitted uses: off" in out
    assert "ERR hash key ring: no hash key: set the environment variable AUPGUARD_HASH_KEY" in out


@pytest.mark.parametrize(
    ("policy_text", "message"),
    [("[ladder\nwarn = 1", "invalid policy: policy file"),
     ("[ladder]\nwarn = 0", "invalid policy: ladder.warn = 0; allowed: an integer from 1 to 1000000"),
     ("[limits]\nstrategy = 'leaky'", "limits.strategy = 'leaky'; allowed: moving-window | fixed-window")],
)  # fmt: skip
def test_bad_policy_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key_entry: str, policy_text: str, message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    (tmp_path / "p.toml").write_text(policy_text)
    code, _, err = run(capsys, "--policy", str(tmp_path / "p.toml"), "user", "status", "u-1")
    assert code == 2 and message in err and "Traceback" not in err


def test_errors_never_show_a_traceback_or_the_raw_id(cli: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    huge = "secret-" + "x" * (10 * 1024 * 1024)
    assert run(capsys, *cli, "user", "accept-terms", "u-1")[0] == 0  # the store exists: status reads it
    code, _, err = run(capsys, *cli, "user", "status", huge)
    assert code == 2 and "user id is" in err and "secret-" not in err
    code, _, err = run(capsys, *cli, "user", "void-strike", "no-such-strike", "--reason", "x")
    assert code == 2 and "no strike has id" in err
    code, _, err = run(capsys, "--policy", "/nonexistent/aupguard.toml", "user", "status", "u")
    assert code == 2 and "an existing, readable TOML file" in err


def test_missing_key_from_a_real_process(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "aupguard", "--store", "memory://", "user", "status", "u-1"],
        env=env, capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("aupguard: error: no hash key: set the environment variable AUPGUARD_HASH_KEY")
    assert "Traceback" not in done.stderr


def test_key_generate_prints_a_usable_entry(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "key", "generate", "--kid", "prod2026")
    ring = Keyring.parse(out, source="test")
    assert code == 0 and ring.current.kid == "prod2026" and len(ring.current.secret) == 32


def test_missing_key_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.toml").write_text(f"[identity]\nhash_key_file = '{tmp_path / 'missing.key'}'\n")
    code, _, err = run(capsys, "--policy", str(tmp_path / "p.toml"), "--store", "memory://", "user", "status", "u")
    assert code == 2
    assert f"hash key file {tmp_path / 'missing.key'} does not exist (identity.hash_key_file)" in err
    assert "Traceback" not in err


def test_doctor_does_not_create_the_store(cli: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, *cli[:2], "--store", f"sqlite:///{tmp_path / 'fresh.db'}", "doctor")
    assert code == 0 and "does not exist yet; it will be created on first use" in out
    assert not (tmp_path / "fresh.db").exists()
    code, out, _ = run(capsys, *cli[:2], "--store", f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'a.db'}", "doctor")
    assert code == 1 and "is not a writable folder" in out


def test_doctor_checks_postgres_and_redis_without_showing_passwords(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key_entry: str, monkeypatch: pytest.MonkeyPatch,
    pg_url: str, redis_url: str,
) -> None:  # fmt: skip
    from tests.support.servers import free_port

    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    good = tmp_path / "good.toml"
    good.write_text(f'[storage]\nstore = "{pg_url}"\ncounters = "{redis_url}"\n')
    assert run(capsys, "--policy", str(good), "migrate")[0] == 0
    code, out, _ = run(capsys, "--policy", str(good), "doctor")
    assert code == 0, out
    assert "schema version" in out and f"ok  counters: {redis_url}" in out
    assert "ok  hash key and store: the store holds no user records yet" in out
    assert run(capsys, "--policy", str(good), "user", "strike", "u-42", "--reason", "malware")[0] == 0
    monkeypatch.setenv("AUPGUARD_HASH_KEY", generate_key_entry("k9"))
    code, out, _ = run(capsys, "--policy", str(good), "doctor")
    assert code == 1 and "ERR hash key and store: the store holds 1 user records, none under" in out
    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    bad = tmp_path / "bad.toml"
    dead = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    bad.write_text(f'[storage]\nstore = "{pg_url}"\ncounters = "{dead}"\ntimeout = "200ms"\n')
    code, out, err = run(capsys, "--policy", str(bad), "doctor")
    assert code == 1 and "does not answer" in out
    assert "hunter2" not in out + err


@pytest.mark.parametrize("url", ["https://ops:s3cr3t-pa55@api.example.com", "ftp://api.example.com"])
def test_gateway_upstream_override_is_checked_like_the_policy_key(
    cli: list[str], capsys: pytest.CaptureFixture[str], url: str
) -> None:
    # `--upstream` was passed on unchecked: its credentials went out in the Host header and
    # the start-up line printed them.
    code, out, err = run(capsys, *cli, "gateway", "--upstream", url)
    assert code == 2 and "--upstream" in err and out == ""
    assert "s3cr3t-pa55" not in err and "ops:" not in err


READING_COMMANDS = [
    ["user", "status", "u-42"],
    ["user", "events", "u-42"],
    ["audit", "find", "--user", "u-42"],
    ["capture", "export"],
    ["review", "list"],
    ["report", "violations"],
    ["reviewer", "list"],
    ["keys", "list", "--user", "u-42"],
]


@pytest.mark.parametrize("command", READING_COMMANDS, ids=" ".join)
def test_a_command_that_reads_never_creates_the_store(
    cli: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    # A mistyped --store used to create a new empty database, and `user status` then said
    # "level ok, strikes 0" with exit 0 about a user the real store has suspended.
    typo = tmp_path / "aupgaurd.db"
    code, out, err = run(capsys, "--policy", cli[1], "--store", f"sqlite:///{typo}", *command)
    assert code == 2 and out == ""
    assert f"no store at {typo}" in err and "never create one" in err
    assert not typo.exists()


def test_user_status_says_when_the_store_has_no_record_of_the_user(
    cli: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, *cli, "user", "strike", "u-42", "--reason", "malware")[0] == 0
    code, out, _ = run(capsys, *cli, "user", "status", "u-7")
    assert code == 0 and "level     ok" in out
    assert "no record for this user under key t1" in out
    code, out, _ = run(capsys, *cli, "user", "status", "u-7", "--strict")
    assert code == 1 and "no record for this user under key t1" in out
    code, out, err = run(capsys, *cli, "user", "status", "u-7", "--json", "--strict")
    assert code == 1 and json.loads(out)["recorded"] is False and "no record for this user" in err
    code, out, _ = run(capsys, *cli, "user", "status", "u-42", "--strict")
    assert code == 0 and "level     warned" in out and "no record" not in out
    code, out, _ = run(capsys, *cli, "user", "status", "u-42", "--json")
    assert json.loads(out)["recorded"] is True


def test_user_status_under_a_wrong_hash_key_is_no_record(
    cli: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, *cli, "user", "suspend", "u-42", "--reason", "fraud")[0] == 0
    monkeypatch.setenv("AUPGUARD_HASH_KEY", generate_key_entry("t1"))  # same key id, another secret
    code, out, _ = run(capsys, *cli, "user", "status", "u-42", "--strict")
    assert code == 1 and "level     ok" in out and "no record for this user under key t1" in out


def test_doctor_checks_the_store_against_the_hash_key(
    cli: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, key_entry: str
) -> None:
    assert run(capsys, *cli, "user", "strike", "u-42", "--reason", "malware")[0] == 0
    code, out, _ = run(capsys, *cli, "doctor")
    assert code == 0 and "ok  hash key and store: 1 of 1 user records under the current key t1" in out
    monkeypatch.setenv("AUPGUARD_HASH_KEY", f"{generate_key_entry('t2')}\n{key_entry}")  # rotated: t1 is previous
    code, out, _ = run(capsys, *cli, "doctor")
    assert code == 0 and "none of 1 user records under the current key t2 yet; 1 under previous keys" in out
    monkeypatch.setenv("AUPGUARD_HASH_KEY", generate_key_entry("k9"))  # the wrong ring
    code, out, _ = run(capsys, *cli, "doctor")
    assert code == 1
    assert "ERR hash key and store: the store holds 1 user records, none under the key ids of this key ring (k9)" in out


@pytest.mark.parametrize(
    "command",
    [["user", "suspend", "u-42", "--for", "1d", "--reason", "x"], ["user", "strike", "u-42", "--reason", "x"],
     ["user", "reinstate", "u-42"], ["keys", "create", "--user", "u-42"]],
    ids=" ".join,
)  # fmt: skip
def test_a_command_that_writes_never_creates_the_store_either(
    cli: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    """A suspension typed against a mistyped --store used to land in a new file nobody reads,
    while the command said it was done."""
    typo = tmp_path / "aupgaurd.db"
    code, _, err = run(capsys, cli[0], cli[1], "--store", f"sqlite:///{typo}", *command)
    assert code == 2 and f"no store at {typo}" in err and not typo.exists()
    code, _, err = run(capsys, cli[0], cli[1], "--store", f"sqlite:///{typo}", "migrate")
    assert code == 0 and typo.exists()  # migrate is how a new store is made

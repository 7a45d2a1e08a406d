"""``aupguard review appeals / appeal / uphold / deny`` on a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aupguard import Keyring, Policy, Safeguards
from tests.cli.test_main import run
from tests.cli.test_review import cli  # noqa: F401 - the fixture


def test_list_show_uphold_and_deny_from_the_cli(
    cli: list[str],  # noqa: F811 - the fixture imported above
    keyring: Keyring,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    with Safeguards(Policy.from_toml(cli[1], env={}), store=cli[3], keyring=keyring) as guard:
        first = guard.strike("u1", reason="r", category="weapons").strike
        second = guard.strike("u2", reason="r", category="hate").strike
        one = guard.appeal("u1", strike_id=first.id, text="my chemistry homework")
        two = guard.appeal("u2", strike_id=second.id, text="a quotation")
        hashes = guard.hash_user("u1"), guard.hash_user("u2")

    code, out, _ = run(capsys, *cli, "review", "appeals", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["id"] for r in rows] == [one, two]  # oldest first
    assert [r["user_hash"] for r in rows] == list(hashes) and "u1" not in out.replace(hashes[0], "")
    code, out, _ = run(capsys, *cli, "review", "appeal", one)
    assert code == 0 and "my chemistry homework" in out and first.id in out

    assert run(capsys, *cli, "review", "uphold", one, "--reason", "homework is fine", "--reviewer", "ann")[0] == 0
    assert run(capsys, *cli, "review", "deny", two, "--reason", "the quotation was an instruction")[0] == 0
    code, _, err = run(capsys, *cli, "review", "deny", one, "--reason", "again")
    assert code == 2 and "upheld already" in err
    with pytest.raises(SystemExit):  # the user reads the reason: argparse requires it
        run(capsys, *cli, "review", "uphold", one)
    code, _, err = run(capsys, *cli, "review", "uphold", two, "--reason", "  ")
    assert code == 2 and "reason" in err

    with Safeguards(Policy.from_toml(cli[1], env={}), store=cli[3], keyring=keyring) as guard:
        assert guard.status("u1").strikes == 0 and guard.status("u2").strikes == 1
        (decided,) = guard.notices("u1").appeals
        assert decided["status"] == "upheld" and decided["reason"] == "homework is fine"
        (event,) = [e for e in guard.audit.events(user_id="u1") if e.action == "appeal_decided"]
        assert event.actor == "reviewer:ann"
    code, out, _ = run(capsys, *cli, "review", "appeals")
    assert out.strip() == "no appeals"

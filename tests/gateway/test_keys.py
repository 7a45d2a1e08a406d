"""Gateway keys: stored hashed on SQLite and PostgreSQL, shown once, revoked, listed by
hash; ``aupguard keys`` and ``aupguard gateway`` on the command line."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from aupguard import Keyring, generate_key_entry
from aupguard.cli.main import main
from aupguard.errors import AupguardError, ConfigurationError
from aupguard.gateway import GatewayKeys
from aupguard.identity import HashedUser
from aupguard_gateway import build_gateway, gateway_key
from tests.conftest import Clock, MakeGuard


def test_a_key_is_stored_only_as_its_hash(make_guard: MakeGuard, tmp_path: Path) -> None:
    guard = make_guard()
    keys = GatewayKeys(guard)
    issued = keys.create("alice")
    assert issued.key.startswith(f"agk_{issued.key_id}_") and issued.key not in repr(issued)
    assert keys.user_for(issued.key) == guard.hash_user("alice")
    guard.close()
    stored = (tmp_path / "aupguard.db").read_bytes()
    assert (
        issued.key.encode() not in stored and issued.key.split("_", 2)[2].encode() not in stored
    )  # the secret may hold "_"
    with sqlite3.connect(tmp_path / "aupguard.db") as conn:
        (row,) = conn.execute("SELECT key_id, user_hash, revoked_at FROM gateway_keys").fetchall()
    assert row == (issued.key_id, guard.hash_user("alice"), None)


def test_wrong_keys_find_no_user(make_guard: MakeGuard) -> None:
    keys = GatewayKeys(make_guard())
    issued = keys.create("alice")
    tampered = issued.key[:-1] + ("A" if issued.key[-1] != "A" else "B")
    for key in (None, "", tampered, "agk_" + issued.key_id, "ünïcode", issued.key + "x"):
        assert keys.user_for(key) is None


def test_revocation_is_immediate_here_and_within_the_cache_time_elsewhere(make_guard: MakeGuard) -> None:
    guard = make_guard()
    clock = Clock(0.0)
    here, elsewhere = GatewayKeys(guard), GatewayKeys(guard, cache_for=1.0, clock=clock)
    issued = here.create("alice")
    assert here.user_for(issued.key) and elsewhere.user_for(issued.key)
    here.revoke(issued.key_id)
    assert here.user_for(issued.key) is None
    assert elsewhere.user_for(issued.key) is not None  # remembered for up to key_cache
    clock.advance(1.01)
    assert elsewhere.user_for(issued.key) is None
    with pytest.raises(AupguardError, match="no active gateway key"):
        here.revoke(issued.key_id)


def test_a_key_under_a_retired_hash_key_is_refused(make_guard: MakeGuard, keyring: Keyring) -> None:
    old = make_guard()
    issued = GatewayKeys(old).create("alice")
    old.close()
    ring = Keyring((Keyring.parse(generate_key_entry("t2"), source="t").current, *keyring.keys))
    new = make_guard(ring=ring)  # t2 is current, t1 still recognised
    assert GatewayKeys(new).user_for(issued.key) is None  # the user's standing moved to the t2 hash: re-issue
    assert GatewayKeys(new).user_for(GatewayKeys(new).create("alice").key) == new.hash_user("alice")


def test_keys_on_postgresql(make_guard: MakeGuard, pg_url: str) -> None:
    guard = make_guard(store=pg_url)
    keys = GatewayKeys(guard)
    first, second = keys.create("alice"), keys.create("bob")
    assert keys.user_for(first.key) == HashedUser(guard.hash_user("alice"))
    keys.revoke(second.key_id)
    assert keys.user_for(second.key) is None
    listed = {k.key_id: k for k in keys.list()}
    assert listed[first.key_id].revoked_at is None and listed[second.key_id].revoked_at is not None
    assert [k.key_id for k in keys.list("bob")] == [second.key_id]
    events = guard.audit.events(user_id="bob")
    assert [(e.action, e.details["key_id"], e.actor) for e in events] == [
        ("gateway_key_revoked", second.key_id, "system"),
        ("gateway_key_created", second.key_id, "system"),
    ]


def test_a_hashed_user_is_the_same_user_as_their_raw_id(make_guard: MakeGuard) -> None:
    guard = make_guard()
    guard.suspend("alice", reason="test")
    assert guard.check(HashedUser(guard.hash_user("alice"))).error == "user_suspended"


def test_the_key_is_read_from_x_api_key_or_bearer() -> None:
    from starlette.datastructures import Headers

    def key(*pairs: tuple[str, str]) -> str | None:
        return gateway_key(Headers(raw=[(k.encode(), v.encode()) for k, v in pairs]))

    assert key(("x-api-key", "k1")) == "k1"
    assert key(("authorization", "Bearer k2")) == "k2"
    assert key(("authorization", "Basic k3")) is None and key() is None


def test_the_gateway_refuses_to_start_without_what_it_needs(
    make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        build_gateway(make_guard())
    with pytest.raises(ConfigurationError, match="require_account"):
        build_gateway(make_guard({"identity": {"require_account": False}}), upstream_key="k")


def test_cli_create_list_revoke(
    tmp_path: Path, key_entry: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    common = ["--store", f"sqlite:///{tmp_path / 'a.db'}"]
    assert main([*common, "migrate"]) == 0  # commands never create a store: a first deploy makes one
    capsys.readouterr()
    assert main([*common, "keys", "create", "--user", "alice@example.com"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("agk_") and "shown only now" in err and "alice" not in out + err
    assert main([*common, "keys", "list"]) == 0
    out, _ = capsys.readouterr()
    key_id = key.split("_")[1]
    assert key_id in out and "revoked -" in out and key not in out and "alice" not in out
    assert main([*common, "keys", "revoke", key_id]) == 0
    capsys.readouterr()
    assert main([*common, "keys", "list", "--json", "--user", "alice@example.com"]) == 0
    out, _ = capsys.readouterr()
    assert '"revoked_at": null' not in out and key_id in out
    assert main([*common, "keys", "revoke", key_id]) == 2
    assert "no active gateway key" in capsys.readouterr().err
    assert main([*common, "keys", "create", "--user", "bob", "--actor", "ops:jo"]) == 0
    capsys.readouterr()
    assert main([*common, "keys", "revoke", key_id, "--actor", "ops:sam"]) == 2  # revoked already
    assert main([*common, "user", "events", "alice@example.com", "--json"]) == 0
    alice = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["action"], e["details"]["key_id"]) for e in alice] == [
        ("gateway_key_revoked", key_id),
        ("gateway_key_created", key_id),
    ]  # newest first; the second revoke recorded nothing
    assert main([*common, "user", "events", "bob", "--json"]) == 0
    (bob,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (bob["action"], bob["actor"]) == ("gateway_key_created", "ops:jo")


@pytest.mark.parametrize("command", [["keys"], ["keys", "create"], ["keys", "revoke"], ["keys", "list"], ["gateway"]])
def test_every_gateway_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0 and "usage: aupguard" in capsys.readouterr().out


def test_cli_gateway_without_an_upstream_key_fails_cleanly(
    tmp_path: Path, key_entry: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["--store", f"sqlite:///{tmp_path / 'a.db'}", "migrate"]) == 0
    capsys.readouterr()
    assert main(["--store", f"sqlite:///{tmp_path / 'a.db'}", "gateway", "--upstream", "http://127.0.0.1:9"]) == 2
    assert "ANTHROPIC_API_KEY" in capsys.readouterr().err

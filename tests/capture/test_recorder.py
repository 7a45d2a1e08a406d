"""Captured prompts and completions: encrypted at rest, readable by the operator with the
master key, unreadable without it, erased with the user's data key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aupguard import ConfigurationError, Keyring, Policy, Safeguards, generate_key_entry
from aupguard.cli.main import main
from aupguard.testing import MessagesDouble
from tests.conftest import DAY, Clock, MakeGuard

CAPTURE = {"capture": {"enabled": True, "key_env": "TEST_CAPTURE_KEY", "retention": "7d"}}


@pytest.fixture
def master(monkeypatch: pytest.MonkeyPatch) -> str:
    entry = generate_key_entry("c1")
    monkeypatch.setenv("TEST_CAPTURE_KEY", entry)
    return entry


def test_prompts_and_completions_are_encrypted_and_exported(
    make_guard: MakeGuard, master: str, messages_double: MessagesDouble, tmp_path: Path
) -> None:
    guard = make_guard(CAPTURE)
    decision = guard.check("alice", prompt="my secret question about taxes")
    client = guard.instrument(messages_double.client())
    messages_double.messages.text("a secret answer")
    with guard.as_user("alice", decision):
        client.messages.create(model="claude-sonnet-5-5", max_tokens=20, messages=[{"role": "user", "content": "q"}])
    items = list(guard.capture.export())
    assert [(i.kind, i.text, i.request_id) for i in items] == [
        ("prompt", "my secret question about taxes", decision.request_id),
        ("completion", "a secret answer", decision.request_id),
    ]
    guard.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"secret question" not in raw and b"secret answer" not in raw  # ciphertext only at rest


def test_without_the_master_key_nothing_decrypts(
    make_guard: MakeGuard, master: str, keyring: Keyring, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = make_guard(CAPTURE)
    guard.check("alice", prompt="private words")
    guard.close()
    monkeypatch.setenv("TEST_CAPTURE_KEY", generate_key_entry("c9"))  # another master key
    other = Safeguards(
        Policy.from_mapping(CAPTURE, env={}), store=f"sqlite:///{tmp_path / 'aupguard.db'}", keyring=keyring
    )
    with pytest.raises(ConfigurationError, match="capture master key 'c1'"):
        list(other.capture.export())
    other.close()
    monkeypatch.delenv("TEST_CAPTURE_KEY")
    with pytest.raises(ConfigurationError, match="TEST_CAPTURE_KEY"):
        Safeguards(Policy.from_mapping(CAPTURE, env={}), store="memory://", keyring=keyring)


def test_forgetting_a_user_erases_their_text_only(make_guard: MakeGuard, master: str) -> None:
    guard = make_guard(CAPTURE)
    guard.check("alice", prompt="alice's words")
    guard.check("bob", prompt="bob's words")
    assert guard.capture.forget("alice") == 1
    assert [i.text for i in guard.capture.export()] == ["bob's words"]
    assert guard.store.capture_key(guard.hash_user("alice")) is None
    guard.check("alice", prompt="new words")  # a new key from now on
    assert sorted(i.text for i in guard.capture.export()) == ["bob's words", "new words"]


def test_retention_purge_and_filters(make_guard: MakeGuard, master: str, clock: Clock) -> None:
    guard = make_guard(CAPTURE, clock=clock)
    guard.check("alice", prompt="old")
    clock.advance(8 * DAY)
    guard.check("alice", prompt="new")
    guard.check("bob", prompt="bob")
    assert [i.text for i in guard.capture.export(user_id="alice")] == ["old", "new"]
    assert guard.capture.purge() == 1
    assert sorted(i.text for i in guard.capture.export()) == ["bob", "new"]


def test_a_moved_ciphertext_does_not_decrypt(make_guard: MakeGuard, master: str) -> None:
    guard = make_guard(CAPTURE)
    first = guard.check("alice", prompt="first")
    second = guard.check("alice", prompt="second")
    guard.audit.flush()
    conn = guard.store._conn
    row = conn.execute("SELECT nonce, ciphertext FROM captures WHERE request_id = ?", (first.request_id,)).fetchone()
    conn.execute("UPDATE captures SET nonce = ?, ciphertext = ? WHERE request_id = ?", (*row, second.request_id))
    assert [i.text for i in guard.capture.export()] == ["first"]  # the moved copy is refused


def test_capture_off_by_default_and_for_anonymous_calls(make_guard: MakeGuard, master: str) -> None:
    guard = make_guard()
    guard.check("alice", prompt="hi")
    assert guard.capture.count() == 0
    anon = make_guard({**CAPTURE, "identity": {"require_account": False}})
    anon.check(None, prompt="hi")
    assert anon.capture.count() == 0


def test_cli_export_purge_forget(
    make_guard: MakeGuard,
    master: str,
    key_entry: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    guard = make_guard(CAPTURE)
    for n in range(3):
        guard.check("alice", prompt=f"prompt {n}")
    guard.close()
    policy = tmp_path / "p.toml"
    policy.write_text("[capture]\nenabled = true\nkey_env = 'TEST_CAPTURE_KEY'\nretention = '7d'\n")
    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    common = ["--policy", str(policy), "--store", f"sqlite:///{tmp_path / 'aupguard.db'}"]
    out = tmp_path / "export.jsonl"
    assert main([*common, "capture", "export", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["text"] for line in lines] == ["prompt 0", "prompt 1", "prompt 2"]
    assert "3/3 exported" in capsys.readouterr().err  # the progress bar
    assert main([*common, "capture", "purge"]) == 0
    assert main([*common, "capture", "forget", "alice"]) == 0
    assert "3 captured texts of that user erased" in capsys.readouterr().out
    assert main([*common, "capture", "export"]) == 0
    assert capsys.readouterr().out == ""


def test_forget_after_a_hash_key_rotation_erases_everything(make_guard: MakeGuard, master: str, key_entry: str) -> None:
    old = make_guard(CAPTURE)
    old.check("alice", prompt="before the rotation")
    old.close()
    ring = Keyring.parse(f"{generate_key_entry('t2')}\n{key_entry}:2999-12-31", source="test")
    rotated = make_guard(CAPTURE, ring=ring)
    rotated.check("alice", prompt="after the rotation")
    assert sorted(i.text for i in rotated.capture.export(user_id="alice")) == [
        "after the rotation",
        "before the rotation",
    ]
    assert rotated.capture.forget("alice") == 2
    assert list(rotated.capture.export()) == []

"""The PostgreSQL store: every record kind round-trips, concurrent processes lose no strike,
changes reach other engines, migrations run once (on start or by ``aupguard migrate``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from aupguard import Keyring, Level, Policy, Safeguards, StoreError, generate_key_entry
from aupguard.cli.main import main as cli
from aupguard.stores.sqlite.schema import SCHEMA_VERSION
from tests.conftest import MakeGuard

ROOT = Path(__file__).resolve().parents[3]
LADDER = {"ladder": {"window": "30d", "warn": 1, "throttle": 3, "suspend": 5}}


def test_user_actions_and_their_events_round_trip(pg_url: str, make_guard: MakeGuard) -> None:
    guard = make_guard(LADDER, store=pg_url)
    first = guard.strike("u-1", reason="spam", category="spam").strike
    guard.strike("u-1", reason="again")
    assert guard.status("u-1").level is Level.WARNED and guard.status("u-1").strikes == 2
    guard.void_strike(first.id, reason="false positive", actor="rev")
    assert guard.status("u-1").strikes == 1
    voided = next(s for s in guard.strikes("u-1") if s.id == first.id)
    assert voided.voided_at is not None and voided.void_reason == "false positive"
    guard.suspend("u-1", reason="abuse", actor="ops")
    assert guard.check("u-1").error == "user_suspended"
    guard.reinstate("u-1", actor="ops")
    assert guard.check("u-1").allowed
    actions = [e.action for e in guard.audit.events(user_id="u-1")]
    assert {"strike", "void_strike", "suspend", "reinstate", "level_changed"} <= set(actions)


def test_decision_records_link_to_every_claude_call(pg_url: str, make_guard: MakeGuard) -> None:
    guard = make_guard(store=pg_url)
    decisions = [guard.check(f"user-{n}") for n in range(700)]  # more than one audit batch
    d = decisions[3]
    guard.audit.link(d.request_id, anthropic_request_id="req_a", message_id="msg_a", model="m", input_tokens=5)
    guard.audit.link(d.request_id, anthropic_request_id="req_b", message_id="msg_b", output_tokens=7)
    assert [r.request_id for r in guard.audit.find(anthropic_request_id="req_a")] == [d.request_id]
    (record,) = guard.audit.find(message_id="msg_b")
    assert (record.anthropic_request_id, record.input_tokens, record.output_tokens) == ("req_b", 5, 7)
    assert len(guard.audit.find(user_id="user-5")) == 1
    assert guard.store.count_decisions() == 700


def test_captured_text_is_encrypted_exported_and_forgotten(
    pg_url: str, make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_CAPTURE_KEY", generate_key_entry("c1"))
    guard = make_guard({"capture": {"enabled": True, "key_env": "TEST_CAPTURE_KEY"}}, store=pg_url)
    guard.check("u-cap", prompt="a secret prompt")
    guard.audit.flush()
    with psycopg.connect(pg_url) as conn:
        stored = conn.execute("SELECT ciphertext FROM captures").fetchall()
    assert len(stored) == 1 and b"secret" not in bytes(stored[0][0])
    assert [c.text for c in guard.capture.export()] == ["a secret prompt"]
    assert guard.capture.forget("u-cap") == 1
    assert list(guard.capture.export()) == []


def test_records_follow_a_user_across_hash_key_rotation(pg_url: str) -> None:
    old = generate_key_entry("k1")
    with Safeguards(
        Policy.from_mapping(LADDER, env={}), store=pg_url, keyring=Keyring.parse(old, source="test")
    ) as guard:
        guard.strike("rotating", reason="before rotation")
    ring = Keyring.parse(f"{generate_key_entry('k2')},{old}", source="test")
    with Safeguards(Policy.from_mapping(LADDER, env={}), store=pg_url, keyring=ring) as guard:
        assert guard.status("rotating").strikes == 1
        assert guard.hash_user("rotating").startswith("k2_")


def test_a_suspension_made_by_another_engine_takes_effect_within_a_second(pg_url: str, make_guard: MakeGuard) -> None:
    serving = make_guard(store=pg_url)
    operator = make_guard(store=pg_url)
    assert serving.check("u-sus").allowed  # cached in the serving engine now
    operator.suspend("u-sus", reason="abuse")
    deadline = time.monotonic() + 1.0
    while serving.check("u-sus").allowed:
        assert time.monotonic() < deadline, "the suspension did not arrive within 1 s"
        time.sleep(0.02)


def test_eight_processes_of_500_strikes_are_counted_exactly(
    pg_url: str, make_guard: MakeGuard, tmp_path: Path, key_entry: str
) -> None:
    guard = make_guard(LADDER, store=pg_url)
    go = tmp_path / "go"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AUPGUARD_")}, "AUPGUARD_HASH_KEY": key_entry}
    procs = [
        subprocess.Popen([sys.executable, "-m", "tests.support.workers", "strike", pg_url, "racer", "500", str(go)],
                         cwd=ROOT, env=env)
        for _ in range(8)
    ]  # fmt: skip
    time.sleep(1.0)
    go.touch()
    assert [p.wait(180) for p in procs] == [0] * 8
    assert guard.status("racer").strikes == 4000
    assert len(guard.strikes("racer", limit=10_000)) == 4000
    with psycopg.connect(pg_url) as conn:  # each strike changed the user once, in order
        (changes,) = conn.execute("SELECT count(*) FROM changes").fetchone()  # type: ignore[misc]
        (events,) = conn.execute("SELECT count(*) FROM events WHERE action = 'strike'").fetchone()  # type: ignore[misc]
    assert changes >= 4000 and events == 4000


def test_threads_sharing_one_engine_lose_no_strike(pg_url: str, make_guard: MakeGuard) -> None:
    guard = make_guard(LADDER, store=pg_url)

    def hammer() -> None:
        for n in range(100):
            guard.strike("threaded", reason=f"n{n}")

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert guard.status("threaded").strikes == 600


def test_migrations_run_on_start_once_and_manual_mode_names_the_command(
    pg_url: str, keyring: Keyring, capsys: pytest.CaptureFixture[str]
) -> None:
    manual = Policy.from_mapping({"storage": {"migrate": "manual"}}, env={})
    with pytest.raises(StoreError, match="aupguard migrate"):
        Safeguards(manual, store=pg_url, keyring=keyring)
    assert cli(["--store", pg_url, "migrate"]) == 0
    assert f"schema version {SCHEMA_VERSION}" in capsys.readouterr().out
    with Safeguards(manual, store=pg_url, keyring=keyring) as guard:
        assert guard.store.schema_version() == SCHEMA_VERSION
    started = [threading.Thread(target=lambda: Safeguards(Policy(), store=pg_url, keyring=keyring).close())
               for _ in range(4)]  # fmt: skip
    for t in started:
        t.start()
    for t in started:
        t.join(30)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT value FROM aupguard_meta").fetchall() == [(str(SCHEMA_VERSION),)]


def test_an_unreachable_server_is_a_store_error_without_the_password(keyring: Keyring) -> None:
    from tests.support.servers import free_port

    policy = Policy.from_mapping({"storage": {"store_timeout": "1s"}}, env={})
    url = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(StoreError) as caught:
        Safeguards(policy, store=url, keyring=keyring)
    assert "hunter2" not in str(caught.value)


def test_the_review_queue_works_on_postgres(
    pg_url: str, make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aupguard.review import ReviewConflict, ReviewerAccounts, ReviewQueue, violation_report
    from tests.support.review import PASSWORD, flag, review_guard

    guard = review_guard(make_guard, monkeypatch, store=pg_url)
    other = review_guard(make_guard, monkeypatch, store=pg_url)  # a second worker
    accounts = ReviewerAccounts(guard.store, guard._clock)
    accounts.add("dana", PASSWORD)
    assert accounts.verify("dana", PASSWORD) and not accounts.verify("dana", "wrong")
    first, second = flag(guard, "pat"), flag(guard, "pat", "more nerve agent synthesis")
    assert guard.status("pat").level is Level.THROTTLED
    queue = ReviewQueue(guard)
    queue.claim(first, "dana")
    with pytest.raises(ReviewConflict):
        ReviewQueue(other).claim(first, "eve")  # one holder, across engines
    queue.dismiss(first, "dana", "false positive")
    assert guard.status("pat").level is Level.WARNED  # the voided strike no longer counts
    queue.claim(second, "dana")
    queue.confirm(second, "dana")
    detail = queue.detail(second)
    assert [t.text for t in detail.texts] == ["more nerve agent synthesis"]
    (row,) = violation_report(guard)
    assert row.user_hash == guard.hash_user("pat") and row.flagged == 1
    page = queue.page(status="confirmed")
    assert [e.item.id for e in page.entries] == [second]
    plan = " ".join(guard.store.explain("SELECT count(*) FROM review_items WHERE status = 'open'", ()))
    assert "review_items" in plan

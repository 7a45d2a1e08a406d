"""The engine's decisions and user actions, on a real SQLite store."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from aupguard import (
    ConfigurationError,
    InvalidUserId,
    Keyring,
    Level,
    Policy,
    Safeguards,
    UnknownStrike,
    generate_key_entry,
)
from tests.conftest import DAY, Clock, MakeGuard

TERMS = {"terms": {"version": "2026-01", "url": "https://example.com/aup"}}
LADDER = {"window": "30d", "warn": 1, "throttle": 3, "suspend": 5, "suspend_for": "7d"}


def test_anonymous_caller_gets_401_in_anthropic_error_shape(make_guard: MakeGuard) -> None:
    guard = make_guard()
    decision = guard.check(None)
    assert (decision.allowed, decision.status, decision.error) == (False, 401, "authentication_required")
    assert decision.error_body() == {
        "type": "error",
        "error": {"type": "authentication_required", "message": decision.message},
    }
    assert guard.audit.find(request_id=decision.request_id)[0].outcome == "authentication_required"


def test_without_required_account_anonymous_callers_without_a_client_key_share_one_limit(make_guard: MakeGuard) -> None:
    guard = make_guard({"identity": {"require_account": False}, "limits": {"default": "2/minute"}})
    outcomes = [guard.check(None).status for _ in range(3)]
    assert outcomes == [200, 200, 429]


def test_terms_gate_follows_the_policy_version(make_guard: MakeGuard, tmp_path: Path, keyring: Keyring) -> None:
    guard = make_guard(TERMS)
    refused = guard.check("u-1")
    assert (refused.status, refused.error) == (403, "terms_not_accepted")
    assert "2026-01" in refused.message and "https://example.com/aup" in refused.message
    guard.accept_terms("u-1", "2025-06")  # an older version does not satisfy the gate
    assert guard.check("u-1").error == "terms_not_accepted"
    guard.accept_terms("u-1", "2026-01")
    assert guard.check("u-1").allowed
    guard.close()
    newer = make_guard({"terms": {"version": "2026-07", "url": "https://example.com/aup"}})
    assert newer.check("u-1").error == "terms_not_accepted"
    newer.accept_terms("u-1", "2026-07")
    assert newer.check("u-1").allowed


def test_no_terms_table_means_no_terms_gate(make_guard: MakeGuard) -> None:
    assert make_guard().check("u-1").allowed


@pytest.mark.parametrize(
    ("strikes", "level", "status"),
    [(0, Level.OK, 200), (1, Level.WARNED, 200), (2, Level.WARNED, 200), (3, Level.THROTTLED, 200),
     (4, Level.THROTTLED, 200), (5, Level.SUSPENDED, 403)],
)  # fmt: skip
def test_ladder_levels_at_exactly_the_thresholds(
    make_guard: MakeGuard, strikes: int, level: Level, status: int
) -> None:
    guard = make_guard({"ladder": LADDER})
    for _ in range(strikes):
        guard.strike("u-1", reason="flagged", category="cyber")
    assert guard.status("u-1").level is level
    decision = guard.check("u-1")
    assert decision.status == status
    assert decision.level is level
    if level in (Level.WARNED, Level.THROTTLED):
        assert decision.warning is not None and decision.headers()["Aupguard-Warning"] == decision.warning
    if level is Level.SUSPENDED:
        assert decision.error == "user_suspended"
        assert decision.retry_after == 7 * 86400


def test_throttle_tier_switch_with_retry_after(make_guard: MakeGuard) -> None:
    guard = make_guard({"ladder": LADDER, "limits": {"default": "3/minute", "throttled": "1/minute"}})
    base = [guard.check("fine-user") for _ in range(4)]
    assert [d.status for d in base] == [200, 200, 200, 429]
    assert [d.remaining for d in base[:3]] == [2, 1, 0]
    refused = base[3]
    assert refused.error == "rate_limited" and refused.limit == 3
    assert refused.retry_after is not None and 1 <= refused.retry_after <= 60
    headers = refused.headers()
    assert headers["Retry-After"] == str(refused.retry_after)
    assert headers["RateLimit-Limit"] == "3" and headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(headers["RateLimit-Reset"]) <= 60

    for _ in range(3):
        guard.strike("bad-user", reason="flagged")
    first, second = guard.check("bad-user"), guard.check("bad-user")
    assert (first.status, first.limit, first.level) == (200, 1, Level.THROTTLED)
    assert (second.status, second.error) == (429, "rate_limited")
    assert "reduced" in second.message
    assert second.retry_after is not None and 1 <= second.retry_after <= 60


def test_strikes_decay_at_the_window_edge(make_guard: MakeGuard, clock: Clock) -> None:
    guard = make_guard({"ladder": LADDER}, clock=clock)
    guard.strike("u-1", reason="flagged")
    clock.advance(30 * DAY - 1)
    assert guard.status("u-1").level is Level.WARNED
    assert guard.check("u-1").level is Level.WARNED
    clock.advance(1)  # exactly one window old: no longer counts
    assert guard.check("u-1").level is Level.OK
    assert guard.status("u-1").strikes == 0


def test_suspension_runs_out_then_user_is_throttled(make_guard: MakeGuard, clock: Clock) -> None:
    guard = make_guard({"ladder": LADDER}, clock=clock)
    for _ in range(5):
        guard.strike("u-1", reason="flagged")
    assert guard.check("u-1").error == "user_suspended"
    clock.advance(7 * DAY)
    decision = guard.check("u-1")
    assert decision.allowed and decision.level is Level.THROTTLED


def test_void_strike_de_escalates_at_once(make_guard: MakeGuard) -> None:
    guard = make_guard({"ladder": LADDER})
    results = [guard.strike("u-1", reason="flagged") for _ in range(5)]
    assert guard.check("u-1").error == "user_suspended"
    status = guard.void_strike(results[-1].strike.id, reason="appeal upheld", actor="reviewer:ana")
    assert (status.level, status.strikes) == (Level.THROTTLED, 4)
    assert guard.check("u-1").allowed
    ledger = guard.strikes("u-1")
    assert len(ledger) == 5 and sum(s.voided_at is not None for s in ledger) == 1
    # voiding twice changes nothing and records nothing
    events = len(guard.audit.events(user_id="u-1"))
    assert guard.void_strike(results[-1].strike.id, reason="again").strikes == 4
    assert len(guard.audit.events(user_id="u-1")) == events


def test_void_unknown_strike_is_a_clear_error(make_guard: MakeGuard) -> None:
    with pytest.raises(UnknownStrike, match="no strike has id"):
        make_guard().void_strike("nope", reason="x")


def test_reinstate_starts_the_ladder_afresh_but_keeps_the_ledger(make_guard: MakeGuard, clock: Clock) -> None:
    guard = make_guard({"ladder": LADDER}, clock=clock)
    for _ in range(5):
        guard.strike("u-1", reason="flagged")
    clock.advance(1)
    status = guard.reinstate("u-1", reason="reviewed", actor="op:sam")
    assert (status.level, status.strikes) == (Level.OK, 0)
    assert guard.check("u-1").allowed
    assert len(guard.strikes("u-1")) == 5
    clock.advance(1)
    assert guard.strike("u-1", reason="again").status.level is Level.WARNED


def test_manual_suspension_with_and_without_an_end(make_guard: MakeGuard, clock: Clock) -> None:
    guard = make_guard(clock=clock)
    until = dt.datetime.fromtimestamp(clock.now + 3600, dt.UTC)
    status = guard.suspend("u-1", reason="chargeback fraud", until=until, actor="op:sam")
    assert status.level is Level.SUSPENDED and status.until == pytest.approx(clock.now + 3600)
    refused = guard.check("u-1")
    assert refused.error == "user_suspended" and refused.retry_after == 3600
    clock.advance(3600)
    assert guard.check("u-1").allowed
    guard.suspend("u-1", reason="indefinite")
    refused = guard.check("u-1")
    assert refused.error == "user_suspended" and refused.retry_after is None
    guard.reinstate("u-1")
    assert guard.check("u-1").allowed


def test_every_state_change_is_an_audit_event(make_guard: MakeGuard, clock: Clock) -> None:
    guard = make_guard({"ladder": LADDER, **TERMS}, clock=clock)
    guard.accept_terms("u-1", "2026-01")
    strike = guard.strike("u-1", reason="malware request", category="cyber", source="rules", actor="moderator")
    guard.void_strike(strike.strike.id, reason="false positive", actor="reviewer:ana")
    guard.suspend("u-1", reason="fraud", actor="op:sam")
    guard.reinstate("u-1", reason="cleared", actor="op:sam")
    events = list(reversed(guard.audit.events(user_id="u-1")))
    actions = [(e.action, e.actor) for e in events if e.action != "level_changed"]
    assert actions == [
        ("accept_terms", "user"),
        ("strike", "moderator"),
        ("void_strike", "reviewer:ana"),
        ("suspend", "op:sam"),
        ("reinstate", "op:sam"),
    ]
    strike_event = events[1]
    assert strike_event.details["category"] == "cyber" and strike_event.details["strike_id"] == strike.strike.id
    assert (strike_event.details["level_before"], strike_event.details["level_after"]) == ("ok", "warned")
    assert all(e.at == clock.now for e in events)
    changes = [(e.details["from"], e.details["to"]) for e in events if e.action == "level_changed"]
    assert changes == [("ok", "warned"), ("warned", "ok"), ("ok", "suspended"), ("suspended", "ok")]


def test_invalid_user_ids_are_refused_without_echo(make_guard: MakeGuard) -> None:
    guard = make_guard()
    huge = "x" * (10 * 1024 * 1024)
    for bad in ["", "   ", huge, "a\x00b"]:
        decision = guard.check(bad)
        assert (decision.status, decision.error) == (400, "invalid_request_error")
        assert bad not in decision.message or bad == ""
    with pytest.raises(InvalidUserId) as info:
        guard.strike(huge, reason="x")
    assert len(str(info.value)) < 200
    with pytest.raises(InvalidUserId):
        guard.status(42)  # type: ignore[arg-type]


def test_acheck_matches_check(make_guard: MakeGuard) -> None:
    guard = make_guard({"ladder": LADDER, "limits": {"default": "2/minute"}, **TERMS})

    async def run() -> list[tuple[int, str | None]]:
        out = [(d.status, d.error) for d in [await guard.acheck(None), await guard.acheck("u-1")]]
        await guard.aaccept_terms("u-1", "2026-01")
        out += [((d := await guard.acheck("u-1")).status, d.error) for _ in range(3)]
        for _ in range(5):
            await guard.astrike("u-2", reason="flagged")
        await guard.aaccept_terms("u-2", "2026-01")
        out.append(((d := await guard.acheck("u-2")).status, d.error))
        return out

    assert asyncio.run(run()) == [
        (401, "authentication_required"),
        (403, "terms_not_accepted"),
        (200, None),
        (200, None),
        (429, "rate_limited"),
        (403, "user_suspended"),
    ]


def test_audit_links_anthropic_ids_and_finds_by_each(make_guard: MakeGuard) -> None:
    guard = make_guard()
    decision = guard.check("u-1")
    guard.audit.link(decision.request_id, anthropic_request_id="req_011ABC", message_id="msg_01XYZ")
    for query in [
        {"request_id": decision.request_id},
        {"user_id": "u-1"},
        {"anthropic_request_id": "req_011ABC"},
        {"message_id": "msg_01XYZ"},
    ]:
        (record,) = guard.audit.find(**query)
        assert record.request_id == decision.request_id
        assert record.user_hash == guard.hash_user("u-1")
        assert (record.anthropic_request_id, record.message_id) == ("req_011ABC", "msg_01XYZ")
    assert guard.audit.find(user_id="someone-else") == []
    with pytest.raises(ValueError, match="at least one"):
        guard.audit.find()


def test_raw_user_ids_never_reach_the_store(make_guard: MakeGuard, tmp_path: Path) -> None:
    guard = make_guard({"ladder": LADDER, **TERMS})
    raw = "alice@example.com"
    guard.accept_terms(raw, "2026-01")
    guard.check(raw)
    result = guard.strike(raw, reason="flagged")
    guard.void_strike(result.strike.id, reason="appeal")
    guard.suspend(raw, reason="fraud")
    guard.close()
    for path in tmp_path.iterdir():
        assert raw.encode() not in path.read_bytes(), path.name


def test_rotated_key_still_recognises_users_during_its_grace_period(
    make_guard: MakeGuard, tmp_path: Path, key_entry: str
) -> None:
    old = make_guard({"ladder": LADDER})
    old.strike("u-1", reason="flagged")
    first = old.check("u-1")
    old.close()

    new_entry = generate_key_entry("t2")
    rotated = make_guard({"ladder": LADDER}, ring=Keyring.parse(f"{new_entry}\n{key_entry}:2999-12-31", source="test"))
    assert rotated.hash_user("u-1").startswith("t2_")
    status = rotated.status("u-1")
    assert (status.level, status.strikes, status.user_hash) == (Level.WARNED, 1, rotated.hash_user("u-1"))
    assert first.request_id in {r.request_id for r in rotated.audit.find(user_id="u-1")}
    assert "rekey" in [e.action for e in rotated.audit.events(user_id="u-1")]
    rotated.close()

    expired = make_guard(
        {"ladder": LADDER},
        ring=Keyring.parse(f"{generate_key_entry('t3')}\n{key_entry}:2000-01-01", source="test"),
    )
    assert expired.status("u-1").level is Level.OK


def test_missing_hash_key_is_a_clear_startup_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="AUPGUARD_HASH_KEY"):
        Safeguards(Policy(), store=f"sqlite:///{tmp_path / 'x.db'}")


@pytest.mark.parametrize(
    ("store", "counters", "message"),
    [("mysql://x", "memory://", "unsupported store URI scheme 'mysql'"),
     ("memory://", "memcached://x", "unsupported counters URI scheme 'memcached'"),
     ("sqlite://", "memory://", "sqlite:///relative/path.db")],
)  # fmt: skip
def test_unknown_backends_are_named(keyring: Keyring, store: str, counters: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Safeguards(Policy(), store=store, counters=counters, keyring=keyring)


def test_memory_store_keeps_everything_in_process(
    keyring: Keyring, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Safeguards(Policy.from_mapping({"ladder": LADDER}, env={}), store="memory://", keyring=keyring) as guard:
        for _ in range(5):
            guard.strike("u-1", reason="flagged")
        assert guard.check("u-1").error == "user_suspended"
        assert len(guard.audit.find(user_id="u-1")) == 1
    assert list(tmp_path.iterdir()) == []


def test_memory_counters_sweep_at_most_once_a_second_and_still_expire(make_guard: MakeGuard) -> None:
    """limits' own memory storage starts a sweep thread on nearly every hit at low rates; ours
    sweeps at most once a second, and expired windows still stop counting at once."""
    import time as _time

    from aupguard.counters.base import SweptMemoryStorage

    guard = make_guard({"limits": {"default": "3/second"}})
    storage = guard.counters.storage
    assert isinstance(storage, SweptMemoryStorage)
    results = []
    for _ in range(12):
        results.append(guard.check("sweep").allowed)
        _time.sleep(0.05)  # a slow trickle: limits would start a thread for each of these
    assert storage.sweeps <= 2
    assert results[:3] == [True] * 3 and False in results[3:10]
    _time.sleep(1.1)
    assert guard.check("sweep").allowed  # the window moved on without a sweep
    mine = guard.hash_user("sweep")
    assert any(mine in k for k in storage.events)  # its window is still held
    _time.sleep(1.2)
    guard.check("other")  # a hit after a second schedules the sweep of what expired
    deadline = _time.monotonic() + 2
    while any(storage.events.get(k) for k in list(storage.events) if mine in k):
        assert _time.monotonic() < deadline, "expired entries were never swept"
        _time.sleep(0.02)


def test_a_suspension_stored_past_the_year_9999_still_refuses_with_403(tmp_path: Path, keyring: Keyring) -> None:
    # An older aupguard accepted `[ladder] suspend_for` of any length; the suspensions it
    # recorded outlive the upgrade. The standing gate showed their end with a datetime and
    # raised OverflowError: every request of that user was a 500.
    store = f"sqlite:///{tmp_path / 'aupguard.db'}"
    loaded = Policy.from_mapping({"storage": {"spill": str(tmp_path / "spill")}}, env={})
    old_ladder = dataclasses.replace(loaded.ladder, warn=1, throttle=1, suspend=1, suspend_for=1e15)
    old = Safeguards(loaded.replace(ladder=old_ladder), store=store, keyring=keyring)
    old.strike("u-1", reason="flagged", category="cyber")
    old.close()
    guard = Safeguards(loaded, store=store, keyring=keyring)
    try:
        decision = guard.check("u-1")
        assert (decision.status, decision.error) == (403, "user_suspended")
        assert "after 9999-01-01" in decision.message
        assert decision.retry_after is not None and decision.retry_after < 8000 * 365 * DAY
    finally:
        guard.close()


def test_an_infinite_stored_suspension_end_is_a_403_too(tmp_path: Path, keyring: Keyring) -> None:
    store = f"sqlite:///{tmp_path / 'aupguard.db'}"
    policy = Policy.from_mapping({"storage": {"spill": str(tmp_path / "spill")}}, env={})
    guard = Safeguards(policy, store=store, keyring=keyring)
    guard.suspend("u-1", reason="spam")
    user_hash = guard.status("u-1").user_hash
    guard.close()
    with sqlite3.connect(tmp_path / "aupguard.db") as db:  # as a hand edit or another tool could leave it
        db.execute("UPDATE users SET suspended_until = ? WHERE user_hash = ?", (float("inf"), user_hash))
    guard = Safeguards(policy, store=store, keyring=keyring)
    try:
        decision = guard.check("u-1")
        assert (decision.status, decision.error) == (403, "user_suspended")
    finally:
        guard.close()

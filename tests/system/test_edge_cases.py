"""Edge cases found in review: each was a real failure before its fix."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest

from aupguard import ConfigurationError, Keyring, Level, Policy, PolicyError, Safeguards, generate_key_entry
from aupguard.cli.main import main
from tests.conftest import Clock, MakeGuard

LADDER = {"ladder": {"warn": 1, "throttle": 2, "suspend": 3, "suspend_for": "1h"}}


def test_void_never_lifts_an_operator_suspension_made_after_a_ladder_one(make_guard: MakeGuard, clock: Clock) -> None:
    guard = make_guard(LADDER, clock=clock)
    strikes = [guard.strike("u-1", reason="flagged") for _ in range(3)]  # the ladder suspends for 1h
    clock.advance(7200)
    guard.suspend("u-1", reason="fraud", actor="op:sam")  # the operator suspends indefinitely
    status = guard.void_strike(strikes[0].strike.id, reason="appeal")
    assert status.level is Level.SUSPENDED and status.until is None
    assert guard.check("u-1").error == "user_suspended"


@pytest.mark.parametrize("until", [1e13, math.nan, -5.0, "tomorrow", dt.datetime(2030, 1, 1)])
def test_suspension_ends_are_validated_before_anything_is_written(make_guard: MakeGuard, until: object) -> None:
    guard = make_guard()
    with pytest.raises((ValueError, TypeError)):
        guard.suspend("u-1", reason="x", until=until)  # type: ignore[arg-type]
    assert guard.check("u-1").allowed
    assert guard.audit.events(user_id="u-1") == []


def test_a_rotated_key_carries_the_user_over_whatever_the_first_action(make_guard: MakeGuard, key_entry: str) -> None:
    old = make_guard({"terms": {"version": "v1"}})
    old.suspend("mallory", reason="fraud")
    old.close()
    ring = Keyring.parse(f"{generate_key_entry('t2')}\n{key_entry}:2999-12-31", source="test")
    rotated = make_guard({"terms": {"version": "v1"}}, ring=ring)
    rotated.accept_terms("mallory", "v1")  # the first thing the app does after the rotation
    assert rotated.check("mallory").error == "user_suspended"


def test_bad_surface_and_link_values_are_refused_at_the_call(make_guard: MakeGuard) -> None:
    guard = make_guard()
    for surface in ["", "\ud800", "x" * 201, None]:
        with pytest.raises(ValueError, match="surface"):
            guard.check("u-1", surface=surface)  # type: ignore[arg-type]
    decision = guard.check("u-1")
    with pytest.raises(ValueError, match="anthropic_request_id"):
        guard.audit.link(decision.request_id, anthropic_request_id={"x": 1})  # type: ignore[arg-type]


def test_a_row_the_store_refuses_is_set_aside_and_the_rest_is_written(make_guard: MakeGuard) -> None:
    guard = make_guard()
    good = guard.check("u-1")
    poison = ("bad-row", 1.0, None, None, "allowed", 200, None, "[]", None, None)  # surface NULL: refused
    guard.audit.record(poison)  # type: ignore[arg-type]
    later = guard.check("u-1")
    assert guard.audit.flush(timeout=10)
    assert guard.audit.rejected == 1
    assert {r.request_id for r in guard.audit.find(user_id="u-1")} == {good.request_id, later.request_id}


@pytest.mark.parametrize("uri", ["sqlite:///:memory:", "sqlite:///x.db?mode=ro"])
def test_sqlite_uris_that_would_misbehave_are_refused(uri: str, keyring: Keyring) -> None:
    with pytest.raises(ConfigurationError, match="use memory://"):
        Safeguards(Policy(), store=uri, keyring=keyring)


def test_an_unknown_env_override_does_not_echo_its_value() -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_mapping({}, env={"AUPGUARD_IDENTITY__HASH_KEY": "k1:supersecretkeymaterial"})
    assert "supersecret" not in str(info.value)


def test_cli_until_keeps_its_offset_and_limit_must_be_positive(
    tmp_path: Path, key_entry: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    store = ["--store", f"sqlite:///{tmp_path / 'a.db'}"]
    assert main([*store, "migrate"]) == 0  # commands never create a store
    capsys.readouterr()
    assert main([*store, "user", "suspend", "u", "--reason", "r", "--until", "2090-01-01T00:00+05:00", "--json"]) == 0
    assert '"until": ' + str(dt.datetime(2089, 12, 31, 19, 0, tzinfo=dt.UTC).timestamp()) in capsys.readouterr().out
    assert main([*store, "user", "suspend", "u", "--reason", "r", "--for", "99999999w"]) == 2
    assert "duration must be positive and at most 100 years" in capsys.readouterr().err
    assert main([*store, "user", "suspend", "u", "--reason", "r", "--until", "9999-06-01T00:00"]) == 2
    assert "must end in the future and before the year 9999" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*store, "audit", "find", "--user", "u", "--limit", "0"])

"""The escalation ladder: warn -> throttle, decay, reinstatement, recorded suspensions."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aupguard.ladder import (
    Level,
    UserState,
    UserStatus,
    counting_strikes,
    derive_status,
    lift_after_void,
    strikes_to_keep,
    suspension_after_strike,
)
from aupguard.policy.config import LadderPolicy

HOUR = 3600.0
DAY = 86400.0
TIMED = LadderPolicy(window=30 * DAY, warn=1, throttle=3, suspend=5, suspend_for=7 * DAY)
INDEFINITE = LadderPolicy(window=30 * DAY, warn=1, throttle=3, suspend=5, suspend_for=None)
USER = "k1_" + "ab" * 32
NOW = 1_800_000_000.0
BASE = 1_700_000_000.0

LIFTED = {"suspended": 0, "suspended_until": None, "suspend_reason": None, "suspend_auto": 0}

no_deadline = settings(deadline=None)


def state(*times: float, **fields: object) -> UserState:
    return UserState(USER, tuple(sorted(times)), **fields)  # type: ignore[arg-type]


def recent(n: int, **fields: object) -> UserState:
    """``n`` strikes one hour apart, the latest one hour before NOW."""
    return state(*(NOW - (n - i) * HOUR for i in range(n)), **fields)


def days(*offsets: float, **fields: object) -> UserState:
    """Strikes on the given days after BASE."""
    return state(*(BASE + d * DAY for d in offsets), **fields)


def record(user: UserState, fields: dict[str, object] | None) -> UserState:
    """Apply the user fields a ladder function returned, as the store would."""
    assert fields is not None
    return replace(
        user,
        suspended=bool(fields["suspended"]),
        suspended_until=fields["suspended_until"],  # type: ignore[arg-type]
        suspend_reason=fields["suspend_reason"],  # type: ignore[arg-type]
        suspend_auto=bool(fields["suspend_auto"]),
    )


def strike_level(n: int, warn: int, throttle: int) -> Level:
    if n >= throttle:
        return Level.THROTTLED
    if n >= warn:
        return Level.WARNED
    return Level.OK


thresholds_st = st.lists(st.integers(min_value=1, max_value=20), min_size=3, max_size=3).map(sorted)


# -- thresholds ------------------------------------------------------------------------------


@pytest.mark.parametrize("ladder", [TIMED, INDEFINITE], ids=["suspend_for=7d", "suspend_for=None"])
@pytest.mark.parametrize(
    ("strikes", "level"),
    [
        (0, Level.OK),
        (1, Level.WARNED),
        (2, Level.WARNED),
        (3, Level.THROTTLED),
        (4, Level.THROTTLED),
        (5, Level.THROTTLED),  # no suspension recorded: strikes alone never suspend
        (6, Level.THROTTLED),
        (9, Level.THROTTLED),
    ],
)
def test_level_changes_exactly_at_the_thresholds(ladder: LadderPolicy, strikes: int, level: Level) -> None:
    status = derive_status(recent(strikes), ladder, NOW)
    assert status.level is level
    assert status.strikes == strikes
    assert status.user_hash == USER
    assert status.until is None
    assert status.reason is None


@no_deadline
@given(
    thresholds=thresholds_st,
    strikes=st.integers(min_value=0, max_value=25),
    suspend_for=st.sampled_from([None, 7 * DAY]),
)
def test_level_is_the_highest_strike_threshold_reached(
    thresholds: list[int], strikes: int, suspend_for: float | None
) -> None:
    warn, throttle, suspend = thresholds
    ladder = LadderPolicy(window=30 * DAY, warn=warn, throttle=throttle, suspend=suspend, suspend_for=suspend_for)
    user = recent(strikes)
    status = derive_status(user, ladder, NOW)
    assert status.level is strike_level(strikes, warn, throttle)
    assert status.strikes == strikes
    fields = suspension_after_strike(user, ladder, NOW)
    assert (fields is not None) == (strikes >= suspend)
    if fields is not None:
        assert fields["suspended_until"] == (None if suspend_for is None else NOW + suspend_for)


def test_new_user_is_ok() -> None:
    user = UserState(USER)
    assert user.is_new
    status = derive_status(user, TIMED, NOW)
    assert status == UserStatus(USER, Level.OK, 0)
    assert suspension_after_strike(user, TIMED, NOW) is None
    assert lift_after_void(user, TIMED, NOW) is None


def test_level_values_are_stable_strings() -> None:
    assert [level.value for level in Level] == ["ok", "warned", "throttled", "suspended"]


# -- decay -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "counts"),
    [
        (0.0, True),
        (1.0, True),
        (30 * DAY - 1.0, True),
        (30 * DAY - 0.5, True),
        (30 * DAY, False),  # exactly one window old: decayed
        (30 * DAY + 0.5, False),
        (31 * DAY, False),
    ],
)
def test_strike_decays_exactly_at_the_window_edge(age: float, counts: bool) -> None:
    strike = 1_000_000.0
    now = strike + age
    status = derive_status(state(strike), TIMED, now)
    assert status.level is (Level.WARNED if counts else Level.OK)
    assert status.strikes == (1 if counts else 0)
    assert counting_strikes(state(strike), TIMED, now) == ((strike,) if counts else ())


@no_deadline
@given(
    strike=st.integers(min_value=0, max_value=2**40),
    window=st.integers(min_value=1, max_value=2**30),
    age=st.integers(min_value=0, max_value=2**31),
)
def test_a_strike_counts_while_younger_than_the_window(strike: int, window: int, age: int) -> None:
    ladder = LadderPolicy(window=float(window), warn=1, throttle=2, suspend=3)
    user = state(float(strike))
    now = float(strike + age)
    assert derive_status(user, ladder, now).strikes == (1 if age < window else 0)
    assert counting_strikes(user, ladder, now) == ((float(strike),) if age < window else ())


def test_a_strike_after_now_does_not_count() -> None:
    user = state(NOW - HOUR, NOW, NOW + 1.0)
    assert counting_strikes(user, TIMED, NOW) == (NOW - HOUR, NOW)
    assert derive_status(user, TIMED, NOW).strikes == 2


def test_decay_walks_the_user_down_the_ladder() -> None:
    user = days(0, 1, 2, 3)
    levels = [derive_status(user, TIMED, BASE + (30 + d) * DAY).level for d in range(4)]
    # at day 30 the strike of day 0 has decayed, at day 31 the one of day 1, ...
    assert levels == [Level.THROTTLED, Level.WARNED, Level.WARNED, Level.OK]


def test_counting_strikes_returns_the_counting_times_in_order() -> None:
    user = days(0, 2, 3, 31, 32)  # at day 32 the strike of day 2 is exactly a window old
    assert counting_strikes(user, TIMED, BASE + 32 * DAY) == (BASE + 3 * DAY, BASE + 31 * DAY, BASE + 32 * DAY)


# -- reinstatement (reset_at) ----------------------------------------------------------------


def test_reinstatement_voids_earlier_strikes() -> None:
    user = recent(5)
    assert derive_status(user, TIMED, NOW).level is Level.THROTTLED
    reinstated = replace(user, reset_at=NOW - 30 * 60)
    status = derive_status(reinstated, TIMED, NOW)
    assert status.level is Level.OK
    assert status.strikes == 0
    assert counting_strikes(reinstated, TIMED, NOW) == ()


def test_strikes_after_reinstatement_count_again() -> None:
    user = state(NOW - 5 * HOUR, NOW - 4 * HOUR, NOW - 3 * HOUR, NOW - HOUR, reset_at=NOW - 2 * HOUR)
    status = derive_status(user, TIMED, NOW)
    assert status.level is Level.WARNED
    assert status.strikes == 1
    assert counting_strikes(user, TIMED, NOW) == (NOW - HOUR,)


def test_a_strike_at_the_reinstatement_instant_does_not_count() -> None:
    user = state(NOW - HOUR, NOW - HOUR + 1.0, reset_at=NOW - HOUR)
    assert counting_strikes(user, TIMED, NOW) == (NOW - HOUR + 1.0,)


def test_old_reinstatement_does_not_revive_decayed_strikes() -> None:
    user = state(NOW - 31 * DAY, NOW - HOUR, reset_at=NOW - 60 * DAY)
    assert derive_status(user, TIMED, NOW).strikes == 1


def test_reinstatement_keeps_the_threshold_from_being_reached() -> None:
    user = recent(5, reset_at=NOW - 2 * HOUR - 30 * 60)  # only the two latest strikes count
    assert suspension_after_strike(user, TIMED, NOW) is None
    assert derive_status(user, TIMED, NOW).level is Level.WARNED


# -- recorded suspension ---------------------------------------------------------------------


def test_recorded_suspension_with_end_holds_until_it() -> None:
    user = recent(1, suspended=True, suspended_until=NOW + DAY, suspend_reason="review", terms_version="v1")
    for now in (NOW, NOW + DAY - 1.0, NOW + DAY - 0.5):
        status = derive_status(user, TIMED, now)
        assert status.level is Level.SUSPENDED
        assert status.until == NOW + DAY
        assert status.reason == "review"
        assert status.terms_version == "v1"
    assert derive_status(user, TIMED, NOW).strikes == 1


@pytest.mark.parametrize(
    ("strikes", "level"),
    [(0, Level.OK), (1, Level.WARNED), (3, Level.THROTTLED), (5, Level.THROTTLED)],
)
@pytest.mark.parametrize("after", [0.0, 1.0, 10 * DAY])
def test_recorded_suspension_at_or_after_its_end_falls_back_to_the_strikes(
    strikes: int, level: Level, after: float
) -> None:
    user = recent(strikes, suspended=True, suspended_until=NOW + after, suspend_reason="review")
    # the strikes were made at NOW - k hours; all still count at NOW + 10 days
    status = derive_status(user, TIMED, NOW + after)
    assert status.level is level
    assert status.strikes == strikes
    assert status.until is None
    assert status.reason is None


def test_indefinite_recorded_suspension_holds_forever() -> None:
    user = UserState(USER, suspended=True, suspend_reason="fraud ring", terms_version="v1")
    for now in (NOW, NOW + 365 * DAY, NOW + 10_000 * DAY):
        status = derive_status(user, TIMED, now)
        assert status == UserStatus(USER, Level.SUSPENDED, 0, None, "fraud ring", "v1")


def test_recorded_suspension_applies_without_strikes_on_a_lenient_ladder() -> None:
    lenient = LadderPolicy(window=DAY, warn=50, throttle=50, suspend=50)
    user = UserState(USER, suspended=True, suspended_until=NOW + HOUR)
    assert derive_status(user, lenient, NOW).level is Level.SUSPENDED


def test_an_end_without_the_suspended_flag_is_not_a_suspension() -> None:
    user = recent(1, suspended=False, suspended_until=NOW + DAY, suspend_reason="stale")
    status = derive_status(user, TIMED, NOW)
    assert status.level is Level.WARNED
    assert status.until is None
    assert status.reason is None


def test_after_a_recorded_suspension_runs_out_the_user_is_throttled_while_strikes_count() -> None:
    five = state(*(BASE + i * HOUR for i in range(5)))
    latest = five.strike_times[-1]
    suspended = record(five, suspension_after_strike(five, TIMED, latest))
    assert derive_status(suspended, TIMED, latest + 7 * DAY - 1.0).level is Level.SUSPENDED
    status = derive_status(suspended, TIMED, latest + 7 * DAY)
    assert status.level is Level.THROTTLED
    assert status.strikes == 5
    assert status.until is None
    assert status.reason is None
    # and the strikes decay as usual: at day 30 + 2h the strikes of 0h, 1h and 2h are gone
    later = derive_status(suspended, TIMED, BASE + 30 * DAY + 2 * HOUR)
    assert later.level is Level.WARNED
    assert later.strikes == 2


# -- suspension_after_strike -----------------------------------------------------------------


def test_no_suspension_below_the_threshold() -> None:
    assert suspension_after_strike(recent(4), TIMED, NOW) is None
    assert suspension_after_strike(recent(4), INDEFINITE, NOW) is None


def test_the_strike_reaching_the_threshold_records_a_timed_suspension() -> None:
    assert suspension_after_strike(recent(5), TIMED, NOW) == {
        "suspended": 1,
        "suspended_until": NOW + 7 * DAY,
        "suspend_reason": "5 strikes within 30d",
        "suspend_auto": 1,
    }


def test_without_suspend_for_the_recorded_suspension_is_indefinite() -> None:
    fields = suspension_after_strike(recent(5), INDEFINITE, NOW)
    assert fields == {
        "suspended": 1,
        "suspended_until": None,
        "suspend_reason": "5 strikes within 30d",
        "suspend_auto": 1,
    }
    suspended = record(recent(5), fields)
    # "until reinstated": the strikes decaying does not lift it
    status = derive_status(suspended, INDEFINITE, NOW + 60 * DAY)
    assert status.level is Level.SUSPENDED
    assert status.until is None
    assert status.strikes == 0


def test_the_reason_names_the_count_and_the_window() -> None:
    ladder = LadderPolicy(window=12 * HOUR, warn=1, throttle=2, suspend=3, suspend_for=DAY)
    fields = suspension_after_strike(recent(3), ladder, NOW)
    assert fields is not None
    assert fields["suspend_reason"] == "3 strikes within 12h"


def test_decayed_strikes_do_not_reach_the_threshold() -> None:
    user = state(NOW - 30 * DAY, *(NOW - i * HOUR for i in range(4)))  # the oldest is exactly a window old
    assert suspension_after_strike(user, TIMED, NOW) is None
    assert suspension_after_strike(user, TIMED, NOW - 1.0) is None  # the strike at NOW is in the future then
    younger = state(NOW - 30 * DAY + 1.0, *(NOW - i * HOUR for i in range(4)))
    assert suspension_after_strike(younger, TIMED, NOW) is not None


@pytest.mark.parametrize("ladder", [TIMED, INDEFINITE], ids=["suspend_for=7d", "suspend_for=None"])
@pytest.mark.parametrize("auto", [False, True])
def test_a_running_indefinite_suspension_is_left_alone(ladder: LadderPolicy, auto: bool) -> None:
    user = recent(6, suspended=True, suspended_until=None, suspend_reason="operator", suspend_auto=auto)
    assert suspension_after_strike(user, ladder, NOW) is None


@pytest.mark.parametrize("until", [NOW + 7 * DAY, NOW + 7 * DAY + 1.0, NOW + 90 * DAY])
def test_a_running_suspension_lasting_at_least_as_long_is_not_shortened(until: float) -> None:
    user = recent(5, suspended=True, suspended_until=until, suspend_reason="operator")
    assert suspension_after_strike(user, TIMED, NOW) is None
    assert derive_status(user, TIMED, NOW + 7 * DAY - 1.0).until == until


@pytest.mark.parametrize("until", [NOW + 1.0, NOW + DAY, NOW + 7 * DAY - 1.0])
def test_a_shorter_running_suspension_is_restarted(until: float) -> None:
    user = recent(5, suspended=True, suspended_until=until, suspend_reason="operator")
    fields = suspension_after_strike(user, TIMED, NOW)
    assert fields is not None
    assert fields["suspended_until"] == NOW + 7 * DAY
    assert fields["suspend_auto"] == 0  # still the operator's: a later void must not lift it
    extended = record(user, fields)
    assert derive_status(extended, TIMED, NOW + 7 * DAY - 1.0).level is Level.SUSPENDED
    assert lift_after_void(extended, TIMED, NOW) is None


def test_a_running_ladder_suspension_that_is_extended_stays_the_ladders() -> None:
    user = recent(5, suspended=True, suspended_until=NOW + DAY, suspend_reason="ladder", suspend_auto=True)
    fields = suspension_after_strike(user, TIMED, NOW)
    assert fields is not None and fields["suspend_auto"] == 1


def test_an_indefinite_ladder_suspension_replaces_a_running_timed_one() -> None:
    user = recent(5, suspended=True, suspended_until=NOW + 365 * DAY, suspend_reason="operator")
    fields = suspension_after_strike(user, INDEFINITE, NOW)
    assert fields is not None
    assert fields["suspended_until"] is None


@pytest.mark.parametrize("ended", [NOW, NOW - 1.0, NOW - 30 * DAY])
def test_a_suspension_that_has_run_out_is_recorded_afresh(ended: float) -> None:
    user = recent(5, suspended=True, suspended_until=ended, suspend_reason="old", suspend_auto=True)
    assert suspension_after_strike(user, TIMED, NOW) == {
        "suspended": 1,
        "suspended_until": NOW + 7 * DAY,
        "suspend_reason": "5 strikes within 30d",
        "suspend_auto": 1,
    }


def test_each_further_strike_at_the_threshold_restarts_the_ladders_suspension() -> None:
    user = days(0, 1, 2, 3, 4)
    user = record(user, suspension_after_strike(user, TIMED, BASE + 4 * DAY))
    assert user.suspended_until == BASE + 11 * DAY
    # a sixth strike on day 6, while the suspension runs: it starts afresh from day 6
    user = replace(user, strike_times=(*user.strike_times[1:], BASE + 6 * DAY))  # the state keeps 5
    fields = suspension_after_strike(user, TIMED, BASE + 6 * DAY)
    assert fields is not None
    assert fields["suspended_until"] == BASE + 13 * DAY
    user = record(user, fields)
    status = derive_status(user, TIMED, BASE + 12 * DAY)
    assert status.level is Level.SUSPENDED
    assert status.until == BASE + 13 * DAY
    assert derive_status(user, TIMED, BASE + 13 * DAY).level is Level.THROTTLED


def test_a_suspension_recorded_at_day_29_holds_after_its_first_strike_decays() -> None:
    # Strikes on days 0, 1, 2, 3 and 29 (window 30d, suspend_for 7d): the strike of day 29 is the
    # fifth and records a suspension until day 36. The strike of day 0 decays on day 30, but the
    # suspension is recorded, not derived, so it still holds at day 30 + 1h, until day 36.
    before = days(0, 1, 2, 3)
    assert derive_status(before, TIMED, BASE + 29 * DAY - 1.0).level is Level.THROTTLED
    after = days(0, 1, 2, 3, 29)
    fields = suspension_after_strike(after, TIMED, BASE + 29 * DAY)
    assert fields is not None
    assert fields["suspended_until"] == BASE + 36 * DAY
    suspended = record(after, fields)

    at_29 = derive_status(suspended, TIMED, BASE + 29 * DAY)
    assert at_29.level is Level.SUSPENDED
    assert at_29.strikes == 5

    status = derive_status(suspended, TIMED, BASE + 30 * DAY + HOUR)
    assert status.level is Level.SUSPENDED
    assert status.until == BASE + 36 * DAY
    assert status.reason == "5 strikes within 30d"
    assert status.strikes == 4
    # by the strikes alone the user would only be throttled then
    assert derive_status(after, TIMED, BASE + 30 * DAY + HOUR).level is Level.THROTTLED
    assert suspension_after_strike(after, TIMED, BASE + 30 * DAY + HOUR) is None

    assert derive_status(suspended, TIMED, BASE + 36 * DAY - 1.0).level is Level.SUSPENDED
    ended = derive_status(suspended, TIMED, BASE + 36 * DAY)
    assert ended.level is Level.WARNED  # only the strike of day 29 still counts
    assert ended.strikes == 1
    assert ended.until is None


# -- lift_after_void -------------------------------------------------------------------------


@pytest.mark.parametrize("until", [NOW + 7 * DAY, None])
def test_voiding_under_the_threshold_lifts_the_ladders_suspension(until: float | None) -> None:
    user = recent(4, suspended=True, suspended_until=until, suspend_reason="5 strikes within 30d", suspend_auto=True)
    fields = lift_after_void(user, TIMED, NOW)
    assert fields == LIFTED
    lifted = record(user, fields)
    status = derive_status(lifted, TIMED, NOW)
    assert status.level is Level.THROTTLED
    assert status.until is None
    assert status.reason is None


@pytest.mark.parametrize("strikes", [5, 6])
def test_voiding_while_still_at_the_threshold_keeps_the_ladders_suspension(strikes: int) -> None:
    user = recent(strikes, suspended=True, suspended_until=NOW + 7 * DAY, suspend_auto=True)
    assert lift_after_void(user, TIMED, NOW) is None


@pytest.mark.parametrize("strikes", [0, 4, 5])
@pytest.mark.parametrize("until", [NOW + 7 * DAY, None])
def test_voiding_never_lifts_a_manual_suspension(strikes: int, until: float | None) -> None:
    user = recent(strikes, suspended=True, suspended_until=until, suspend_reason="operator", suspend_auto=False)
    assert lift_after_void(user, TIMED, NOW) is None
    assert derive_status(user, TIMED, NOW).level is Level.SUSPENDED


@pytest.mark.parametrize("strikes", [0, 4])
def test_voiding_without_a_suspension_lifts_nothing(strikes: int) -> None:
    assert lift_after_void(recent(strikes), TIMED, NOW) is None


def test_lifting_counts_only_the_strikes_that_count_now() -> None:
    # five strikes, the oldest a window old at NOW: four count, so the ladder's suspension is lifted
    user = state(NOW - 30 * DAY, *(NOW - i * HOUR for i in range(4)), suspended=True, suspend_auto=True)
    assert lift_after_void(user, TIMED, NOW) == LIFTED
    assert lift_after_void(user, TIMED, NOW - 1.0) == LIFTED  # the strike at NOW lies ahead then
    assert lift_after_void(user, TIMED, NOW - 2 * HOUR) == LIFTED
    user = replace(user, strike_times=(NOW - 30 * DAY + 1.0, *user.strike_times[1:]))
    assert lift_after_void(user, TIMED, NOW) is None


# -- reported count and carried fields -------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "count", "level"),
    [
        (recent(5), 12, Level.THROTTLED),
        (recent(1), 9, Level.WARNED),  # the count changes only what is reported
        (recent(0), 4, Level.OK),
        (recent(2, suspended=True), 7, Level.SUSPENDED),
    ],
)
def test_reported_count_uses_strike_count_when_given(user: UserState, count: int, level: Level) -> None:
    status = derive_status(user, TIMED, NOW, strike_count=count)
    assert status.strikes == count
    assert status.level is level
    assert status == replace(derive_status(user, TIMED, NOW), strikes=count)


def test_terms_version_is_carried_into_the_status() -> None:
    assert derive_status(recent(1, terms_version="2026-01"), TIMED, NOW).terms_version == "2026-01"
    assert derive_status(recent(5, terms_version="v2"), TIMED, NOW).terms_version == "v2"
    assert derive_status(recent(0, suspended=True, terms_version="v3"), TIMED, NOW).terms_version == "v3"


# -- strikes_to_keep: the state need only hold the latest `suspend` strikes --------------------


@pytest.mark.parametrize("ladder", [TIMED, INDEFINITE, LadderPolicy(warn=2, throttle=4, suspend=9)])
def test_strikes_to_keep_is_the_suspend_threshold(ladder: LadderPolicy) -> None:
    assert strikes_to_keep(ladder) == ladder.suspend


@no_deadline
@given(
    times=st.lists(st.integers(min_value=0, max_value=10**8).map(float), min_size=1, max_size=40),
    thresholds=st.lists(st.integers(min_value=1, max_value=8), min_size=3, max_size=3).map(sorted),
    window=st.integers(min_value=1, max_value=10**7).map(float),
    suspend_for=st.one_of(st.none(), st.integers(min_value=1, max_value=10**7).map(float)),
    reset_at=st.one_of(st.none(), st.integers(min_value=0, max_value=10**8).map(float)),
    after=st.integers(min_value=0, max_value=2 * 10**7),
)
def test_the_latest_suspend_strikes_derive_the_same_status_as_the_full_history(
    times: list[float],
    thresholds: list[int],
    window: float,
    suspend_for: float | None,
    reset_at: float | None,
    after: int,
) -> None:
    warn, throttle, suspend = thresholds
    ladder = LadderPolicy(window=window, warn=warn, throttle=throttle, suspend=suspend, suspend_for=suspend_for)
    ordered = sorted(times)
    full = UserState(USER, tuple(ordered), reset_at=reset_at)
    kept = UserState(USER, tuple(ordered[-strikes_to_keep(ladder) :]), reset_at=reset_at)
    assert len(kept.strike_times) == min(len(times), suspend)
    now = ordered[-1] + after

    from_kept = derive_status(kept, ladder, now)
    from_full = derive_status(full, ladder, now)
    assert from_kept.level is from_full.level
    assert from_kept.level is not Level.SUSPENDED
    assert from_kept.until == from_full.until
    assert from_kept.reason == from_full.reason
    exact = len(counting_strikes(full, ladder, now))
    assert derive_status(kept, ladder, now, exact) == derive_status(full, ladder, now, exact)
    assert (suspension_after_strike(kept, ladder, now) is None) == (suspension_after_strike(full, ladder, now) is None)

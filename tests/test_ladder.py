"""The escalation ladder: warn -> throttle -> suspend, decay, reinstatement, manual suspension."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aupguard.ladder import (
    Level,
    UserState,
    counting_strikes,
    derive_status,
    strikes_to_keep,
    with_strike,
)
from aupguard.policy import LadderPolicy

HOUR = 3600.0
DAY = 86400.0
TIMED = LadderPolicy(window=30 * DAY, warn=1, throttle=3, suspend=5, suspend_for=7 * DAY)
INDEFINITE = LadderPolicy(window=30 * DAY, warn=1, throttle=3, suspend=5, suspend_for=None)
USER = "k1_" + "ab" * 32
NOW = 1_800_000_000.0
BASE = 1_700_000_000.0


def state(*times: float, **fields: object) -> UserState:
    return UserState(USER, tuple(sorted(times)), **fields)  # type: ignore[arg-type]


def recent(n: int) -> UserState:
    """``n`` strikes one hour apart, the latest one hour before NOW."""
    return state(*(NOW - (n - i) * HOUR for i in range(n)))


def five_strikes() -> UserState:
    """Strikes at BASE, BASE+1h, ..., BASE+4h."""
    return state(*(BASE + i * HOUR for i in range(5)))


LATEST = BASE + 4 * HOUR


def reference_level(n: int, warn: int, throttle: int, suspend: int) -> Level:
    if n >= suspend:
        return Level.SUSPENDED
    if n >= throttle:
        return Level.THROTTLED
    if n >= warn:
        return Level.WARNED
    return Level.OK


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
        (5, Level.SUSPENDED),
        (6, Level.SUSPENDED),
        (9, Level.SUSPENDED),
    ],
)
def test_level_changes_exactly_at_the_thresholds(ladder: LadderPolicy, strikes: int, level: Level) -> None:
    status = derive_status(recent(strikes), ladder, NOW)
    assert status.level is level
    assert status.strikes == strikes
    assert status.user_hash == USER


@given(
    thresholds=st.lists(st.integers(min_value=1, max_value=20), min_size=3, max_size=3).map(sorted),
    strikes=st.integers(min_value=0, max_value=25),
    suspend_for=st.sampled_from([None, 7 * DAY]),
)
def test_level_is_the_highest_threshold_reached(thresholds: list[int], strikes: int, suspend_for: float | None) -> None:
    warn, throttle, suspend = thresholds
    ladder = LadderPolicy(window=30 * DAY, warn=warn, throttle=throttle, suspend=suspend, suspend_for=suspend_for)
    status = derive_status(recent(strikes), ladder, NOW)
    assert status.level is reference_level(strikes, warn, throttle, suspend)
    assert status.strikes == strikes


def test_new_user_is_ok() -> None:
    status = derive_status(UserState(USER), TIMED, NOW)
    assert status.level is Level.OK
    assert status.strikes == 0
    assert status.until is None


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


@given(
    strike=st.integers(min_value=0, max_value=2**40),
    window=st.integers(min_value=1, max_value=2**30),
    age=st.integers(min_value=0, max_value=2**31),
)
def test_a_strike_counts_while_younger_than_the_window(strike: int, window: int, age: int) -> None:
    ladder = LadderPolicy(window=float(window), warn=1, throttle=2, suspend=3)
    status = derive_status(state(float(strike)), ladder, float(strike + age))
    assert status.strikes == (1 if age < window else 0)


def test_decay_walks_the_user_down_the_ladder() -> None:
    strikes = state(*(BASE + i * DAY for i in range(4)))  # days 0, 1, 2, 3
    levels = [derive_status(strikes, TIMED, BASE + (30 + d) * DAY).level for d in range(4)]
    # at day 30 the strike of day 0 has decayed, at day 31 the one of day 1, ...
    assert levels == [Level.THROTTLED, Level.WARNED, Level.WARNED, Level.OK]


# -- reinstatement ---------------------------------------------------------------------------


def test_reinstatement_voids_earlier_strikes() -> None:
    suspended = recent(5)
    assert derive_status(suspended, TIMED, NOW).level is Level.SUSPENDED
    reinstated = state(*suspended.strike_times, reset_at=NOW - 30 * 60)
    status = derive_status(reinstated, TIMED, NOW)
    assert status.level is Level.OK
    assert status.strikes == 0


def test_strikes_after_reinstatement_count_again() -> None:
    user = state(NOW - 5 * HOUR, NOW - 4 * HOUR, NOW - 3 * HOUR, NOW - HOUR, reset_at=NOW - 2 * HOUR)
    status = derive_status(user, TIMED, NOW)
    assert status.level is Level.WARNED
    assert status.strikes == 1


def test_old_reinstatement_does_not_revive_decayed_strikes() -> None:
    user = state(NOW - 31 * DAY, NOW - HOUR, reset_at=NOW - 60 * DAY)
    assert derive_status(user, TIMED, NOW).strikes == 1


# -- suspension by strikes -------------------------------------------------------------------


def test_suspension_runs_suspend_for_from_the_latest_strike() -> None:
    at_latest = derive_status(five_strikes(), TIMED, LATEST)
    assert at_latest.level is Level.SUSPENDED
    assert at_latest.until == LATEST + 7 * DAY
    assert at_latest.reason
    assert derive_status(five_strikes(), TIMED, LATEST + 7 * DAY - 1).level is Level.SUSPENDED


def test_after_the_suspension_the_user_is_throttled_while_strikes_count() -> None:
    status = derive_status(five_strikes(), TIMED, LATEST + 7 * DAY)
    assert status.level is Level.THROTTLED
    assert status.until is None
    assert status.strikes == 5
    assert derive_status(five_strikes(), TIMED, BASE + 29 * DAY).level is Level.THROTTLED


def test_after_the_suspension_strikes_decay_as_usual() -> None:
    # at BASE + 30d + 2h the strikes of BASE, +1h and +2h have decayed: two remain
    status = derive_status(five_strikes(), TIMED, BASE + 30 * DAY + 2 * HOUR)
    assert status.level is Level.WARNED
    assert status.strikes == 2


def test_a_new_strike_during_suspension_extends_it() -> None:
    later = LATEST + 3 * DAY
    user = state(*five_strikes().strike_times, later)
    status = derive_status(user, TIMED, LATEST + 7 * DAY)
    assert status.level is Level.SUSPENDED
    assert status.until == later + 7 * DAY


def test_suspension_lasts_suspend_for_even_when_an_early_strike_decays_meanwhile() -> None:
    # Five strikes inside the window (days 0, 1, 2, 3, 29) suspend the user for 7 days from day 29.
    # The strike of day 0 decays on day 30; the suspension must still run until day 36.
    user = state(*(BASE + d * DAY for d in (0, 1, 2, 3, 29)))
    assert derive_status(user, TIMED, BASE + 29 * DAY).level is Level.SUSPENDED
    status = derive_status(user, TIMED, BASE + 30 * DAY + HOUR)
    assert status.level is Level.SUSPENDED
    assert status.until == BASE + 36 * DAY


def test_without_suspend_for_the_suspension_is_indefinite() -> None:
    status = derive_status(five_strikes(), INDEFINITE, LATEST + 29 * DAY)
    assert status.level is Level.SUSPENDED
    assert status.until is None


def test_without_suspend_for_the_suspension_outlives_the_window() -> None:
    # "until reinstated": the strikes decaying does not lift the suspension.
    status = derive_status(five_strikes(), INDEFINITE, BASE + 60 * DAY)
    assert status.level is Level.SUSPENDED
    assert status.until is None


def test_reinstatement_lifts_an_indefinite_suspension() -> None:
    user = state(*five_strikes().strike_times, reset_at=LATEST + DAY)
    assert derive_status(user, INDEFINITE, LATEST + 2 * DAY).level is Level.OK


# -- manual suspension -----------------------------------------------------------------------


def test_manual_suspension_without_end() -> None:
    user = UserState(USER, suspended=True, suspend_reason="fraud ring", terms_version="v1")
    status = derive_status(user, TIMED, NOW)
    assert status.level is Level.SUSPENDED
    assert status.until is None
    assert status.reason == "fraud ring"
    assert status.strikes == 0
    assert status.terms_version == "v1"
    assert derive_status(user, TIMED, NOW + 365 * DAY).level is Level.SUSPENDED


def test_manual_suspension_with_end() -> None:
    user = UserState(USER, (NOW - HOUR,), suspended=True, suspended_until=NOW + DAY, suspend_reason="review")
    status = derive_status(user, TIMED, NOW)
    assert status.level is Level.SUSPENDED
    assert status.until == NOW + DAY
    assert status.reason == "review"
    assert derive_status(user, TIMED, NOW + DAY - 1).level is Level.SUSPENDED


def test_expired_manual_suspension_falls_back_to_the_strikes() -> None:
    user = UserState(USER, (NOW - HOUR,), suspended=True, suspended_until=NOW + DAY, suspend_reason="review")
    status = derive_status(user, TIMED, NOW + DAY)
    assert status.level is Level.WARNED
    assert status.until is None
    assert status.reason is None


def test_manual_suspension_applies_to_a_user_without_strikes_on_a_lenient_ladder() -> None:
    lenient = LadderPolicy(window=DAY, warn=50, throttle=50, suspend=50)
    user = UserState(USER, suspended=True, suspended_until=NOW + HOUR)
    assert derive_status(user, lenient, NOW).level is Level.SUSPENDED


# -- reported count and carried fields -------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "count", "level"),
    [
        (recent(5), 12, Level.SUSPENDED),
        (recent(1), 9, Level.WARNED),  # the count changes only what is reported
        (recent(0), 0, Level.OK),
    ],
)
def test_reported_count_uses_strike_count_when_given(user: UserState, count: int, level: Level) -> None:
    status = derive_status(user, TIMED, NOW, strike_count=count)
    assert status.strikes == count
    assert status.level is level


def test_terms_version_is_carried_into_the_status() -> None:
    user = state(NOW - HOUR, terms_version="2026-01")
    assert derive_status(user, TIMED, NOW).terms_version == "2026-01"
    assert derive_status(state(*recent(5).strike_times, terms_version="v2"), TIMED, NOW).terms_version == "v2"


# -- with_strike: the state keeps only what the ladder needs ----------------------------------


def test_with_strike_keeps_the_latest_suspend_strikes_sorted() -> None:
    user = UserState(USER)
    times = [50.0, 10.0, 80.0, 20.0, 70.0, 30.0, 60.0, 40.0]
    for t in times:
        user = with_strike(user, t, TIMED)
    assert strikes_to_keep(TIMED) == TIMED.suspend
    assert user.strike_times == (40.0, 50.0, 60.0, 70.0, 80.0)


def test_with_strike_keeps_the_other_fields() -> None:
    before = UserState(
        USER,
        (1.0,),
        reset_at=0.5,
        suspended=True,
        suspended_until=99.0,
        suspend_reason="manual",
        terms_version="v1",
    )
    after = with_strike(before, 2.0, TIMED)
    assert after == UserState(USER, (1.0, 2.0), 0.5, True, 99.0, "manual", "v1")
    assert before.strike_times == (1.0,)  # the state is a value: the old one is unchanged


@given(
    times=st.lists(st.integers(min_value=0, max_value=10**8).map(float), min_size=1, max_size=40),
    thresholds=st.lists(st.integers(min_value=1, max_value=8), min_size=3, max_size=3).map(sorted),
    window=st.integers(min_value=1, max_value=10**7).map(float),
    suspend_for=st.one_of(st.none(), st.integers(min_value=1, max_value=10**7).map(float)),
    reset_at=st.one_of(st.none(), st.integers(min_value=0, max_value=10**8).map(float)),
    after=st.integers(min_value=0, max_value=2 * 10**7),
)
def test_truncated_state_derives_the_same_level_as_the_full_history(
    times: list[float],
    thresholds: list[int],
    window: float,
    suspend_for: float | None,
    reset_at: float | None,
    after: int,
) -> None:
    warn, throttle, suspend = thresholds
    ladder = LadderPolicy(window=window, warn=warn, throttle=throttle, suspend=suspend, suspend_for=suspend_for)
    truncated = UserState(USER, reset_at=reset_at)
    for t in times:
        truncated = with_strike(truncated, t, ladder)
    full = UserState(USER, tuple(sorted(times)), reset_at=reset_at)
    assert len(truncated.strike_times) == min(len(times), suspend)
    now = max(times) + after
    from_truncated = derive_status(truncated, ladder, now)
    from_full = derive_status(full, ladder, now)
    assert from_truncated.level is from_full.level
    assert from_truncated.until == from_full.until

"""Durations as written in policies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aupguard.durations import MAX_DURATION, format_duration, parse_duration

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("1ms", 0.001),
        ("2s", 2.0),
        ("15m", 900.0),
        ("12h", 43200.0),
        ("30d", 2_592_000.0),
        ("2w", 1_209_600.0),
        ("1.5h", 5400.0),
        ("0.5s", 0.5),
        (" 30d ", 2_592_000.0),
        ("30 d", 2_592_000.0),
    ],
)
def test_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize(("number", "seconds"), [(5, 5.0), (0.25, 0.25), (86400, 86400.0), (1e-3, 0.001)])
def test_numbers_are_seconds(number: float, seconds: float) -> None:
    result = parse_duration(number)
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "value",
    [
        0,
        0.0,
        "0s",
        "0ms",
        "0.0h",
        -1,
        -0.5,
        "-5s",
        "-1d",
        True,
        False,
        float("inf"),
        float("-inf"),
        float("nan"),
        "inf",
        "infs",
        "",
        "   ",
        "abc",
        "30",
        "5x",
        "5 seconds",
        "d",
        "1e3s",
        "5s5m",
        "5s 5m",
        "s5",
        None,
        [],
        [5],
        {"s": 5},
        b"5s",
    ],
    ids=repr,
)
def test_rejects(value: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the contract is a plain ValueError
        parse_duration(value)


def test_rejects_an_integer_too_large_for_a_float() -> None:
    # Contract: anything that is not a positive finite duration is a ValueError (policy loading
    # turns ValueError into PolicyError); an OverflowError would escape as a raw traceback.
    with pytest.raises(ValueError):  # noqa: PT011
        parse_duration(10**400)


def test_the_longest_duration_is_a_hundred_years() -> None:
    # Every time computed from a policy duration (now + suspend_for, a timeout given to a
    # thread) must stay representable: year 9999 is the end of datetime, and a thread's wait
    # overflows after ~292 years. A hundred years is long enough for any operator.
    assert parse_duration("36500d") == MAX_DURATION == parse_duration(MAX_DURATION)
    for longer in ("36501d", "5300w", "1000000000000d", MAX_DURATION + 1, 10**300, 1e308):
        with pytest.raises(ValueError, match="at most 100 years"):
            parse_duration(longer)


@given(amount=st.integers(min_value=1, max_value=10**9), unit=st.sampled_from(sorted(UNITS)))
def test_integer_amount_times_unit_round_trips(amount: int, unit: str) -> None:
    expected = amount * UNITS[unit]
    if expected > MAX_DURATION:
        with pytest.raises(ValueError, match="at most 100 years"):
            parse_duration(f"{amount}{unit}")
        return
    assert parse_duration(f"{amount}{unit}") == pytest.approx(expected, rel=1e-12)
    assert parse_duration(f" {amount} {unit} ") == pytest.approx(expected, rel=1e-12)


@given(seconds=st.floats(min_value=1e-6, max_value=MAX_DURATION, allow_nan=False, allow_infinity=False))
def test_positive_numbers_are_returned_unchanged(seconds: float) -> None:
    assert parse_duration(seconds) == seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.4, "0s"),
        (1, "1s"),
        (42, "42s"),
        (59.6, "1m"),
        (60, "1m"),
        (61, "1m 1s"),
        (900, "15m"),
        (3600, "1h"),
        (3661, "1h 1m"),  # only the two largest parts
        (12000, "3h 20m"),
        (86400, "1d"),
        (90061, "1d 1h"),
        (604800, "7d"),
        (30 * 86400, "30d"),
        (-5, "0s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(
    pair=st.one_of(
        st.tuples(st.integers(1, 59), st.just("s")),
        st.tuples(st.integers(1, 59), st.just("m")),
        st.tuples(st.integers(1, 23), st.just("h")),
        st.tuples(st.integers(1, 36_500), st.just("d")),
    )
)
def test_format_of_a_whole_unit_reads_like_the_policy_and_parses_back(pair: tuple[int, str]) -> None:
    amount, unit = pair
    seconds = parse_duration(f"{amount}{unit}")
    assert format_duration(seconds) == f"{amount}{unit}"
    assert parse_duration(format_duration(seconds)) == seconds

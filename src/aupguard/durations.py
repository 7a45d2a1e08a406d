"""Durations as written in policies: ``"30d"``, ``"12h"``, ``"15m"``, ``"2s"``, ``"500ms"``."""

from __future__ import annotations

import re

__all__ = ["DURATION_HELP", "MAX_DURATION", "format_duration", "parse_duration"]

#: the longest duration a policy may give: 100 years. Every time computed from one (``now +
#: suspend_for``, a timeout handed to a thread or socket) stays one a ``datetime``, a float
#: and the OS can hold; a longer one is refused at load, naming its key.
MAX_DURATION = 36_500 * 86400.0

DURATION_HELP = (
    "a duration such as '500ms', '2s', '15m', '12h', '30d', '2w' (or seconds as a number), at most 36500d (100 years)"
)

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*")


def parse_duration(value: object) -> float:
    """Return the duration in seconds; raise ``ValueError`` for anything else than a positive
    one of at most :data:`MAX_DURATION`."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError("duration too large") from None
    elif isinstance(value, str):
        match = _PATTERN.fullmatch(value)
        if match is None:
            raise ValueError("not a duration")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError("not a duration")
    if not 0 < seconds <= MAX_DURATION:  # also refuses NaN and infinity
        raise ValueError("duration must be positive and at most 100 years")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form of a number of seconds: ``7d``, ``3h 20m``, ``42s``."""
    seconds = max(0, round(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count}{unit}")
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return " ".join(parts[:2])

"""Epoch timestamps as the code meets them: stored by any version, shown to people.

A stored time is data, not a promise: a suspension recorded under an older policy (or
written by hand) may end after the last day ``datetime`` can hold, or be infinite. Showing
it or computing a ``Retry-After`` from it must not raise, so every conversion goes through
here and clamps to :data:`LATEST`.
"""

from __future__ import annotations

import datetime as dt
import math

__all__ = ["LATEST", "clamp", "utc_text"]

#: the latest moment aupguard records or shows: the start of the year 9999 (UTC)
LATEST = dt.datetime(9999, 1, 1, tzinfo=dt.UTC).timestamp()
_EARLIEST = dt.datetime(1, 1, 2, tzinfo=dt.UTC).timestamp()


def clamp(ts: float) -> float:
    """``ts`` brought inside the range a ``datetime`` can show (NaN counts as the latest)."""
    if math.isnan(ts):
        return LATEST
    return min(max(ts, _EARLIEST), LATEST)


def utc_text(ts: float, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    """``ts`` as UTC text; a time past :data:`LATEST` reads as "after" it."""
    shown = dt.datetime.fromtimestamp(clamp(ts), dt.UTC).strftime(fmt)
    return f"after {shown}" if not ts < LATEST else shown

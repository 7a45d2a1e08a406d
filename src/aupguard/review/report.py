"""The violation-rate report: users ranked by their rate of flagged calls (flagged items per
guarded call over a window, the ladder's by default), then by volume, with their ladder level.

A rate over a handful of calls says little (1 flag in 1 call is not "100 %"): users with
fewer than ``[review] report_min_calls`` calls in the window are listed after the rated
ones, by flagged count, with ``rated`` false."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..engine.monitor import MONITORED_STRIKE
from .queue import violation_rate

if TYPE_CHECKING:
    from ..engine.safeguards import Safeguards
    from ..stores.review_records import ViolationCount

__all__ = ["REPORT_COLUMNS", "ViolationRow", "report_csv", "report_json", "violation_report"]

REPORT_COLUMNS = ("user_hash", "flagged", "total", "rate", "level", "strikes", "rated", "monitored", "would_level")


@dataclass(frozen=True, slots=True)
class ViolationRow:
    user_hash: str
    flagged: int
    total: int
    rate: float
    level: str
    strikes: int
    rated: bool = True  # at least [review] report_min_calls calls in the window
    monitored: int = 0  # strikes monitor mode recorded (voided as made) inside the window
    would_level: str = ""  # the ladder level the user would be at in enforce mode


def violation_report(
    guard: Safeguards, *, limit: int = 100, window: float | None = None, min_calls: int | None = None
) -> list[ViolationRow]:
    """The ``limit`` users with the highest violation rate over ``window`` seconds (default
    the ladder's) among those with at least ``min_calls`` calls (default ``[review]
    report_min_calls``; ties: more flags, more calls), then the users with fewer calls."""
    since = guard._clock() - (guard.policy.ladder.window if window is None else window)
    least = guard.policy.review.report_min_calls if min_calls is None else min_calls
    guard.audit.flush()  # decision records still queued count too
    counts = guard.store.violation_counts(since=since)

    def calls(c: ViolationCount) -> int:
        return max(c.total, c.flagged)

    counts.sort(key=lambda c: (calls(c) < least, -violation_rate(c) if calls(c) >= least else 0.0, -c.flagged,
                               -c.total, c.user_hash))  # fmt: skip
    rows = []
    for count in counts[:limit]:
        status = guard.status_by_hash(count.user_hash)
        monitored = sum(1 for s in guard.store.strikes(count.user_hash, limit=1000)
                        if s.void_reason == MONITORED_STRIKE and s.at >= since)  # fmt: skip
        would = _level_of(status.strikes + monitored, guard) if monitored else status.level.value
        rated = calls(count) >= least
        rows.append(ViolationRow(count.user_hash, count.flagged, calls(count), round(violation_rate(count), 4),
                                 status.level.value, status.strikes, rated, monitored, would))  # fmt: skip
    return rows


def _level_of(strikes: int, guard: Safeguards) -> str:
    """The ladder level ``strikes`` counting strikes reach (what enforce mode would have done)."""
    ladder = guard.policy.ladder
    for level, threshold in (("suspended", ladder.suspend), ("throttled", ladder.throttle), ("warned", ladder.warn)):
        if strikes >= threshold:
            return level
    return "ok"


def report_csv(rows: list[ViolationRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for row in rows:
        writer.writerow([getattr(row, c) for c in REPORT_COLUMNS])
    return out.getvalue()


def report_json(rows: list[ViolationRow]) -> str:
    return json.dumps({"columns": list(REPORT_COLUMNS), "users": [asdict(r) for r in rows]}, indent=2)

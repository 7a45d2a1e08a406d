"""The violation-rate report: users ranked by their rate of flagged calls (flagged items per
guarded call over the ladder window), then by volume, with their ladder level."""

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

__all__ = ["REPORT_COLUMNS", "ViolationRow", "report_csv", "report_json", "violation_report"]

REPORT_COLUMNS = ("user_hash", "flagged", "total", "rate", "level", "strikes", "monitored", "would_level")


@dataclass(frozen=True, slots=True)
class ViolationRow:
    user_hash: str
    flagged: int
    total: int
    rate: float
    level: str
    strikes: int
    monitored: int = 0  # strikes monitor mode recorded (voided as made) inside the window
    would_level: str = ""  # the ladder level the user would be at in enforce mode


def violation_report(guard: Safeguards, *, limit: int = 100) -> list[ViolationRow]:
    """The ``limit`` users with the highest violation rate (ties: more flags, more calls)."""
    since = guard._clock() - guard.policy.ladder.window
    guard.audit.flush()  # decision records still queued count too
    counts = guard.store.violation_counts(since=since)
    counts.sort(key=lambda c: (-violation_rate(c), -c.flagged, -c.total, c.user_hash))
    rows = []
    for count in counts[:limit]:
        status = guard.status_by_hash(count.user_hash)
        monitored = sum(1 for s in guard.store.strikes(count.user_hash, limit=1000)
                        if s.void_reason == MONITORED_STRIKE and s.at >= since)  # fmt: skip
        would = _level_of(status.strikes + monitored, guard) if monitored else status.level.value
        rows.append(ViolationRow(count.user_hash, count.flagged, max(count.total, count.flagged),
                                 round(violation_rate(count), 4), status.level.value, status.strikes,
                                 monitored, would))  # fmt: skip
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

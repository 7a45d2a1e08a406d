"""Prometheus metrics of one engine, in the text exposition format.

Counting costs a dictionary increment on the hot path; everything else (queue depth, store
and counter errors, spill sizes) is read when scraped. Each process exports its own figures
(scrape every worker, or sum them in Prometheus); the audit records hold the exact totals.
Labels carry outcomes and moderator names, never user ids or text.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Callable, Iterator

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(_BUCKETS, seconds)] += 1
        self.total += seconds


class Metrics:
    def __init__(self) -> None:
        self.decisions: Counter[str] = Counter()  # by outcome: allowed or the error kind
        self._moderation: dict[tuple[str, str], _Histogram] = {}
        self._lock = threading.Lock()
        #: name -> (help, type, read) of figures read at scrape time; read returns (labels, value) pairs
        self._gauges: dict[str, tuple[str, str, Callable[[], list[tuple[str, float]]]]] = {}

    def moderation(self, moderator: str, seconds: float, failed: bool) -> None:
        key = (moderator, "error" if failed else "ok")
        with self._lock:
            histogram = self._moderation.get(key)
            if histogram is None:
                histogram = self._moderation[key] = _Histogram()
            histogram.observe(seconds)

    def read_at_scrape(self, name: str, help_: str, kind: str, read: Callable[[], list[tuple[str, float]]]) -> None:
        """Register a figure (``kind`` gauge or counter) computed when scraped."""
        self._gauges[name] = (help_, kind, read)

    def render(self) -> str:
        return "".join(self._lines())

    def _lines(self) -> Iterator[str]:
        yield "# HELP aupguard_decisions_total Guarded calls decided, by outcome.\n"
        yield "# TYPE aupguard_decisions_total counter\n"
        for outcome, count in sorted(self.decisions.copy().items()):
            yield f'aupguard_decisions_total{{outcome="{_label(outcome)}"}} {count}\n'
        yield "# HELP aupguard_moderation_seconds Time one moderator took on one text.\n"
        yield "# TYPE aupguard_moderation_seconds histogram\n"
        with self._lock:
            snapshot = [(k, list(h.counts), h.total) for k, h in sorted(self._moderation.items())]
        for (moderator, result), counts, total in snapshot:
            labels = f'moderator="{_label(moderator)}",result="{result}"'
            running = 0
            for bound, count in zip((*_BUCKETS, float("inf")), counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                yield f'aupguard_moderation_seconds_bucket{{{labels},le="{le}"}} {running}\n'
            yield f"aupguard_moderation_seconds_sum{{{labels}}} {total}\n"
            yield f"aupguard_moderation_seconds_count{{{labels}}} {running}\n"
        for name, (help_, kind, read) in sorted(self._gauges.items()):
            yield f"# HELP {name} {help_}\n# TYPE {name} {kind}\n"
            for labels, value in read():
                yield f"{name}{{{labels}}} {value}\n" if labels else f"{name} {value}\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

"""What one guarded call costs, next to a bare ``limits`` hit, in one process run.

Three loops over the same known user / key, on embedded defaults (a fresh SQLite store in a
temporary directory, ``memory://`` counters):

* ``bare limits hit``: ``MovingWindowRateLimiter(MemoryStorage()).hit(item, key)``;
* ``check``: ``Safeguards.check(user)``;
* ``acheck``: ``await Safeguards.acheck(user)`` inside an event loop.

The audit writer thread runs while the loops do and competes for the GIL; that is part of
what an app pays, so a guarded run's time includes draining the audit queue of the records
it made (``audit.flush()``). The queue is drained before every run, so no run pays for
another's records.

``limits``' in-memory moving window keeps one entry per hit in a list and inserts at the
front, so a hit costs more the fuller the window is (about +1 µs at 20,000 entries, +7 µs at
100,000). Counters are reset before every run so all three loops see the same occupancy
(0 → ``calls``); otherwise the later runs would mostly measure ``list.insert``.

Afterwards the engine is closed (which flushes the audit queue), the store is reopened, and
the audit records of the user are counted: the count must equal the guarded calls made.

Run with ``python bench/bench_engine.py`` (``--profile`` adds a cProfile of ``check``) or through
``make bench``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping, Sequence
from itertools import repeat
from pathlib import Path

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from _harness import RATE, USER, Column, GuardedBench, Run, Subjects, profiled, run_bench, table
from aupguard import Policy

__all__ = ["main"]

BARE_KEY = "bench-key"
TARGET = 3.0  # issue 17's budget: a guarded call costs at most 3x a bare limits hit

BARE, CHECK, ACHECK = "bare limits hit", "check", "acheck"


class Bench(GuardedBench):
    """The three subjects, each able to time ``n`` calls from an empty rate-limit window."""

    prog, default_calls, default_warmup = "bench/bench_engine.py", 20_000, 2_000
    profile_help = "also print a cProfile of check"
    tmp_prefix = "aupguard-bench-"

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        if self.policy.terms is not None:
            self.guard.accept_terms(USER, self.policy.terms.version)
        self.bare_storage = MemoryStorage()
        self.bare_limiter = MovingWindowRateLimiter(self.bare_storage)
        self.bare_item = limits.parse(RATE)
        self.runner = asyncio.Runner()
        self.resources.callback(self.runner.close)

    def load_policy(self, tmp: Path) -> Policy:
        return Policy.from_mapping({"limits": {"default": RATE, "throttled": "1000/minute"}}, env={})

    def setup(self) -> None:
        """Nothing to check before the timing: every subject checks its own results."""

    def subjects(self) -> Subjects:
        return {BARE: self.bare, CHECK: self.check, ACHECK: self.acheck}

    def reset_others(self) -> None:
        self.bare_storage.reset()

    def bare(self, n: int) -> Run:
        self.settle()
        hit, item, key = self.bare_limiter.hit, self.bare_item, BARE_KEY
        ok = False
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            ok = hit(item, key)
        loop = time.perf_counter_ns() - t0
        if not ok:
            raise RuntimeError("the bare limiter refused a hit; the bench measures allowed calls")
        return Run(n, loop, 0, 0)

    def check(self, n: int) -> Run:
        self.settle()
        check = self.guard.check
        decision = None
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            decision = check(USER)
        loop = time.perf_counter_ns() - t0
        return self._guarded(n, loop, decision is not None and decision.allowed)

    def acheck(self, n: int) -> Run:
        self.settle()
        loop, allowed = self.runner.run(self._acheck_loop(n))
        return self._guarded(n, loop, allowed)

    async def _acheck_loop(self, n: int) -> tuple[int, bool]:
        acheck = self.guard.acheck
        decision = None
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            decision = await acheck(USER)
        return time.perf_counter_ns() - t0, decision is not None and decision.allowed

    def _guarded(self, n: int, loop: int, allowed: bool) -> Run:
        run = self.drained(n, loop)
        if not allowed:
            raise RuntimeError("aupguard refused the call; the bench measures allowed calls")
        return run

    def report(self, results: Mapping[str, Sequence[Run]], *, reps: int, calls: int) -> dict[str, float]:
        print(
            f"engine: µs per call, median of {reps} runs × {calls:,} calls "
            "(guarded runs include draining the audit queue)"
        )
        medians = table(
            results,
            name_width=16,
            decimals=2,
            queued=lambda name: name != BARE,
            last=Column("vs bare", 8, lambda name, m: f"{m[name] / m[BARE]:.2f}×"),
        )
        print(
            "  (queued: audit records still waiting for the writer when the calls ended, median; "
            "at the queue bound the calls ran at the writer's pace)"
        )
        return medians

    def profile(self, calls: int, top: int = 25) -> None:
        """cProfile of ``check`` (deterministic, so it inflates call-heavy code): time per call."""

        def title(us: float) -> str:
            return f"cProfile of check, {calls:,} calls (profiled: {us:.2f} µs per call); top {top} by own time"

        check = self.guard.check
        with profiled(self, calls, title=title, unit="call", top=top):
            for _ in repeat(None, calls):
                check(USER)

    def summary(self, medians: Mapping[str, float], started: float) -> None:
        check_ratio, acheck_ratio = medians[CHECK] / medians[BARE], medians[ACHECK] / medians[BARE]
        verdict = "within" if max(check_ratio, acheck_ratio) <= TARGET else "OVER"
        print(
            f"engine: check {medians[CHECK]:.1f} µs, acheck {medians[ACHECK]:.1f} µs, "
            f"bare limits hit {medians[BARE]:.1f} µs → {check_ratio:.1f}× / {acheck_ratio:.1f}× "
            f"(target ≤ {TARGET:g}×: {verdict}) [{time.perf_counter() - started:.1f} s]"
        )


def main(argv: Sequence[str] | None = None) -> int:
    return run_bench(Bench, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

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

Run with ``python bench/engine.py`` (``--profile`` adds a cProfile of ``check``) or through
``make bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from aupguard import Keyring, Policy, Safeguards, generate_key_entry

__all__ = ["main"]

USER = "user-1"
BARE_KEY = "bench-key"
RATE = "1000000/minute"  # high enough that every call in the bench is allowed
TARGET = 4.0  # the budget: a guarded call costs at most 4x a bare limits hit

BARE, CHECK, ACHECK = "bare limits hit", "check", "acheck"


@dataclass(frozen=True, slots=True)
class Run:
    calls: int
    loop_ns: int  # the calls themselves
    drain_ns: int  # then writing the audit records they queued
    backlog: int  # audit records still queued when the calls ended

    @property
    def per_call_us(self) -> float:
        return (self.loop_ns + self.drain_ns) / self.calls / 1000

    @property
    def loop_per_call_us(self) -> float:
        return self.loop_ns / self.calls / 1000


class Bench:
    """The three subjects, each able to time ``n`` calls from an empty rate-limit window."""

    def __init__(self, db: Path) -> None:
        self.policy = Policy.from_mapping({"limits": {"default": RATE, "throttled": "1000/minute"}}, env={})
        self.keyring = Keyring.parse(generate_key_entry(), source="bench")
        self.store_uri = f"sqlite:///{db}"
        self.guard = Safeguards(self.policy, store=self.store_uri, counters="memory://", keyring=self.keyring)
        if self.policy.terms is not None:
            self.guard.accept_terms(USER, self.policy.terms.version)
        self.bare_storage = MemoryStorage()
        self.bare_limiter = MovingWindowRateLimiter(self.bare_storage)
        self.bare_item = limits.parse(RATE)
        self.runner = asyncio.Runner()
        self.guarded_calls = 0

    def _settle(self) -> None:
        """The same start for every run: no queued audit records, empty windows, no garbage."""
        self.guard.audit.flush()
        self.guard.counters.reset()
        self.bare_storage.reset()
        gc.collect()

    def bare(self, n: int) -> Run:
        self._settle()
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
        self._settle()
        check = self.guard.check
        decision = None
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            decision = check(USER)
        loop = time.perf_counter_ns() - t0
        return self._guarded(n, loop, decision is not None and decision.allowed)

    def acheck(self, n: int) -> Run:
        self._settle()
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
        backlog = self.guard.audit.pending()
        t0 = time.perf_counter_ns()
        if not self.guard.audit.flush():
            raise RuntimeError("the audit queue did not drain within 30 s")
        drain = time.perf_counter_ns() - t0
        self.guarded_calls += n
        if not allowed:
            raise RuntimeError("aupguard refused the call; the bench measures allowed calls")
        return Run(n, loop, drain, backlog)

    def count_audit_records(self) -> tuple[int, float]:
        """Close the engine (flushing the queue), reopen the store, count the user's records."""
        t0 = time.perf_counter()
        self.guard.close()
        close_s = time.perf_counter() - t0
        self.runner.close()
        with Safeguards(self.policy, store=self.store_uri, counters="memory://", keyring=self.keyring) as reopened:
            return len(reopened.audit.find(user_id=USER, limit=10**9)), close_s

    def close(self) -> None:
        self.guard.close()
        self.runner.close()


def measure(bench: Bench, *, reps: int, calls: int, warmup: int) -> dict[str, list[Run]]:
    subjects: dict[str, Callable[[int], Run]] = {BARE: bench.bare, CHECK: bench.check, ACHECK: bench.acheck}
    for run in subjects.values():  # first call loads the user from SQLite; warms caches
        run(warmup)
    results: dict[str, list[Run]] = {name: [] for name in subjects}
    order = list(subjects)
    for rep in range(reps):
        # rotate the order so that no subject always runs right after another
        for name in order[rep % len(order) :] + order[: rep % len(order)]:
            results[name].append(subjects[name](calls))
    return results


def report(results: dict[str, list[Run]], *, reps: int, calls: int) -> dict[str, float]:
    print(
        f"engine: µs per call, median of {reps} runs × {calls:,} calls (guarded runs include draining the audit queue)"
    )
    header = f"  {'':<16} {'median':>8} {'best':>8} {'worst':>8} {'calls only':>11} {'queued':>7} {'vs bare':>8}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    medians = {name: statistics.median(r.per_call_us for r in runs) for name, runs in results.items()}
    for name, runs in results.items():
        per_call = [r.per_call_us for r in runs]
        loop_only = statistics.median(r.loop_per_call_us for r in runs)
        queued = f"{statistics.median(r.backlog for r in runs):,.0f}" if name != BARE else "-"
        ratio = medians[name] / medians[BARE]
        print(
            f"  {name:<16} {medians[name]:>8.2f} {min(per_call):>8.2f} {max(per_call):>8.2f} "
            f"{loop_only:>11.2f} {queued:>7} {ratio:>7.2f}×"
        )
    print(
        "  (queued: audit records still waiting for the writer when the calls ended, median; "
        "at the queue bound the calls ran at the writer's pace)"
    )
    return medians


def profile_check(bench: Bench, calls: int, top: int = 25) -> None:
    """cProfile of ``check`` (deterministic, so it inflates call-heavy code): time per call."""
    bench._settle()
    check = bench.guard.check
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in repeat(None, calls):
        check(USER)
    profiler.disable()
    bench.guarded_calls += calls
    bench.guard.audit.flush()
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    total = sum(v[2] for _, v in rows)
    print(
        f"\ncProfile of check, {calls:,} calls (profiled: {total / calls * 1e6:.2f} µs per call); top {top} by own time"
    )
    print(f"  {'own µs/call':>11} {'cum µs/call':>11} {'calls/call':>10}  function")
    for (path, line, func), (_, ncalls, tottime, cumtime, _) in rows[:top]:
        where = func if path == "~" else f"{Path(path).parent.name}/{Path(path).name}:{line} {func}"
        print(f"  {tottime / calls * 1e6:>11.2f} {cumtime / calls * 1e6:>11.2f} {ncalls / calls:>10.2f}  {where}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/engine.py", description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of check")
    args = parser.parse_args([] if argv is None else argv)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aupguard-bench-") as tmp:
        bench = Bench(Path(tmp) / "bench.db")
        try:
            results = measure(bench, reps=args.reps, calls=args.calls, warmup=args.warmup)
            medians = report(results, reps=args.reps, calls=args.calls)
            if args.profile:
                profile_check(bench, args.calls)
            expected = bench.guarded_calls
            written, close_s = bench.count_audit_records()
        finally:
            bench.close()

    ok = written == expected
    print(
        f"audit: {written:,} records for {USER} after close ({close_s * 1000:.0f} ms), "
        f"{expected:,} guarded calls made (warm-up included): {'none dropped' if ok else 'MISMATCH'}"
    )
    check_ratio, acheck_ratio = medians[CHECK] / medians[BARE], medians[ACHECK] / medians[BARE]
    verdict = "within" if max(check_ratio, acheck_ratio) <= TARGET else "OVER"
    print(
        f"engine: check {medians[CHECK]:.1f} µs, acheck {medians[ACHECK]:.1f} µs, "
        f"bare limits hit {medians[BARE]:.1f} µs → {check_ratio:.1f}× / {acheck_ratio:.1f}× "
        f"(target ≤ {TARGET:g}×: {verdict}) [{time.perf_counter() - started:.1f} s]"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Instructions per ``guard.check`` and per ``await guard.acheck``, beside one bare ``limits``
hit, counted by callgrind: the engine's cost as a figure a noisy, shared machine cannot blur.

``python bench/bench_engine_ir.py`` compiles the callgrind client-request helper of
``bench/bench_conversation_ir.py`` and runs itself under ``valgrind --tool=callgrind`` with
instrumentation off while Python starts and the engine is set up (embedded defaults:
``memory://`` counters and store, a known user, no prompt), then counts the instructions (Ir)
of 1,000 calls after 100 uncounted ones, for each subject. Only the calling thread is counted
(the audit writer's share depends on how its batches fall). Counters are reset before each
subject, so every one sees the same window occupancy. Only the public API is used, so the
same file measures an older commit (``git worktree`` + its own ``.venv``) for a before/after.
Not run by ``make bench`` (a minute under callgrind): ``bench/run.py engine_ir``.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from _callgrind import helper_library, run_counted
from aupguard import Keyring, Policy, Safeguards, generate_key_entry

__all__ = ["main"]

CALLS, WARMUP = 1_000, 100
SUBJECTS = ("limits-hit", "check", "acheck")
USER = "bench-user"


def counted(lib: ctypes.CDLL) -> None:
    """Under valgrind: one labelled callgrind dump per subject."""
    policy = Policy.from_mapping({"limits": {"default": "1000000/minute"}}, env={})
    keyring = Keyring.parse(generate_key_entry("bench"), source="bench")
    guard = Safeguards(policy, store="memory://", counters="memory://", keyring=keyring)
    item = limits.parse("1000000/minute")
    limiter = MovingWindowRateLimiter(MemoryStorage())
    loop = asyncio.new_event_loop()

    async def acheck_many(n: int) -> bool:
        return all([(await guard.acheck(USER)).allowed for _ in range(n)])

    try:
        gc.collect()
        gc.freeze()
        lib.bench_start()
        for name in SUBJECTS:
            guard.counters.reset()
            limiter.storage.reset()
            if name == "limits-hit":
                run = lambda n: all([limiter.hit(item, USER) for _ in range(n)])  # noqa: E731
            elif name == "check":
                run = lambda n: all([guard.check(USER).allowed for _ in range(n)])  # noqa: E731
            else:
                run = lambda n: loop.run_until_complete(acheck_many(n))  # noqa: E731
            run(WARMUP)
            guard.audit.flush()
            lib.bench_zero()
            ok = run(CALLS)
            lib.bench_dump(name.encode())
            guard.audit.flush()
            if not ok:
                raise RuntimeError(f"{name}: a call was refused")
        lib.bench_stop()
    finally:
        loop.close()
        guard.close()


def main(argv: Sequence[str] | None = None) -> int:
    lib = helper_library()
    if lib is not None:
        counted(lib)
        return 0
    started = time.perf_counter()
    found = run_counted(Path(__file__).resolve(), "engine_ir")
    if found is None:
        return 1
    if any(name not in found for name in SUBJECTS):
        print(f"engine_ir: missing dumps; found {sorted(found)}", file=sys.stderr)
        return 1
    floor = found["limits-hit"] / CALLS
    print(f"engine_ir: instructions (Ir) per call in the calling thread, {CALLS} calls after {WARMUP}")
    for name in SUBJECTS:
        per = found[name] / CALLS
        print(f"  {name:<11} {per:>10,.0f} Ir  {per / floor:>5.2f}× a bare limits hit")
    print(f"engine_ir: done [{time.perf_counter() - started:.1f} s under callgrind]")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

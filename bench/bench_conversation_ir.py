"""Instructions per guarded call for the rules case of ``bench/bench_conversation.py``, counted by
callgrind: a figure that a noisy, shared machine cannot blur.

``python bench/bench_conversation_ir.py`` compiles a four-function C helper (callgrind's client
requests, from valgrind's ``callgrind.h``) into a temporary directory, runs itself under
``valgrind --tool=callgrind`` with instrumentation off while Python starts and the engines
are set up, and then, for each scope (``request``, ``last_turn``) and each size (1, 10, 50
turns: the conversations and the 300-keyword policy of ``bench/bench_conversation.py``), counts the
instructions (Ir) of 200 ``guard.check(user, prompt=request)`` calls after 20 uncounted ones.
Only the calling thread is counted (``--separate-threads=yes``: callgrind's client requests
then zero and dump the current thread alone): the audit writer's share depends on how its
batches fall and moved the total by a few per cent from run to run (about 55 k Ir per call
more with it). ``PYTHONHASHSEED=0`` keeps string hashing the same from run to run. Needs
valgrind and a C compiler; not run by ``make bench`` (90-140 s under callgrind on a 2-core
machine): ``bench/run.py conversation_ir`` or this file runs it.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from _callgrind import helper_library, run_counted
from aupguard.engine.request_body import prompt_from_body
from bench_conversation import SCOPES, TURNS, USER, Engines, conversation, messages_body, rules_policy

__all__ = ["main"]

CALLS, WARMUP = 200, 20


def _label(scope: str, turns: int) -> str:
    return f"rules-{scope}-{turns}"


def counted(lib: ctypes.CDLL) -> None:
    """Under valgrind: one labelled callgrind dump per scope and size."""
    engines = Engines()
    try:
        guards = {scope: engines.make(rules_policy(scope)) for scope in SCOPES}
        requests = {turns: prompt_from_body(messages_body(conversation(f"rules-{turns}", turns))) for turns in TURNS}
        gc.collect()
        gc.freeze()
        lib.bench_start()
        for scope in SCOPES:
            check = guards[scope].check
            for turns in TURNS:
                request = requests[turns]
                for _ in range(WARMUP):
                    check(USER, prompt=request)
                guards[scope].audit.flush()
                lib.bench_zero()
                allowed = all(check(USER, prompt=request).allowed for _ in range(CALLS))
                guards[scope].audit.flush()
                lib.bench_dump(_label(scope, turns).encode())
                if not allowed:
                    raise RuntimeError(f"a benign {turns}-turn request was refused ({scope})")
        lib.bench_stop()
    finally:
        engines.close()


def main(argv: Sequence[str] | None = None) -> int:
    lib = helper_library()
    if lib is not None:
        counted(lib)
        return 0
    started = time.perf_counter()
    found = run_counted(Path(__file__).resolve(), "conversation_ir")
    if found is None:
        return 1
    missing = [_label(s, t) for s in SCOPES for t in TURNS if _label(s, t) not in found]
    if missing:
        print(f"conversation_ir: no callgrind dump for {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"conversation_ir: rules, instructions (Ir) per guard.check in the calling thread, {CALLS} calls "
          f"counted after {WARMUP}")  # fmt: skip
    print(f"  {'turns':>5} {'msgs':>4} {'request':>12} {'last_turn':>12} {'ratio':>8}")
    for turns in TURNS:
        request, floor = (found[_label(scope, turns)] / CALLS for scope in SCOPES)
        print(f"  {turns:>5} {2 * turns - 1:>4} {request:>12,.0f} {floor:>12,.0f} {request / floor:>7.2f}×")
    print(f"conversation_ir: done [{time.perf_counter() - started:.1f} s under callgrind]")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Worker processes for the multi-process tests: ``python -m tests.support.workers strike DB USER N GO``
(DB: a SQLite path or a store URI) and ``spill-on-a-full-disk STORE SPILL CALLS``.

The hash key comes from ``AUPGUARD_HASH_KEY``, as in a real deployment.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from aupguard import Policy, Safeguards


def strike(db: str, user: str, count: int, go_file: str) -> None:
    policy = Policy.from_mapping({"ladder": {"window": "30d", "warn": 1, "throttle": 3, "suspend": 5}}, env={})
    with Safeguards(policy, store=db if "://" in db else f"sqlite:///{db}") as guard:
        deadline = time.monotonic() + 30
        while not Path(go_file).exists() and time.monotonic() < deadline:  # start together
            time.sleep(0.005)
        for n in range(count):
            guard.strike(user, reason=f"race {n}", source="process")


def spill_on_a_full_disk(store: str, spill: str, calls: int) -> None:
    """The store goes down (the test kills it when this prints ``ready``), the spill file hits
    the file-size limit (a full disk, as the process sees it), then there is room again and
    the store is back (the test restarts it when this prints ``full``). Prints what it made."""
    import json
    import logging
    import resource
    import signal
    import threading

    alarms: list[str] = []

    class Alarm(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "AUDIT SPILL FULL" in record.getMessage():
                alarms.append(record.getMessage())

    logging.getLogger("aupguard.audit").addHandler(Alarm())
    policy = Policy.from_mapping(
        {"storage": {"store_timeout": "1s", "spill": spill, "audit_queue": 50}, "limits": {"default": "100000/minute"}},
        env={},
    )
    with Safeguards(policy, store=store) as guard:
        made = [guard.check("disk").request_id]
        print("ready", flush=True)
        sys.stdin.readline()  # the store is down now
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG, no signal
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, hard))
        loader = threading.Thread(target=lambda: made.extend(guard.check("disk").request_id for _ in range(calls)))
        loader.start()
        deadline = time.monotonic() + 30
        while not alarms and time.monotonic() < deadline:
            time.sleep(0.05)
        blocked = loader.is_alive()  # writers wait for room rather than lose records
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
        print(json.dumps({"alarm": bool(alarms), "blocked": blocked}), flush=True)
        sys.stdin.readline()  # the store is back
        loader.join(60)
        spilled = guard.audit._spill.spilled if guard.audit._spill else 0
    print(json.dumps({"made": len(made), "spilled": spilled}), flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "strike":
        strike(args[0], args[1], int(args[2]), args[3])
    elif command == "spill-on-a-full-disk":
        spill_on_a_full_disk(args[0], args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown command {command}")

"""Worker processes for the multi-process tests: ``python -m tests._workers strike DB USER N GO``
(DB: a SQLite path or a store URI).

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


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "strike":
        strike(args[0], args[1], int(args[2]), args[3])
    else:
        raise SystemExit(f"unknown command {command}")

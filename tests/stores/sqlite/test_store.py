"""The SQLite store across threads and processes: exact counts, change propagation, schema."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aupguard import Keyring, Level, Policy, Safeguards, StoreError
from aupguard.stores.sqlite.schema import SCHEMA_VERSION
from tests.conftest import MakeGuard

ROOT = Path(__file__).resolve().parents[3]
RACE_LADDER = {"ladder": {"window": "30d", "warn": 1, "throttle": 3, "suspend": 5}}


def _env(key_entry: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUPGUARD_")}
    return {**env, "AUPGUARD_HASH_KEY": key_entry}


def test_threads_and_processes_racing_strikes_lose_none(make_guard: MakeGuard, tmp_path: Path, key_entry: str) -> None:
    db = tmp_path / "aupguard.db"
    go = tmp_path / "go"
    guard = make_guard(RACE_LADDER)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.workers", "strike", str(db), "racer", "500", str(go)],
            cwd=ROOT,
            env=_env(key_entry),
        )
        for _ in range(4)
    ]
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            while not go.exists():
                time.sleep(0.005)
            for n in range(500):
                guard.strike("racer", reason=f"thread {n}", source="thread")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # let the processes open the store, then start everyone at once
    go.touch()
    for t in threads:
        t.join(120)
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    assert errors == []
    status = guard.status("racer")
    assert status.strikes == 12 * 500
    assert len(guard.strikes("racer", limit=10_000)) == 6000
    sources = [s.source for s in guard.strikes("racer", limit=10_000)]
    assert sources.count("process") == 2000 and sources.count("thread") == 4000


def test_suspension_from_another_process_takes_effect_within_a_second(
    make_guard: MakeGuard, tmp_path: Path, key_entry: str
) -> None:
    guard = make_guard()
    assert guard.check("u-1").allowed  # the user is now cached in this process
    subprocess.run(
        [sys.executable, "-m", "aupguard", "--store", f"sqlite:///{tmp_path / 'aupguard.db'}",
         "user", "suspend", "u-1", "--reason", "fraud", "--for", "1h"],
        env=_env(key_entry), check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    deadline = time.monotonic() + 1.0
    decision = guard.check("u-1")
    while decision.allowed and time.monotonic() < deadline:
        time.sleep(0.02)
        decision = guard.check("u-1")
    assert decision.error == "user_suspended"


def test_state_survives_a_restart(make_guard: MakeGuard) -> None:
    first = make_guard({"ladder": {"warn": 1, "throttle": 2, "suspend": 3}})
    for _ in range(3):
        first.strike("u-1", reason="flagged")
    request_ids = [first.check("u-1").request_id for _ in range(50)]
    first.close()
    second = make_guard({"ladder": {"warn": 1, "throttle": 2, "suspend": 3}})
    assert second.status("u-1").level is Level.SUSPENDED
    assert {r.request_id for r in second.audit.find(user_id="u-1", limit=100)} == set(request_ids)


def test_schema_is_versioned(make_guard: MakeGuard, tmp_path: Path, keyring: Keyring) -> None:
    make_guard().close()
    db = tmp_path / "aupguard.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM aupguard_meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )
        conn.execute("UPDATE aupguard_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        Safeguards(Policy(), store=f"sqlite:///{db}", keyring=keyring)


def test_unwritable_store_path_is_a_store_error(keyring: Keyring, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot open SQLite store"):
        Safeguards(Policy(), store=f"sqlite:///{blocker}/sub/aupguard.db", keyring=keyring)


def test_an_engine_created_before_fork_works_in_the_child(make_guard: MakeGuard, tmp_path: Path) -> None:
    """gunicorn --preload and multiprocessing create the engine once, then fork workers."""
    guard = make_guard()
    assert guard.check("parent-user").allowed
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: decide, see a suspension made by the parent, flush, report
        code = 1
        try:
            os.close(read)
            child_decision = guard.check("child-user")
            os.write(write, child_decision.request_id.encode() + b"\n")
            deadline = time.monotonic() + 5
            while guard.check("parent-user").allowed and time.monotonic() < deadline:
                time.sleep(0.02)
            seen = not guard.check("parent-user").allowed
            code = 0 if guard.audit.flush(timeout=10) and seen else 3
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_request_id = pipe.readline().strip()
        guard.suspend("parent-user", reason="fraud")  # the child must notice this
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [r.request_id for r in guard.audit.find(user_id="child-user")] == [child_request_id]

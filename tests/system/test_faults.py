"""Fault injection: a full disk under the spill file while PostgreSQL is down, and SIGTERM in
the middle of load. The documented fail modes hold and nothing acknowledged is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg

from tests.support.servers import PostgresServer, free_port, wait_answering

ROOT = Path(__file__).resolve().parents[2]


def _env(key_entry: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUPGUARD_")}
    return {**env, "AUPGUARD_HASH_KEY": key_entry, "PYTHONPATH": str(ROOT), **extra}


def test_a_full_disk_under_the_spill_file_raises_the_alarm_and_loses_nothing(
    own_postgres: PostgresServer, tmp_path: Path, key_entry: str
) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.support.workers", "spill-on-a-full-disk", own_postgres.url,
         str(tmp_path / "spill"), "400"],
        cwd=ROOT, env=_env(key_entry), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert worker.stdin is not None and worker.stdout is not None
    try:
        assert worker.stdout.readline().strip() == "ready"
        own_postgres.kill()
        worker.stdin.write("killed\n")
        worker.stdin.flush()
        state = json.loads(worker.stdout.readline())
        assert state == {"alarm": True, "blocked": True}  # loud, and callers wait rather than drop
        own_postgres.start()
        worker.stdin.write("started\n")
        worker.stdin.flush()
        result = json.loads(worker.stdout.readline())
        assert worker.wait(60) == 0
    finally:
        worker.kill()
    assert result["made"] == 401 and result["spilled"] > 0
    with psycopg.connect(own_postgres.url) as conn:
        (stored,) = conn.execute("SELECT count(*) FROM decisions").fetchone()  # type: ignore[misc]
    assert stored == result["made"]


def test_sigterm_in_the_middle_of_load_loses_no_answered_request(tmp_path: Path, key_entry: str) -> None:
    policy = tmp_path / "aupguard.toml"
    policy.write_text(
        f'[storage]\nstore = "sqlite:///{tmp_path / "aupguard.db"}"\n[limits]\ndefault = "100000/minute"\n'
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.support.scale_app:asgi_app", "--host", "127.0.0.1", "--port",
         str(port), "--log-level", "warning"],
        cwd=ROOT, env=_env(key_entry, AUPGUARD_POLICY=str(policy)),
    )  # fmt: skip
    answered: list[int] = []
    stop = threading.Event()

    def load(user: str) -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    response = client.post(f"http://127.0.0.1:{port}/chat", headers={"X-User": user},
                                           json={"prompt": "hello"})  # fmt: skip
                except httpx.TransportError:  # refused or cut: not acknowledged
                    if server.poll() is not None:
                        return
                    time.sleep(0.01)
                    continue
                answered.append(response.status_code)

    wait_answering(f"http://127.0.0.1:{port}", server, "warm")
    loaders = [threading.Thread(target=load, args=(f"user-{n}",)) for n in range(8)]
    for t in loaders:
        t.start()
    time.sleep(1.5)
    before = len(answered)
    server.send_signal(signal.SIGTERM)  # in the middle of the load
    assert server.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its graceful exit
    stop.set()
    for t in loaders:
        t.join(30)
    assert before > 50 and set(answered) == {200}
    import sqlite3

    with sqlite3.connect(tmp_path / "aupguard.db") as conn:
        (stored,) = conn.execute("SELECT count(*) FROM decisions").fetchone()
    assert stored >= len(answered) + 1  # every acknowledged request (and the warm-up) has its record

"""What ``bench/bench_scale.py`` and ``bench/soak.py`` share: free ports, a redis-server of the bench's
own, a fresh PostgreSQL database, the policy file, and ``bench/_scale_app.py`` served by uvicorn
workers. Not a benchmark itself (bench/run.py skips modules whose name starts with ``_``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from aupguard.testing import free_port, wait_port

__all__ = [
    "RULES",
    "Database",
    "free_port",
    "hash_key",
    "own_redis",
    "policy_file",
    "serve_app",
    "serve_gateway",
    "wait_port",
]

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
RATE = "1000000/minute"
RULES = "".join(
    f'[[moderation.rules]]\ncategory = "c{n}"\naction = "block"\nkeywords = ["forbidden phrase {n}"]\n'
    for n in range(50)
)


class Database:
    """A fresh database on the machine's PostgreSQL, dropped on exit."""

    def __init__(self) -> None:
        self.name = f"aupguard_bench_{uuid.uuid4().hex[:8]}"
        self.url = f"postgresql://postgres@127.0.0.1:5432/{self.name}"

    def __enter__(self) -> Database:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def count(self, table: str) -> int:
        with psycopg.connect(self.url) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - our own table names
        return int(row[0]) if row else 0


@contextlib.contextmanager
def own_redis() -> Iterator[str]:
    """A redis-server of the bench's own on a free port (nothing else counts on it)."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_port(port, 60)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.kill()
        server.wait(10)


def policy_file(folder: Path, store: str, counters: str, *, rules: bool = True) -> Path:
    """The bench policy: ``store``, ``counters``, a limit no bench reaches and (``rules``) the
    50 ``[[moderation.rules]]`` blocks."""
    path = folder / "aupguard.toml"
    path.write_text(
        f'[storage]\nstore = "{store}"\ncounters = "{counters}"\nspill = "{folder / "spill"}"\ntimeout = "2s"\n'
        f'[limits]\ndefault = "{RATE}"\n{RULES if rules else ""}'
    )
    return path


def hash_key() -> str:
    from aupguard import generate_key_entry

    return generate_key_entry("bench")


@contextlib.contextmanager
def serve_app(kind: str, policy: Path, redis_url: str, *, workers: int) -> Iterator[int]:
    """``bench/_scale_app.py`` as ``kind`` under ``uvicorn --workers``; yields the port. On
    exit: SIGTERM, and the workers flush their audit queues on the way out."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUPGUARD_")}
    env |= {"BENCH_APP": kind, "REDIS_URL": redis_url, "AUPGUARD_POLICY": str(policy),
            "AUPGUARD_HASH_KEY": hash_key(), "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}"}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "_scale_app:app", "--workers", str(workers), "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=ROOT / "bench", env=env, start_new_session=True,
    )  # fmt: skip
    try:
        wait_port(port, 60)
        yield port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(120)


@contextlib.contextmanager
def serve_gateway(policy: Path, key_entry: str, upstream: str, *, workers: int = 1) -> Iterator[int]:
    """``aupguard gateway`` (the real command, ``workers`` processes) with ``policy``; yields the port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUPGUARD_")}
    env |= {"AUPGUARD_HASH_KEY": key_entry, "ANTHROPIC_API_KEY": "soak-upstream-key"}
    command = [str(Path(sys.executable).parent / "aupguard"), "--policy", str(policy), "gateway", "--port", str(port),
               "--upstream", upstream]  # fmt: skip
    if workers > 1:
        command += ["--workers", str(workers)]
    server = subprocess.Popen(command, env=env, cwd=policy.parent, stdout=subprocess.DEVNULL)
    try:
        wait_port(port, 60)
        yield port
    finally:
        server.send_signal(signal.SIGINT)  # a clean shutdown: the audit queue is written
        server.wait(120)

"""Fixtures for the real Redis and PostgreSQL on this machine (``make test`` starts them),
and for throwaway servers a test starts on a free port and may kill."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from aupguard.testing import free_port, wait_port

__all__ = [
    "PostgresServer",
    "RedisServer",
    "drop_database",
    "free_port",
    "new_database",
    "wait_answering",
    "wait_port",
]

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_TEST_DB = "redis://127.0.0.1:6379/9"


def new_database() -> str:
    name = f"aupguard_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty database on the machine's PostgreSQL, dropped afterwards."""
    url = new_database()
    yield url
    drop_database(url)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """Database 9 of the machine's Redis. Not emptied: every test's hash key is new, so its
    users' keys are its own, and another test run on the same machine is not disturbed
    (the keys expire with their windows)."""
    client = redis.Redis.from_url(REDIS_TEST_DB)
    client.ping()
    yield REDIS_TEST_DB
    client.close()


class RedisServer:
    """A redis-server of the test's own on a free port, to kill and restart mid-load."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


class PostgresServer:
    """A PostgreSQL cluster of the test's own (initdb in a temporary folder) on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="aupguard-pg-"))
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        self._initdb, self._pg_ctl = str(bindir / "initdb"), str(bindir / "pg_ctl")
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(
            [*self._as_postgres, self._initdb, "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust",
             "--no-sync", "-E", "UTF8"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*self._as_postgres, self._pg_ctl, "-D", str(self.dir / "data"), "-o", options, "-w", "-l",
             str(self.dir / "log"), "start"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def kill(self) -> None:
        subprocess.run(
            [*self._as_postgres, self._pg_ctl, "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop"],
            check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_answering(url: str, proc: subprocess.Popen[bytes], user: str, timeout: float = 30.0) -> None:
    """Wait until the app ``proc`` serves answers ``POST {url}/chat`` (one guarded call by ``user``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.post(f"{url}/chat", headers={"X-User": user}, json={"prompt": "hi"}, timeout=2)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"{proc.args!r} did not start answering"
            assert proc.poll() is None, f"{proc.args!r} exited with {proc.returncode}"
            time.sleep(0.1)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.kill()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.remove()

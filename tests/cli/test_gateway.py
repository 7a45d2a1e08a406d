"""``aupguard gateway --workers 2`` (the real command: uvicorn's worker processes on one
socket) on the machine's PostgreSQL and Redis, in front of the local Messages-API double: a
rate limit and a CLI suspension hold across the workers, a shutdown in the middle of load
loses no audit record, and state the workers cannot share is refused before any starts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from aupguard import Keyring, Policy, Safeguards
from aupguard.cli.main import main as cli
from aupguard.gateway import GatewayKeys
from aupguard.testing import MessagesDouble
from tests.support.gateway import UPSTREAM_KEY
from tests.support.servers import free_port

AUPGUARD = str(Path(sys.executable).parent / "aupguard")
ASK = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "Hello there."}]}


def _policy(tmp_path: Path, store: str, counters: str, limit: str) -> Path:
    path = tmp_path / "aupguard.toml"
    path.write_text(
        f'[storage]\nstore = "{store}"\ncounters = "{counters}"\nspill = "{tmp_path / "spill"}"\n'
        f'[limits]\ndefault = "{limit}"\n'
    )
    return path


def _env(policy: Path, key_entry: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUPGUARD_")}
    return env | {"AUPGUARD_POLICY": str(policy), "AUPGUARD_HASH_KEY": key_entry, "ANTHROPIC_API_KEY": UPSTREAM_KEY}


def _keys(policy: Path, key_entry: str, *users: str) -> dict[str, str]:
    with Safeguards(Policy.from_toml(policy, env={}), keyring=Keyring.parse(key_entry, source="test")) as guard:
        keys = GatewayKeys(guard)
        return {user: keys.create(user).key for user in users}


@contextlib.contextmanager
def _gateway(policy: Path, key_entry: str, upstream: str, key: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    argv = [AUPGUARD, "gateway", "--workers", "2", "--port", str(port), "--upstream", upstream]
    proc = subprocess.Popen(argv, env=_env(policy, key_entry), start_new_session=True, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # both workers build their gateway; the socket is open before they answer
            with contextlib.suppress(httpx.TransportError):
                if httpx.post(f"{url}/v1/messages", json=ASK, headers={"x-api-key": key}, timeout=5).status_code:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


def _post(url: str, key: str) -> httpx.Response:
    with httpx.Client(timeout=10) as client:  # a new connection each time: either worker may take it
        return client.post(f"{url}/v1/messages", json=ASK, headers={"x-api-key": key})


@pytest.fixture
def double() -> Iterator[MessagesDouble]:
    server = MessagesDouble().start()
    yield server
    server.stop()


def test_a_rate_limit_holds_across_workers(
    tmp_path: Path, pg_url: str, redis_url: str, key_entry: str, double: MessagesDouble
) -> None:
    policy = _policy(tmp_path, pg_url, redis_url, "20/minute")
    keys = _keys(policy, key_entry, "limited", "warmup")
    with _gateway(policy, key_entry, double.url, keys["warmup"]) as (url, _), ThreadPoolExecutor(16) as pool:
        statuses = [r.status_code for r in pool.map(lambda _: _post(url, keys["limited"]), range(60))]
    assert statuses.count(200) == 20 and statuses.count(429) == 40  # one limit, not one per worker


def test_a_cli_suspension_holds_in_every_worker(
    tmp_path: Path,
    pg_url: str,
    redis_url: str,
    key_entry: str,
    double: MessagesDouble,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = _policy(tmp_path, pg_url, redis_url, "100000/minute")
    keys = _keys(policy, key_entry, "target", "warmup")
    with _gateway(policy, key_entry, double.url, keys["warmup"]) as (url, _):
        with ThreadPoolExecutor(8) as pool:  # both workers serve (and cache) the user
            assert {r.status_code for r in pool.map(lambda _: _post(url, keys["target"]), range(40))} == {200}
        monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
        assert cli(["--policy", str(policy), "user", "suspend", "target", "--reason", "abuse"]) == 0
        time.sleep(1.0)  # the documented bound: a suspension takes effect in every worker within a second
        with ThreadPoolExecutor(8) as pool:
            after = [r for r in pool.map(lambda _: _post(url, keys["target"]), range(40))]
    assert {r.status_code for r in after} == {403}
    assert {r.json()["error"]["type"] for r in after} == {"user_suspended"}


def test_a_shutdown_in_the_middle_of_load_loses_no_record(
    tmp_path: Path, pg_url: str, redis_url: str, key_entry: str, double: MessagesDouble
) -> None:
    policy = _policy(tmp_path, pg_url, redis_url, "100000/minute")
    keys = _keys(policy, key_entry, *(f"u{n}" for n in range(8)), "warmup")
    answered: list[str] = []  # aupguard-request-id of every answer a client received
    stop = threading.Event()

    def load(user: str, url: str) -> None:
        with httpx.Client(timeout=10) as client:  # keep-alive: requests in flight when the signal comes
            while not stop.is_set():
                try:
                    response = client.post(f"{url}/v1/messages", json=ASK, headers={"x-api-key": keys[user]})
                except httpx.TransportError:  # the gateway stopped accepting: this client is done
                    return
                assert response.status_code == 200
                answered.append(response.headers["aupguard-request-id"])

    with _gateway(policy, key_entry, double.url, keys["warmup"]) as (url, proc):
        threads = [threading.Thread(target=load, args=(f"u{n}", url)) for n in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        os.killpg(proc.pid, signal.SIGTERM)  # what a service manager sends: the workers shut down mid-load
        assert proc.wait(120) == 0  # bounded: connections are closed 10 s into the shutdown at most
        stop.set()
        for thread in threads:
            thread.join(30)
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT request_id FROM decisions WHERE status = 200").fetchall()
    recorded = {row[0] for row in rows}
    assert len(answered) > 50  # the load was real
    assert set(answered) <= recorded  # every answer a client received has its record
    assert len(recorded) == len(answered) + 1  # and nothing else was answered (the warm-up call)


@pytest.mark.parametrize(
    ("store", "counters", "named"),
    [("sqlite:///{tmp}/a.db", "redis", "store"), ("postgres", "memory://", "counters")],
)
def test_state_workers_cannot_share_is_refused(
    tmp_path: Path,
    pg_url: str,
    redis_url: str,
    key_entry: str,
    store: str,
    counters: str,
    named: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = pg_url if store == "postgres" else store.format(tmp=tmp_path)
    policy = _policy(tmp_path, store, redis_url if counters == "redis" else counters, "10/minute")
    for name, value in _env(policy, key_entry).items():
        monkeypatch.setenv(name, value)
    if store.startswith("sqlite"):  # the store exists (commands never create one): the workers are what is refused
        assert cli(["migrate"]) == 0
        capsys.readouterr()
    assert cli(["gateway", "--workers", "2", "--port", str(free_port())]) != 0
    err = capsys.readouterr().err
    assert "PostgreSQL store and Redis counters" in err and f"[storage] {named}" in err

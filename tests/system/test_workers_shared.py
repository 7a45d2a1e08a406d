"""Four uvicorn workers and four gunicorn (Flask) workers sharing the machine's PostgreSQL
and Redis: a suspension made with the CLI refuses requests in every worker within a second,
and a limit of N lets exactly N requests through across the workers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from aupguard.cli.main import main as cli
from tests.support.servers import free_port, wait_answering

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = shutil.which("gunicorn", path=str(Path(sys.executable).parent))


def _policy(tmp_path: Path, pg_url: str, redis_url: str, limit: str) -> Path:
    path = tmp_path / "aupguard.toml"
    path.write_text(
        f'[storage]\nstore = "{pg_url}"\ncounters = "{redis_url}"\nspill = "{tmp_path / "spill"}"\n'
        f'[limits]\ndefault = "{limit}"\n'
    )
    return path


def _serve(kind: str, policy: Path, key_entry: str) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUPGUARD_")}
    env |= {"AUPGUARD_POLICY": str(policy), "AUPGUARD_HASH_KEY": key_entry, "PYTHONPATH": str(ROOT)}
    if kind == "uvicorn":
        argv = [sys.executable, "-m", "uvicorn", "tests.support.scale_app:asgi_app", "--workers", "4",
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    else:
        assert GUNICORN is not None
        argv = [GUNICORN, "-w", "4", "-b", f"127.0.0.1:{port}", "--log-level", "warning",
                "tests.support.scale_app:flask_app"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(url, proc, "warmup")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def _workers(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str, redis_url: str, key_entry: str, limit: str
) -> Iterator[tuple[str, Path]]:
    policy = _policy(tmp_path, pg_url, redis_url, limit)
    yield from ((url, policy) for url in _serve(request.param, policy, key_entry))


@pytest.fixture(params=["uvicorn", "gunicorn"])
def limited_workers(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str, redis_url: str, key_entry: str
) -> Iterator[tuple[str, Path]]:
    """Four workers under a limit of 20 a minute."""
    yield from _workers(request, tmp_path, pg_url, redis_url, key_entry, "20/minute")


@pytest.fixture(params=["uvicorn", "gunicorn"])
def workers(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str, redis_url: str, key_entry: str
) -> Iterator[tuple[str, Path]]:
    """Four workers under a limit no test reaches (however many calls it takes to meet every worker)."""
    yield from _workers(request, tmp_path, pg_url, redis_url, key_entry, "100000/minute")


def _post(url: str, user: str) -> tuple[int, int | None]:
    with httpx.Client(timeout=10) as client:  # a new connection each time: any worker may take it
        response = client.post(f"{url}/chat", headers={"X-User": user}, json={"prompt": "hello"})
        return response.status_code, response.json().get("pid")


def test_a_limit_of_n_lets_exactly_n_through_across_workers(limited_workers: tuple[str, Path]) -> None:
    url, _ = limited_workers
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: _post(url, "limited"), range(60)))
    statuses = [s for s, _ in results]
    assert statuses.count(200) == 20 and statuses.count(429) == 40
    assert len({pid for s, pid in results if s == 200}) > 1  # served by several workers


def test_a_cli_suspension_refuses_in_every_worker_at_once(
    workers: tuple[str, Path], key_entry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, policy = workers
    seen: set[int] = set()
    deadline = time.monotonic() + 20
    while len(seen) < 4:  # every worker has served (and cached) this user
        status, pid = _post(url, "target")
        assert status == 200 and pid is not None
        seen.add(pid)
        assert time.monotonic() < deadline, f"only workers {seen} answered"
    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    assert cli(["--policy", str(policy), "user", "suspend", "target", "--reason", "abuse"]) == 0
    # no wait at all: the suspension bumped the user's state version in Redis, so every
    # worker's very next call for them reloads it (the change feed would take <= 250 ms)
    with ThreadPoolExecutor(8) as pool:
        after = list(pool.map(lambda _: _post(url, "target"), range(40)))
    assert {status for status, _ in after} == {403}

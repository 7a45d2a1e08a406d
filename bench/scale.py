"""Scale-out figures: Redis round trips per guarded request beside slowapi and Flask-Limiter on
the same Redis, and requests per second through 4 uvicorn workers.

**Round trips.** A redis-server of this bench's own (a free port, nothing else on it) is watched
with ``MONITOR`` while each app answers 200 requests of one user in process (Starlette's and
Flask's test clients). ``MONITOR`` marks the commands a Lua script runs inside Redis as
``lua``; every other line is one command a client sent, i.e. one round trip (none of the
apps pipeline). Subjects: slowapi and Flask-Limiter as their quick starts have them
(``storage_uri`` the Redis, ``headers_enabled=True``, their default fixed window), and
aupguard's ASGI middleware and Flask extension (``counters`` the Redis, its default moving
window, a PostgreSQL store). The issue's goal: at most 1 round trip per guarded request.

**Throughput.** ``bench/_scale_app.py`` served by ``uvicorn --workers 4`` on loopback: the bare
app, slowapi on the Redis, aupguard on the machine's PostgreSQL (a fresh database, dropped
after) and the Redis, with 50 moderation rules. Two load processes keep 32 HTTP/1.1 keep-alive
connections busy for 6 s per app (1,000 users in rotation, ~200-character prompts), after a
1 s warm-up. Everything shares this machine's cores, load generator included, so the figures
are relative: each app's rate is also given as a fraction of the bare app's. Afterwards the
aupguard database is checked: one audit record per request answered.

Run with ``python bench/scale.py`` or through ``make bench`` (needs the machine's PostgreSQL
on 127.0.0.1:5432 and ``redis-server`` on the PATH; ``make test`` installs both).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import redis

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
RATE = "1000000/minute"
REQUESTS = 200
PROMPT = "Please summarise the attached quarterly report in three short bullet points for the team. Ticket "
RULES = "".join(
    f'[[moderation.rules]]\ncategory = "c{n}"\naction = "block"\nkeywords = ["forbidden phrase {n}"]\n'
    for n in range(50)
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


class Database:
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

    def decisions(self) -> int:
        with psycopg.connect(self.url) as conn:
            row = conn.execute("SELECT count(*) FROM decisions").fetchone()
        return int(row[0]) if row else 0


def _policy(tmp: Path, store: str, redis_url: str) -> Path:
    path = tmp / "aupguard.toml"
    path.write_text(
        f'[storage]\nstore = "{store}"\ncounters = "{redis_url}"\nspill = "{tmp / "spill"}"\n'
        f'timeout = "2s"\n[limits]\ndefault = "{RATE}"\n{RULES}'
    )
    return path


# -- round trips ---------------------------------------------------------------------------


class Monitor:
    """Counts the commands clients send (not those Lua scripts run) while active."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.sent = 0
        self.counting = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        try:
            with self.client.monitor() as monitor:
                self._ready.set()
                for command in monitor.listen():
                    if self.counting and command.get("client_type") != "lua":
                        self.sent += 1
        except redis.ConnectionError:  # the bench's server stopped: done
            return

    def count(self, work: Callable[[], None]) -> int:
        self.client.ping()  # flush anything in flight through the monitor first
        time.sleep(0.2)
        self.sent, self.counting = 0, True
        work()
        time.sleep(0.3)  # let the monitor read the tail
        self.counting = False
        return self.sent


def _asgi_requests(app: Any, stack: contextlib.ExitStack) -> Callable[[], None]:
    from starlette.testclient import TestClient

    client = stack.enter_context(TestClient(app))  # one event loop for every request, as a server has

    def run() -> None:
        for n in range(REQUESTS):
            r = client.post("/v1/chat", headers={"x-user": "rt-user"}, json={"prompt": f"{PROMPT}{n}"})
            assert r.status_code == 200, r.text

    client.post("/v1/chat", headers={"x-user": "rt-user"}, json={"prompt": "warm up"})
    return run


def _flask_requests(app: Any) -> Callable[[], None]:
    client = app.test_client()

    def run() -> None:
        for n in range(REQUESTS):
            r = client.post("/v1/chat", headers={"x-user": "rt-user"}, json={"prompt": f"{PROMPT}{n}"})
            assert r.status_code == 200, r.get_data(as_text=True)

    client.post("/v1/chat", headers={"x-user": "rt-user"}, json={"prompt": "warm up"})
    return run


@contextlib.contextmanager
def _without_bench_folder() -> Iterator[None]:
    """``import flask`` must find Flask, not bench/flask.py (this folder is first on sys.path
    when a bench runs as a script)."""
    here = Path(__file__).resolve().parent
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    for name in [m for m in sys.modules if m == "flask" and not hasattr(sys.modules[m], "Flask")]:
        del sys.modules[name]
    try:
        yield
    finally:
        sys.path[:] = saved


def round_trips(tmp: Path) -> dict[str, float]:
    with _without_bench_folder():
        return _round_trips(tmp)


def _round_trips(tmp: Path) -> dict[str, float]:
    from flask_limiter import Limiter as FlaskLimiter
    from slowapi import Limiter, _rate_limit_exceeded_handler
    from slowapi.errors import RateLimitExceeded
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from aupguard import Keyring, Policy, Safeguards
    from aupguard_asgi import SafeguardsMiddleware
    from aupguard_flask import FlaskSafeguards
    from flask import Flask, request

    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    results: dict[str, float] = {}
    stack = contextlib.ExitStack()
    try:
        _wait_port(port)
        monitor = Monitor(url)

        slow = Limiter(key_func=lambda request: request.headers.get("x-user"), headers_enabled=True, storage_uri=url)

        @slow.limit(RATE)
        async def limited(request: Request) -> Response:
            return JSONResponse({"chars": len((await request.json())["prompt"])})

        slowapi_app = Starlette(routes=[Route("/v1/chat", limited, methods=["POST"])])
        slowapi_app.state.limiter = slow
        slowapi_app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
        results["slowapi"] = monitor.count(_asgi_requests(slowapi_app, stack)) / REQUESTS

        flask_app = Flask("bench_flask_limiter")
        flask_limiter = FlaskLimiter(lambda: request.headers.get("x-user", "-"), app=flask_app, storage_uri=url,
                                     headers_enabled=True, default_limits=[RATE])  # fmt: skip
        flask_app.add_url_rule("/v1/chat", view_func=lambda: {"chars": len(request.get_json()["prompt"])},
                               methods=["POST"])  # fmt: skip
        assert flask_limiter.enabled
        results["Flask-Limiter"] = monitor.count(_flask_requests(flask_app)) / REQUESTS

        with Database() as db:
            keyring = Keyring.parse(_hash_key(), source="bench")
            guard = Safeguards(Policy.from_toml(_policy(tmp, db.url, url), env={}), keyring=keyring)
            try:
                guarded = Starlette(routes=[Route("/v1/chat", _chat, methods=["POST"])])
                guarded.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user", routes=["/v1/*"])
                results["aupguard (ASGI)"] = monitor.count(_asgi_requests(guarded, stack)) / REQUESTS
                guarded_flask = Flask("bench_aupguard")
                FlaskSafeguards(guarded_flask, safeguards=guard, user_header="x-user", routes=["/v1/*"])
                guarded_flask.add_url_rule("/v1/chat", view_func=lambda: {"chars": len(request.get_json()["prompt"])},
                                           methods=["POST"])  # fmt: skip
                results["aupguard (Flask)"] = monitor.count(_flask_requests(guarded_flask)) / REQUESTS
            finally:
                guard.close()
    finally:
        stack.close()
        server.kill()
        server.wait(10)
    return results


async def _chat(request: Any) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"chars": len((await request.json())["prompt"])})


# -- throughput ----------------------------------------------------------------------------


async def _connection(port: int, stop_at: float, offset: int, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = offset
    try:
        while time.monotonic() < stop_at:
            body = f'{{"prompt": "{PROMPT}{n}"}}'.encode()
            head = (
                f"POST /v1/chat HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                f"x-user: user-{n % 1000}\r\ncontent-length: {len(body)}\r\n\r\n"
            )
            writer.write(head.encode() + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            counts[0 if status_line.split(b" ")[1] == b"200" else 1] += 1
            n += 1
    finally:
        writer.close()


def _load(port: int, seconds: float, first: int, connections: int) -> tuple[int, int]:
    counts = [0, 0]

    async def run() -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(_connection(port, stop_at, first + c * 100_000, counts) for c in range(connections)))

    asyncio.run(run())
    return counts[0], counts[1]


def _drive(port: int, seconds: float) -> tuple[int, int]:
    """Two load processes (this file run with ``--load``), 16 connections each."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--load", str(port), str(seconds), str(p * 10_000_000), "16"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for p in range(2)
    ]
    totals = [0, 0]
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        ok, other = json.loads(out)
        totals[0] += ok
        totals[1] += other
    return totals[0], totals[1]


def throughput(tmp: Path, seconds: float = 6.0) -> tuple[dict[str, float], int, int]:
    redis_port = _free_port()
    redis_server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    rates: dict[str, float] = {}
    answered = recorded = 0
    try:
        _wait_port(redis_port)
        with Database() as db:
            policy = _policy(tmp, db.url, redis_url)
            for kind in ("bare", "slowapi", "aupguard"):
                port = _free_port()
                env = {k: v for k, v in os.environ.items() if not k.startswith("AUPGUARD_")}
                env |= {"BENCH_APP": kind, "REDIS_URL": redis_url, "AUPGUARD_POLICY": str(policy),
                        "AUPGUARD_HASH_KEY": _hash_key(), "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}"}  # fmt: skip
                server = subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "_scale_app:app", "--workers", "4", "--host", "127.0.0.1",
                     "--port", str(port), "--log-level", "warning", "--no-access-log"],
                    cwd=ROOT / "bench", env=env, start_new_session=True,
                )  # fmt: skip
                try:
                    _wait_port(port)
                    warm_ok, warm_other = _drive(port, 1.0)  # warm-up: every worker up, users loaded
                    ok, other = _drive(port, seconds)
                    rates[kind] = ok / seconds
                    if other:
                        print(f"  {kind}: {other} answers were not 200")
                    if kind == "aupguard":
                        answered = warm_ok + warm_other + ok + other
                finally:
                    os.killpg(server.pid, signal.SIGTERM)  # workers flush their audit queues on the way out
                    server.wait(60)
            recorded = db.decisions()
    finally:
        redis_server.kill()
        redis_server.wait(10)
    return rates, answered, recorded


def _hash_key() -> str:
    from aupguard import generate_key_entry

    return generate_key_entry("bench")


def main(argv: Sequence[str] | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="aupguard-bench-scale-") as tmp:
        trips = round_trips(Path(tmp))
        print(f"Redis round trips per guarded request ({REQUESTS} requests each, counted with MONITOR):")
        for name, value in trips.items():
            print(f"  {name:<18} {value:5.2f}")
        best = max(trips["aupguard (ASGI)"], trips["aupguard (Flask)"])
        print(f"  goal <= 1 for aupguard: {'met' if best <= 1 else 'MISSED'}")
        rates, answered, recorded = throughput(Path(tmp))
        print("Throughput, 4 uvicorn workers, 32 keep-alive connections from 2 load processes on the same cores:")
        for name, rate in rates.items():
            print(f"  {name:<10} {rate:8.0f} req/s   {rate / rates['bare']:5.2f} of bare")
        verdict = "one each" if recorded == answered else "MISMATCH"
        print(f"  aupguard audit records: {recorded} for {answered} requests answered, warm-up included ({verdict})")
        return 0 if best <= 1 and recorded == answered else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--load"]:
        port, seconds, first, connections = sys.argv[2:6]
        print(json.dumps(_load(int(port), float(seconds), int(first), int(connections))))
        sys.exit(0)
    sys.exit(main())

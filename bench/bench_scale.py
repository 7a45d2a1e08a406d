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

Run with ``python bench/bench_scale.py`` or through ``make bench`` (needs the machine's PostgreSQL
on 127.0.0.1:5432 and ``redis-server`` on the PATH; ``make test`` installs both).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import redis

from _load import PROMPT, drive
from _servers import RATE, Database, hash_key, own_redis, policy_file, serve_app

__all__ = ["main"]

REQUESTS = 200


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
    """``import flask`` must find Flask, not bench/bench_flask.py (this folder is first on sys.path
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
    from flask import Flask, request
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

    results: dict[str, float] = {}
    with own_redis() as url, contextlib.ExitStack() as stack:
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
            keyring = Keyring.parse(hash_key(), source="bench")
            guard = Safeguards(Policy.from_toml(policy_file(tmp, db.url, url), env={}), keyring=keyring)
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
    return results


async def _chat(request: Any) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"chars": len((await request.json())["prompt"])})


# -- throughput ----------------------------------------------------------------------------


def throughput(tmp: Path, seconds: float = 6.0) -> tuple[dict[str, float], int, int]:
    rates: dict[str, float] = {}
    answered = recorded = 0
    with own_redis() as redis_url, Database() as db:
        policy = policy_file(tmp, db.url, redis_url)
        for kind in ("bare", "slowapi", "aupguard"):
            with serve_app(kind, policy, redis_url, workers=4) as port:
                warm = drive(port, 1.0)  # warm-up: every worker up, users loaded
                load = drive(port, seconds)
                ok, other = load.statuses[200], load.answered - load.statuses[200]
                rates[kind] = ok / seconds
                if other:
                    print(f"  {kind}: {other} answers were not 200")
                if kind == "aupguard":
                    answered = warm.answered + load.answered
        recorded = db.count("decisions")
    return rates, answered, recorded


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
    sys.exit(main())

"""What ``SafeguardsMiddleware`` adds to a Starlette request, next to slowapi, in one process run.

Three apps with the same ``POST /v1/chat`` route (it reads the JSON body and answers a small
``JSONResponse``), driven the same way: the ASGI app called directly, one fresh scope per
request, a ``receive`` that hands over the body once and a ``send`` that checks the status.
No server and no network, so what differs between the apps is what each guard costs.

* ``bare``: the Starlette app alone;
* ``slowapi``: as slowapi's quick start has it, ``@limiter.limit`` on the route,
  ``app.state.limiter``, the ``RateLimitExceeded`` handler; ``memory://`` storage, keyed by
  the ``x-user`` header, ``headers_enabled=True`` (it writes its ``X-RateLimit-*`` headers);
* ``aupguard``: ``SafeguardsMiddleware(user_header="x-user", routes=["/v1/*"])`` on embedded
  defaults (a fresh SQLite store in a temporary directory, ``memory://`` counters), a policy
  with ``limits.default`` as high as slowapi's limit and 50 ``[[moderation.rules]]`` keywords
  (``mode = "before"``), one known user. Each request runs identity, the keyed hash, the
  status, the throttle, body read and prompt extraction, rules moderation, the replay, the
  ``RateLimit-*`` headers and the audit record;
* ``floor``: a pure ASGI middleware that reads and parses the body, takes one ``limits`` hit
  (aupguard's moving window and memory storage) and adds the ``RateLimit-*`` headers, and does
  nothing else: the part of any guard's cost that comes before a single safeguard. The summary
  says how much of the goal it takes and what is left for the safeguards.

Every request's prompt is ~200 characters of benign text that ends in its own sequence
number, so no request hits the moderation verdict cache (apps see new prompts); all three
apps get the same bodies, of the same length. Counters (aupguard's and slowapi's) are reset
before every run, so each run starts from an empty window (``limits``' in-memory moving
window costs more the fuller it is; see ``bench/bench_engine.py``).

The audit writer thread runs while the requests do, so an aupguard run's time includes
draining the audit queue of the records it made. Runs rotate the order of the apps. Reported:
the median µs per request of each app, each guard's overhead over the bare app, and the ratio
of aupguard's overhead to slowapi's (issue 17's goal: at most 1.0). Afterwards the engine is
closed, the store reopened, and the user's audit records counted: one per guarded request.

Run with ``python bench/bench_asgi.py`` (``--profile`` adds a cProfile of the aupguard app's
requests) or through ``make bench``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from _harness import AUPGUARD, BARE, FLOOR, RATE, USER, FloorLimiter, Reply, WebBench, run_bench
from aupguard import Safeguards
from aupguard_asgi import SafeguardsMiddleware

__all__ = ["main"]

PATH = "/v1/chat"
SLOWAPI = "slowapi"

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": PATH,
    "raw_path": PATH.encode(),
    "root_path": "",
    "query_string": b"",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 50000),
}


# -- the apps ----------------------------------------------------------------------------


def _answer(data: Any) -> JSONResponse:
    return JSONResponse({"id": "msg_bench", "type": "message", "chars": len(data["prompt"])})


async def chat(request: Request) -> Response:
    return _answer(await request.json())


def bare_app() -> Starlette:
    return Starlette(routes=[Route(PATH, chat, methods=["POST"])])


def _user_key(request: Request) -> str:
    return request.headers.get("x-user") or "anonymous"


def slowapi_app() -> tuple[Starlette, Limiter]:
    limiter = Limiter(key_func=_user_key, headers_enabled=True, storage_uri="memory://")

    @limiter.limit(RATE)
    async def limited_chat(request: Request) -> Response:
        return _answer(await request.json())

    app = Starlette(routes=[Route(PATH, limited_chat, methods=["POST"])])
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
    return app, limiter


def aupguard_app(guard: Safeguards) -> Starlette:
    middleware = [Middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user", routes=["/v1/*"])]
    return Starlette(routes=[Route(PATH, chat, methods=["POST"])], middleware=middleware)


class FloorMiddleware:
    """The least a guard can do (see ``FloorLimiter``), as pure ASGI middleware: read the body,
    parse it, one limits hit for the ``x-user`` header, replay the body, add the headers."""

    def __init__(self, app: ASGIApp, limiter: FloorLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body = (await receive()).get("body", b"")
        json.loads(body)
        user = next((v.decode() for k, v in scope["headers"] if k == b"x-user"), "anonymous")
        extra = [(k.lower().encode(), v.encode()) for k, v in self.limiter.headers(user)]
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # type: ignore[no-any-return]

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, replay, add_headers)


def floor_app(limiter: FloorLimiter) -> Starlette:
    middleware = [Middleware(FloorMiddleware, limiter=limiter)]
    return Starlette(routes=[Route(PATH, chat, methods=["POST"])], middleware=middleware)


# -- the driver --------------------------------------------------------------------------


class BodyOnce:
    """An ASGI ``receive``: the whole body in one message, then (if asked again) a disconnect."""

    __slots__ = ("message",)

    def __init__(self, body: bytes) -> None:
        self.message: Message | None = {"type": "http.request", "body": body, "more_body": False}

    async def __call__(self) -> Message:
        message, self.message = self.message, None
        return message if message is not None else {"type": "http.disconnect"}


def _headers(user: str, length: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"host", b"bench.local"),
        (b"content-type", b"application/json"),
        (b"content-length", str(length).encode()),
        (b"x-user", user.encode()),
    ]


async def drive(app: ASGIApp, payloads: Sequence[bytes], user: str = USER) -> tuple[int, int]:
    """Call ``app`` once per body; the time it took (ns) and how many answered 200."""
    headers = _headers(user, len(payloads[0]))
    ok = 0

    async def send(message: Message) -> None:
        nonlocal ok
        if message["type"] == "http.response.start" and message["status"] == 200:
            ok += 1

    t0 = time.perf_counter_ns()
    for body in payloads:
        await app({**SCOPE, "headers": list(headers)}, BodyOnce(body), send)
    return time.perf_counter_ns() - t0, ok


async def one_request(app: ASGIApp, payload: bytes, user: str = USER) -> Reply:
    """One request, with the whole reply kept (for the set-up checks, not timed)."""
    reply = Reply()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            reply.status = message["status"]
            reply.headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", ())}
        elif message["type"] == "http.response.body":
            reply.body += message.get("body", b"")

    await app({**SCOPE, "headers": _headers(user, len(payload))}, BodyOnce(payload), send)
    return reply


# -- the bench ---------------------------------------------------------------------------


class Bench(WebBench[ASGIApp]):
    """The three apps, each able to time ``n`` requests from an empty rate-limit window."""

    prog, tmp_prefix = "bench/bench_asgi.py", "aupguard-bench-asgi-"
    label, interface, name_width = "asgi", "ASGI", 10
    rival, rival_label = SLOWAPI, "slowapi"
    goal = 1.0  # issue 17: the full pipeline at most as costly as slowapi's rate limiting alone

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.slowapi, self.limiter = slowapi_app()
        self.apps = {
            BARE: bare_app(),
            SLOWAPI: self.slowapi,
            FLOOR: floor_app(self.floor),
            AUPGUARD: aupguard_app(self.guard),
        }
        self.runner = asyncio.Runner()
        self.resources.callback(self.runner.close)

    def request(self, app: ASGIApp, payload: bytes, user: str = USER) -> Reply:
        return self.runner.run(one_request(app, payload, user))

    def batch(self, app: ASGIApp, payloads: Sequence[bytes]) -> Callable[[], tuple[int, int]]:
        return lambda: self.runner.run(drive(app, payloads))

    def reset_others(self) -> None:
        self.limiter.reset()


def main(argv: Sequence[str] | None = None) -> int:
    return run_bench(Bench, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

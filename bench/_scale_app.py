"""The apps ``bench/bench_scale.py`` serves with 4 uvicorn workers: ``BENCH_APP`` = ``bare``,
``slowapi`` (Redis storage) or ``aupguard`` (PostgreSQL store, Redis counters, rules
moderation; policy from ``AUPGUARD_POLICY``). Each answers ``POST /v1/chat``."""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

KIND = os.environ.get("BENCH_APP", "bare")
RATE = "1000000/minute"


def _answer(data: Any) -> JSONResponse:
    return JSONResponse({"id": "msg_bench", "type": "message", "chars": len(data["prompt"])})


async def chat(request: Request) -> Response:
    return _answer(await request.json())


def build() -> Starlette:
    if KIND == "slowapi":
        from slowapi import Limiter, _rate_limit_exceeded_handler
        from slowapi.errors import RateLimitExceeded

        limiter = Limiter(
            key_func=lambda request: request.headers.get("x-user") or "-",
            headers_enabled=True,
            storage_uri=os.environ["REDIS_URL"],
        )

        @limiter.limit(RATE)
        async def limited(request: Request) -> Response:
            return _answer(await request.json())

        app = Starlette(routes=[Route("/v1/chat", limited, methods=["POST"])])
        app.state.limiter = limiter
        app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
        return app
    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"])])
    if KIND == "aupguard":
        from aupguard import Policy, Safeguards
        from aupguard_asgi import SafeguardsMiddleware

        guard = Safeguards(Policy.from_toml(os.environ["AUPGUARD_POLICY"]))
        app.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user", routes=["/v1/*"])
    return app


app = build()

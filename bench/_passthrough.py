"""The floor for ``bench/gateway.py --throughput``: a bare Starlette pass-through proxy of
``POST /v1/messages`` over the same upstream connection pool the gateway uses, and nothing
else (no key, no safeguards, no audit). What the gateway costs beyond this is its own.

Served by ``uvicorn _passthrough:app`` with ``UPSTREAM`` set to the upstream's URL. Not a
benchmark itself (bench/run.py skips modules whose name starts with ``_``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpcore
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:1").rstrip("/")
_URL = httpcore.URL(UPSTREAM + "/v1/messages")
_HOST = urlsplit(UPSTREAM).netloc.encode("ascii")
_pool: httpcore.AsyncConnectionPool | None = None


async def _messages(scope: Scope, receive: Receive, send: Send) -> None:
    global _pool
    if _pool is None:  # the gateway's pool, made the same way
        _pool = httpcore.AsyncConnectionPool(max_connections=1000, max_keepalive_connections=100)
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    headers = [(b"host", _HOST), (b"x-api-key", b"floor"), (b"content-type", b"application/json"),
               (b"anthropic-version", b"2023-06-01"), (b"content-length", str(len(body)).encode())]  # fmt: skip
    response = await _pool.handle_async_request(httpcore.Request(b"POST", _URL, headers=headers, content=body))
    try:
        received = {n.lower(): v for n, v in response.headers}
        down = [(n, v) for n, v in received.items() if n in (b"content-type", b"request-id")]
        if received.get(b"content-type", b"").startswith(b"text/event-stream"):  # relayed chunk by chunk
            await send({"type": "http.response.start", "status": response.status, "headers": down})
            async for chunk in response.aiter_stream():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        content = await response.aread()  # JSON: whole, with its length (as the gateway answers it)
        down.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": down})
        await send({"type": "http.response.body", "body": content})
    finally:
        await response.aclose()


class _Endpoint:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _messages(scope, receive, send)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    if _pool is not None:
        await _pool.aclose()


app = Starlette(routes=[Route("/v1/messages", _Endpoint(), methods=["POST"])], lifespan=_lifespan)

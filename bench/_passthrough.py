"""The floor for ``bench/bench_gateway.py --throughput``: a bare Starlette pass-through proxy of
``POST /v1/messages`` over the same upstream connection pool the gateway uses, and nothing
else (no key, no safeguards, no audit). What the gateway costs beyond this is its own.

Served by ``uvicorn _passthrough:app`` with ``UPSTREAM`` set to the upstream's URL. Not a
benchmark itself (bench/run.py skips modules whose name starts with ``_``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from aupguard_gateway.client import UpstreamClient

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:1")
_client = UpstreamClient(UPSTREAM, timeout=600.0)  # the gateway's client, made the same way
_HEADERS = (("x-api-key", "floor"), ("content-type", "application/json"), ("anthropic-version", "2023-06-01"))


async def _messages(scope: Scope, receive: Receive, send: Send) -> None:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    response = await _client.post("/v1/messages", _HEADERS, b"".join(chunks))
    try:
        down = [(n, v) for n, v in response.headers.items() if n in (b"content-type", b"request-id")]
        if response.headers.get(b"content-type", b"").startswith(b"text/event-stream"):  # relayed chunk by chunk
            await send({"type": "http.response.start", "status": response.status, "headers": down})
            async for chunk in response.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        content = await response.read()  # JSON: whole, with its length (as the gateway answers it)
        down.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": down})
        await send({"type": "http.response.body", "body": content})
    finally:
        response.close()


class _Endpoint:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _messages(scope, receive, send)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    await _client.aclose()


app = Starlette(routes=[Route("/v1/messages", _Endpoint(), methods=["POST"])], lifespan=_lifespan)

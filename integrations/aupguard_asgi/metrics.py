"""The Prometheus endpoint for ASGI apps: ``app.mount("/metrics", metrics_app(guard))``."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from aupguard import Safeguards
from aupguard.metrics import CONTENT_TYPE

__all__ = ["metrics_app"]


def metrics_app(guard: Safeguards) -> ASGIApp:
    """A tiny ASGI app answering GET with the engine's metrics (405 for other methods).
    Mount it where only your scraper can reach it: it is not behind the safeguards."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            await send({"type": "http.response.start", "status": 405, "headers": [(b"allow", b"GET, HEAD")]})
            await send({"type": "http.response.body", "body": b""})
            return
        body = guard.metrics.render().encode()
        headers = [(b"content-type", CONTENT_TYPE.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    return app

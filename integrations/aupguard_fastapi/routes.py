"""Wiring a FastAPI app: :func:`install` (refusals in Anthropic's error shape, headers on
every answer) and the startup checks that find routes no guard protects.

A guard dependency protects only the routes that declare it (on the route, or on the
``APIRouter`` / app's ``dependencies=``). A route that forgets it is not guarded, and
neither is another method on the same path, a mounted sub-app or a websocket:
:func:`unguarded_routes` lists every one of them under a prefix, and :func:`assert_guarded`
stops the app at startup while there are any.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import Host, Mount, Route, WebSocketRoute

from .dependency import GUARD_MARK, HEADERS_KEY, SafeguardsRefusal

__all__ = ["assert_guarded", "install", "unguarded_routes"]

Scope = MutableMapping[str, Any]
_INSTALLED = "aupguard_fastapi_installed"


def install(app: FastAPI) -> None:
    """Answer :class:`SafeguardsRefusal` in Anthropic's error shape (with ``Retry-After`` and
    the rate-limit headers), and add an allowed call's headers to whatever the endpoint
    returns, a ``StreamingResponse`` too (FastAPI merges a dependency's headers only into
    responses it builds itself). Call it once, before the app starts."""
    if getattr(app.state, _INSTALLED, False):
        return
    setattr(app.state, _INSTALLED, True)

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SafeguardsRefusal)
        return JSONResponse(exc.decision.error_body(), exc.status_code, headers=exc.headers)

    app.add_exception_handler(SafeguardsRefusal, refused)
    app.add_middleware(_DecisionHeaders)


class _DecisionHeaders:
    """Pure ASGI: a place in the scope for the guard dependency's headers, added to the
    response's start (nothing is buffered)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        waiting: dict[str, str] = {}
        scope[HEADERS_KEY] = waiting

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start" and waiting:
                ours = {name.lower().encode("latin-1") for name in waiting}
                kept = [(n, v) for n, v in message.get("headers", ()) if n.lower() not in ours]
                added = [(k.lower().encode("latin-1"), v.encode("latin-1", "replace")) for k, v in waiting.items()]
                message = {**message, "headers": [*kept, *added]}
            await send(message)

        await self.app(scope, receive, with_headers)


def _guarded(route: APIRoute | APIWebSocketRoute) -> bool:
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        if getattr(dependant.call, GUARD_MARK, False):
            return True
        stack.extend(dependant.dependencies)
    return False


def _may_serve_under(route: object, path: str, prefix: str) -> bool:
    """Whether ``route`` can answer a path under ``prefix``: its path is under it, or it is a
    mount above it (``/api`` serves ``/api/v1/...``), or a parameter in its path can match what
    follows the literal part (``/{path:path}``, ``/v1/{name}``)."""
    if path.startswith(prefix) or (path + "/").startswith(prefix):
        return True
    literal = path.split("{", 1)[0]
    if isinstance(route, Mount) and "{" not in path:
        return prefix.startswith(path.rstrip("/") + "/") or not path.strip("/")
    return "{" in path and (prefix.startswith(literal) or literal.startswith(prefix))


def unguarded_routes(app: FastAPI, prefix: str = "/") -> list[str]:
    """``"METHOD /path"`` for every route that can answer a path under ``prefix`` and that no
    guard dependency protects: each method of a route without one (a catch-all such as
    ``/{path:path}`` too), a mounted app above or under the prefix (``"MOUNT /path"``: it
    cannot be checked from here; guard it with its own middleware), a host route
    (``"HOST name"``), a websocket (``"WEBSOCKET /path"``)."""
    found: list[str] = []
    for route in app.routes:
        if isinstance(route, Host):  # serves every path of its host: never checked from here
            found.append(f"HOST {route.host}")
            continue
        path = str(getattr(route, "path", ""))
        if not _may_serve_under(route, path, prefix):
            continue
        if isinstance(route, Mount):
            found.append(f"MOUNT {path}")
        elif isinstance(route, APIRoute):
            if not _guarded(route):
                found += [f"{method} {path}" for method in sorted(route.methods or ())]
        elif isinstance(route, APIWebSocketRoute | WebSocketRoute):
            if not isinstance(route, APIWebSocketRoute) or not _guarded(route):
                found.append(f"WEBSOCKET {path}")
        elif isinstance(route, Route):  # a plain Starlette route: no dependencies at all
            found += [f"{method} {path}" for method in sorted(route.methods or ())]
        else:
            found.append(f"ROUTE {path}")
    return found


def assert_guarded(app: FastAPI, prefix: str = "/", *, allow: Iterable[str] = ()) -> None:
    """Raise at startup while a route under ``prefix`` is unguarded (``allow``: the
    ``"METHOD /path"`` entries that are meant to be open, a health check)."""
    left = [entry for entry in unguarded_routes(app, prefix) if entry not in set(allow)]
    if left:
        raise RuntimeError("routes under " + json.dumps(prefix) + " without a guard: " + ", ".join(left))
    if not getattr(app.state, _INSTALLED, False):
        raise RuntimeError("call aupguard_fastapi.install(app): refusals would not have Anthropic's error shape")

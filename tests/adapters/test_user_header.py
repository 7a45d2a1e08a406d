"""A trusted ``user_header`` sent twice (or joined into one value with a comma, as proxies and
WSGI servers join repeated headers) is a 400, never one of the values: behind a proxy that
appends its own value, the first one is the client's. Through real servers."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from werkzeug.serving import make_server

from aupguard import Safeguards
from aupguard.engine.context import current_guarded
from aupguard_asgi import SafeguardsMiddleware
from aupguard_flask import FlaskSafeguards
from tests.conftest import MakeGuard
from tests.support.gateway import serving

BODY = b'{"prompt": "hello"}'


def starlette_app(guard: Safeguards) -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        guarded = current_guarded()
        return JSONResponse({"user_hash": guarded.user_hash if guarded else None})

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"])])
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user")
    return app


def flask_app(guard: Safeguards) -> Flask:
    app = Flask("header")
    FlaskSafeguards(app, safeguards=guard, user_header="X-User")

    @app.post("/v1/chat")
    def chat() -> dict[str, Any]:
        guarded = current_guarded()
        return {"user_hash": guarded.user_hash if guarded else None}

    return app


@pytest.fixture
def asgi_url(make_guard: MakeGuard) -> Iterator[tuple[str, Safeguards]]:
    guard = make_guard({})
    with serving(starlette_app(guard)) as url:
        yield url, guard


@pytest.fixture
def wsgi_url(make_guard: MakeGuard) -> Iterator[tuple[str, Safeguards]]:
    guard = make_guard({})
    server = make_server("127.0.0.1", 0, flask_app(guard), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", guard
    finally:
        server.shutdown()
        thread.join(10)


def raw_request(url: str, user_headers: list[bytes]) -> tuple[int, dict[str, str], bytes]:
    """POST with the given ``x-user`` header lines, exactly as written, on one connection."""
    host, port = url.removeprefix("http://").split(":")
    lines = [b"POST /v1/chat HTTP/1.1", b"host: " + host.encode(), b"content-type: application/json",
             b"content-length: " + str(len(BODY)).encode(), b"connection: close",
             *(b"x-user: " + value for value in user_headers)]  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + BODY)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *fields = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
    return int(status.split(" ")[1]), headers, body


@pytest.mark.parametrize("server", ["asgi_url", "wsgi_url"])
@pytest.mark.parametrize("values", [[b"alice", b"mallory"], [b"mallory", b"alice"], [b"alice,mallory"]])
def test_two_user_ids_are_refused_with_400_and_recorded(
    request: pytest.FixtureRequest, server: str, values: list[bytes]
) -> None:
    url, guard = request.getfixturevalue(server)
    status, headers, body = raw_request(url, values)
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"
    (record,) = guard.audit.find(request_id=headers["aupguard-request-id"])
    assert record.user_hash is None and (record.outcome, record.status) == ("invalid_request_error", 400)
    assert guard.audit.find(user_id="alice") == [] and guard.audit.find(user_id="mallory") == []


@pytest.mark.parametrize("server", ["asgi_url", "wsgi_url"])
def test_one_user_id_is_taken(request: pytest.FixtureRequest, server: str) -> None:
    url, guard = request.getfixturevalue(server)
    status, _, body = raw_request(url, [b"alice"])
    assert status == 200 and guard.hash_user("alice").encode() in body

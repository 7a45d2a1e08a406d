"""Mounted apps stay guarded: ``routes`` is matched against the path within the app (Starlette's
route path, Flask's ``PATH_INFO``), however the app is mounted or served, and whatever
spelling of the path reaches the same handler."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import anthropic
import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from aupguard import Safeguards
from aupguard.adapters.routes import RouteSet, route_path
from aupguard.engine.context import current_guarded
from aupguard.gateway import GatewayKeys
from aupguard.testing import MessagesDouble
from aupguard_asgi import SafeguardsMiddleware
from aupguard_flask import FlaskSafeguards
from aupguard_gateway import build_gateway
from tests.conftest import MakeGuard
from tests.support.gateway import UPSTREAM_KEY, serving

RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]
POLICY = {"moderation": {"rules": RULES}, "limits": {"default": "3/minute"}}
HELLO = {"messages": [{"role": "user", "content": "hello"}]}
FLAGGED = {"messages": [{"role": "user", "content": "steps of nerve agent synthesis"}]}


def inner_app(guard: Safeguards) -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        guarded = current_guarded()
        return JSONResponse({"guarded": guarded is not None, "body": await request.json()})

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST", "GET"]),
                            Route("/v1/chat/", chat, methods=["POST"])])  # fmt: skip
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user", routes=["/v1/chat"])
    return app


@pytest.fixture
def guard(make_guard: MakeGuard) -> Safeguards:
    return make_guard(POLICY)


def assert_fully_guarded(post: Any, guard: Safeguards, path: str) -> None:
    """Account gate, moderation, limit and audit record, all on ``path``."""
    assert post(path, HELLO, None).status_code == 401
    assert post(path, FLAGGED, "alice").status_code == 403
    allowed = post(path, HELLO, "alice")
    assert allowed.status_code == 200 and allowed.json()["guarded"] is True
    assert post(path, HELLO, "alice").status_code == 200
    assert post(path, HELLO, "alice").status_code == 429  # 3/minute: the flagged call counted too
    guard.audit.flush()
    records = guard.audit.find(user_id="alice")
    assert {r.surface for r in records} == {"/v1/chat"}  # the route path: the mount point is not in it
    assert sorted(r.outcome for r in records) == ["allowed", "allowed", "content_flagged", "rate_limited"]


def test_an_app_mounted_under_a_prefix_stays_guarded(guard: Safeguards) -> None:
    outer = Starlette(routes=[Mount("/api", app=inner_app(guard))])
    with TestClient(outer) as client:

        def post(path: str, body: Any, user: str | None) -> httpx.Response:
            return client.post(path, json=body, headers={"x-user": user} if user else {})

        assert_fully_guarded(post, guard, "/api/v1/chat")


@pytest.fixture
def root_path_server(guard: Safeguards) -> Iterator[str]:
    with serving(inner_app(guard), root_path="/api") as url:  # uvicorn --root-path /api
        yield url


def raw_post(url: str, path: str, body: Any, user: str | None, method: str = "POST") -> httpx.Response:
    """A request whose path goes on the wire exactly as written (no client normalising it)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        data = json.dumps(body).encode()
        headers = {"content-type": "application/json", **({"x-user": user} if user else {})}
        connection.request(method, path, body=data if method != "GET" else None, headers=headers)
        response = connection.getresponse()
        return httpx.Response(response.status, content=response.read(), headers=response.getheaders())
    finally:
        connection.close()


def test_an_app_served_with_root_path_stays_guarded(root_path_server: str, guard: Safeguards) -> None:
    def post(path: str, body: Any, user: str | None) -> httpx.Response:
        return raw_post(root_path_server, path, body, user)

    assert_fully_guarded(post, guard, "/v1/chat")  # the proxy in front stripped /api


@pytest.mark.parametrize("path", ["/v1/chat/", "//v1//chat", "/v1/%63hat", "/v1%2Fchat", "/V1/Chat"])
def test_other_spellings_of_a_guarded_path_are_guarded(root_path_server: str, path: str) -> None:
    response = raw_post(root_path_server, path, HELLO, None)
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_required"


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_other_methods_on_a_guarded_route_are_guarded(root_path_server: str, method: str) -> None:
    assert raw_post(root_path_server, "/v1/chat", HELLO, None, method=method).status_code == 401


def test_route_path_is_starlettes() -> None:
    from starlette._utils import get_route_path

    for path, root in [("/api/v1/x", "/api"), ("/api", "/api"), ("/apix/v1", "/api"), ("/v1", ""),
                       ("/other", "/api"), ("/api/", "/api")]:  # fmt: skip
        assert route_path(path, root) == (get_route_path({"path": path, "root_path": root}) or "/")
    routes = RouteSet(["/v1/chat", "/admin/*"])
    assert routes.matches("/v1/chat/") and routes.matches("/admin") and routes.matches("/ADMIN/x")
    assert not routes.matches("/v1/chatter") and not routes.matches("/administrator")


# -- the gateway, mounted ------------------------------------------------------------------------


@pytest.fixture
def gateway_parts(make_guard: MakeGuard, messages_double: MessagesDouble) -> tuple[Safeguards, str, Starlette]:
    guard = make_guard({})
    key = GatewayKeys(guard).create("alice").key
    return guard, key, build_gateway(guard, upstream=messages_double.url, upstream_key=UPSTREAM_KEY)


def ask_through(base_url: str, key: str, guard: Safeguards, double: MessagesDouble) -> None:
    client = anthropic.Anthropic(api_key=key, base_url=base_url, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "Capital of France?"}]
    )
    assert raw.parse().content[0].text == "echo: Capital of France?"  # type: ignore[union-attr]
    (sent,) = double.requests_to("/v1/messages")
    assert sent.body["metadata"]["user_id"] == guard.hash_user("alice")
    guard.audit.flush()
    (record,) = guard.audit.find(request_id=raw.headers["aupguard-request-id"])
    assert (record.surface, record.outcome) == ("/v1/messages", "allowed")
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(api_key="agk_wrong", base_url=base_url, max_retries=0).messages.create(
            model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "Hi"}]
        )


def test_the_gateway_mounted_under_a_prefix_works(
    gateway_parts: tuple[Safeguards, str, Starlette], messages_double: MessagesDouble
) -> None:
    guard, key, gateway = gateway_parts
    with serving(Starlette(routes=[Mount("/llm", app=gateway)])) as url:
        ask_through(url + "/llm", key, guard, messages_double)


def test_the_gateway_served_with_root_path_works(
    gateway_parts: tuple[Safeguards, str, Starlette], messages_double: MessagesDouble
) -> None:
    guard, key, gateway = gateway_parts
    with serving(gateway, root_path="/llm") as url:  # the proxy strips /llm before the gateway
        ask_through(url, key, guard, messages_double)


# -- Flask under a mount point -------------------------------------------------------------------


def test_a_flask_app_under_a_mount_point_stays_guarded(guard: Safeguards) -> None:
    app = Flask("mounted")
    FlaskSafeguards(app, safeguards=guard, user_header="X-User", routes=["/v1/*"])

    @app.post("/v1/chat")
    def chat() -> dict[str, bool]:
        return {"guarded": current_guarded() is not None}

    client = Client(DispatcherMiddleware(Flask("front"), {"/api": app}))  # SCRIPT_NAME=/api, PATH_INFO=/v1/chat

    def post(path: str, body: Any, user: str | None) -> httpx.Response:
        answer = client.post(path, json=body, headers={"X-User": user} if user else {})
        return httpx.Response(answer.status_code, content=answer.get_data())

    assert_fully_guarded(post, guard, "/api/v1/chat")

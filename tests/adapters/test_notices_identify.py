"""An app whose ``identify`` answers a bad token with its framework's HTTP exception gets that
status on the notices route too, as on its guarded routes: an expired or garbage token is a
4xx in Anthropic's shape, never a 500 (before the fix, the notices route answered 500
``api_error`` and logged an error per request; found by an attacker's review)."""

from __future__ import annotations

from typing import Any

import flask
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.exceptions import Unauthorized

from aupguard_asgi import SafeguardsMiddleware
from aupguard_flask import FlaskSafeguards
from tests.conftest import MakeGuard

ROUTE = "/me/safety"


def asgi_identify(request: Request) -> str | None:
    token = request.headers.get("authorization")
    if token != "Bearer good":
        raise HTTPException(401, "Invalid or expired token.")
    return "alice"


def test_asgi_notices_answer_the_apps_401_not_a_500(make_guard: MakeGuard) -> None:
    guard = make_guard()

    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"])],
                    middleware=[Middleware(SafeguardsMiddleware, safeguards=guard, identify=asgi_identify,
                                           notices_route=ROUTE)])  # fmt: skip
    client = TestClient(app, raise_server_exceptions=False)
    guarded = client.post("/v1/chat", json={"prompt": "hi"}, headers={"authorization": "Bearer expired"})
    assert guarded.status_code == 401  # the guarded route honours the app's answer
    notices = client.get(ROUTE, headers={"authorization": "Bearer expired"})
    appeal = client.post(ROUTE + "/appeals", json={"strike_id": "x", "text": "t"},
                         headers={"authorization": "Bearer expired"})  # fmt: skip
    assert (notices.status_code, appeal.status_code) == (401, 401), (notices.status_code, notices.json())


def test_flask_notices_answer_the_apps_401_not_a_500(make_guard: MakeGuard) -> None:
    guard = make_guard()
    app = flask.Flask(__name__)

    @app.post("/v1/chat")
    def chat() -> Any:
        return {"ok": True}

    def identify() -> str | None:
        if flask.request.headers.get("authorization") != "Bearer good":
            raise Unauthorized("Invalid or expired token.")
        return "alice"

    FlaskSafeguards(app, safeguards=guard, identify=identify, notices_route=ROUTE)
    client = app.test_client()
    guarded = client.post("/v1/chat", json={"prompt": "hi"}, headers={"authorization": "Bearer expired"})
    assert guarded.status_code == 401
    notices = client.get(ROUTE, headers={"authorization": "Bearer expired"})
    assert notices.status_code == 401, (notices.status_code, notices.get_json())

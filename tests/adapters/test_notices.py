"""The end user's notices route (``notices_route``) in the ASGI middleware and the Flask
extension: GET their own standing, POST an appeal; 401 without a user; strict, bounded
bodies; another user's strike reads as unknown; a suspended user can still appeal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from aupguard import Safeguards
from aupguard_asgi import SafeguardsMiddleware
from aupguard_flask import FlaskSafeguards
from tests.conftest import MakeGuard

POLICY = {"ladder": {"warn": 1, "throttle": 1, "suspend": 1}, "review": {"appeals": "5/day"}}
ROUTE = "/me/safety"
Call = Callable[..., Any]  # (method, path, user, body bytes or JSON) -> (status, JSON, headers)


def asgi_client(guard: Safeguards) -> Call:
    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"])],
                    middleware=[Middleware(SafeguardsMiddleware, safeguards=guard, user_header="X-User",
                                           notices_route=ROUTE)])  # fmt: skip
    client = TestClient(app)

    def call(method: str, path: str, user: str | None, body: Any = None) -> tuple[int, Any, Any]:
        headers = {"X-User": user} if user else {}
        kwargs = {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
        r = client.request(method, path, headers=headers, **kwargs)
        return r.status_code, r.json(), r.headers

    return call


def flask_client(guard: Safeguards) -> Call:
    app = flask.Flask(__name__)

    @app.post("/v1/chat")
    def chat() -> Any:
        return {"ok": True}

    FlaskSafeguards(app, safeguards=guard, user_header="X-User", notices_route=ROUTE)
    client = app.test_client()

    def call(method: str, path: str, user: str | None, body: Any = None) -> tuple[int, Any, Any]:
        headers = {"X-User": user} if user else {}
        kwargs = {"data": body, "content_type": "application/json"} if isinstance(body, bytes) else \
            {"json": body} if body is not None else {}  # fmt: skip
        r = client.open(path, method=method, headers=headers, **kwargs)
        return r.status_code, r.get_json(), r.headers

    return call


@pytest.fixture(params=["asgi", "flask"])
def setup(request: pytest.FixtureRequest, make_guard: MakeGuard) -> tuple[Safeguards, Call]:
    guard = make_guard(POLICY)
    return guard, (asgi_client if request.param == "asgi" else flask_client)(guard)


def test_a_suspended_user_reads_why_appeals_and_sees_the_outcome(setup: tuple[Safeguards, Call]) -> None:
    guard, call = setup
    strike = guard.strike("u1", reason="flagged", category="weapons").strike
    assert call("POST", "/v1/chat", "u1", {"prompt": "hi"})[0] == 403  # suspended: the app is closed to them
    status, notices, headers = call("GET", ROUTE, "u1")
    assert status == 200 and notices["suspended"] and notices["strikes"][0]["category"] == "weapons"
    assert headers["cache-control"] == "no-store"
    status, filed, _ = call("POST", ROUTE + "/appeals", "u1", {"strike_id": strike.id, "text": "I was quoting"})
    assert status == 201 and filed["status"] == "open"
    guard.decide_appeal(filed["id"], upheld=True, reason="A quotation is fine.", actor="reviewer:ann")
    status, notices, _ = call("GET", ROUTE, "u1")
    assert not notices["suspended"] and notices["strikes"][0]["voided"]
    assert notices["appeals"][0] | {"at": None, "decided_at": None} == {
        "id": filed["id"], "at": None, "strike_id": strike.id, "request_id": None, "status": "upheld",
        "decided_at": None, "reason": "A quotation is fine."}  # fmt: skip
    assert call("POST", "/v1/chat", "u1", {"prompt": "hi"})[0] == 200


def test_no_user_no_notices_and_no_appeals(setup: tuple[Safeguards, Call]) -> None:
    _, call = setup
    for method, path, body in (("GET", ROUTE, None), ("POST", ROUTE + "/appeals", {"strike_id": "x", "text": "t"})):
        status, error, _ = call(method, path, None, body)
        assert status == 401 and error["error"]["type"] == "authentication_required"


def test_other_users_strikes_and_unknown_ids_read_alike(setup: tuple[Safeguards, Call]) -> None:
    guard, call = setup
    theirs = guard.strike("victim", reason="r").strike
    status, other, _ = call("POST", ROUTE + "/appeals", "attacker", {"strike_id": theirs.id, "text": "void"})
    status2, unknown, _ = call("POST", ROUTE + "/appeals", "attacker", {"strike_id": "nope", "text": "void"})
    assert status == status2 == 404 and other == unknown and other["error"]["type"] == "not_found_error"
    assert call("GET", ROUTE, "attacker")[1]["strikes"] == []


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b'{"strike_id": "s", "text": "a", "text": NaN}', 400, "JSON"),
        (b"[1, 2]", 400, "object"),
        (b"", 400, "empty"),
        (b'{"strike_id": "s", "text": "t", "admin": true}', 400, "unknown field"),
        (b'{"text": "t"}', 400, "strike"),
        (b'{"strike_id": 5, "text": "t"}', 400, "string"),
        (b'{"strike_id": "s", "text": "' + b"x" * 70_000 + b'"}', 413, "larger"),
    ],
)
def test_bodies_are_strict_and_bounded(setup: tuple[Safeguards, Call], body: bytes, status: int, words: str) -> None:
    _, call = setup
    got, error, _ = call("POST", ROUTE + "/appeals", "u1", body)
    assert got == status and error["type"] == "error" and words in error["error"]["message"]


def test_a_second_appeal_of_a_strike_is_a_conflict_and_the_wrong_method_is_405(setup: tuple[Safeguards, Call]) -> None:
    guard, call = setup
    strike = guard.strike("u1", reason="r").strike
    assert call("POST", ROUTE + "/appeals", "u1", {"strike_id": strike.id, "text": "one"})[0] == 201
    status, error, _ = call("POST", ROUTE + "/appeals", "u1", {"strike_id": strike.id, "text": "two"})
    assert status == 409 and error["error"]["type"] == "conflict_error"
    status, error, headers = call("POST", ROUTE, "u1", {"x": 1})
    assert status == 405 and headers["allow"] == "GET"

"""Before the fix (found by an attacker's review):
unguarded_routes misses a Host route and a Mount whose path has a parameter, though both
serve paths under the prefix (no guard runs for them)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Host, Route
from starlette.testclient import TestClient

from aupguard import Decision
from aupguard_fastapi import guard_dependency, install, unguarded_routes
from tests.conftest import MakeGuard

RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]
BAD = {"messages": [{"role": "user", "content": "nerve agent synthesis steps"}]}


def _user(request: Request) -> str:
    return "alice"


async def _open(request: Request) -> JSONResponse:
    return JSONResponse({"served_unguarded": (await request.json())})


def _app(make_guard: MakeGuard) -> FastAPI:
    guard = make_guard({"moderation": {"rules": RULES}})
    app = FastAPI()
    install(app)
    guarded = guard_dependency(guard, user=Depends(_user))

    @app.post("/v1/chat")
    async def chat(decision: Decision = Depends(guarded)) -> dict[str, Any]:  # noqa: B008
        return {"guarded": True}

    return app


def test_host_route_serving_v1_is_not_listed(make_guard: MakeGuard) -> None:
    app = _app(make_guard)
    legacy = Starlette(routes=[Route("/v1/chat", _open, methods=["POST"])])
    app.router.routes.insert(0, Host("api.example.com", app=legacy))
    client = TestClient(app, base_url="http://api.example.com")
    answer = client.post("/v1/chat", json=BAD)
    assert answer.status_code == 200 and "served_unguarded" in answer.json()  # the flagged prompt is served
    assert unguarded_routes(app, "/v1/") != [], "a Host route serves /v1/chat unguarded, yet nothing is listed"


def test_mount_with_a_path_parameter_is_not_listed(make_guard: MakeGuard) -> None:
    app = _app(make_guard)
    tenant = Starlette(routes=[Route("/chat", _open, methods=["POST"])])
    app.mount("/{tenant}", tenant)
    app.router.routes.insert(0, app.router.routes.pop())  # before /v1/chat
    client = TestClient(app)
    answer = client.post("/v1/chat", json=BAD)
    assert answer.status_code == 200 and "served_unguarded" in answer.json()
    assert unguarded_routes(app, "/v1/") != [], "Mount('/{tenant}') serves /v1/chat unguarded, yet nothing is listed"

"""``unguarded_routes`` / ``assert_guarded`` list every route that can answer a path under the
prefix: one whose template does not start with the prefix but whose path parameters match
paths under it (a catch-all proxy route, ``/{version}/chat``), and a mount at a path above the
prefix (``app.mount("/api", legacy)`` with prefix ``/api/v1/``). Before the fix both passed
unlisted (found by an attacker's review)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import Depends, FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from aupguard import Decision
from aupguard_fastapi import assert_guarded, guard_dependency, install, unguarded_routes
from tests.conftest import MakeGuard

RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]
BAD = {"messages": [{"role": "user", "content": "nerve agent synthesis steps"}]}


def _user(request: Request) -> str:
    return "alice"


def test_a_catch_all_route_serving_v1_paths_is_listed(make_guard: MakeGuard) -> None:
    guard = make_guard({"moderation": {"rules": RULES}})
    app = FastAPI()
    install(app)
    guarded = guard_dependency(guard, user=Depends(_user))

    @app.post("/v1/chat")
    async def chat(decision: Decision = Depends(guarded)) -> dict[str, Any]:  # noqa: B008
        return {"guarded": True}

    @app.api_route("/{path:path}", methods=["GET", "POST"])  # a pass-through proxy / fallback
    async def passthrough(path: str, request: Request) -> dict[str, Any]:
        return {"unguarded": path, "got": (await request.body()).decode()}

    client = TestClient(app)
    assert client.post("/v1/chat", json=BAD).status_code == 403  # the guarded route refuses it
    leaked = client.request("GET", "/v1/chat", json=BAD)  # another method on the same path
    assert leaked.status_code == 200 and "nerve agent" in leaked.json()["got"]  # reached, unscreened
    # ... and the startup check that promises to find "another method on the same path" is silent:
    assert unguarded_routes(app, "/v1/") != [], "GET /v1/chat reaches an unguarded handler"


def test_a_mount_covering_the_prefix_is_listed(make_guard: MakeGuard) -> None:
    guard = make_guard({"moderation": {"rules": RULES}})
    app = FastAPI()
    install(app)
    guarded = guard_dependency(guard, user=Depends(_user))

    @app.post("/api/v1/chat")
    async def chat(decision: Decision = Depends(guarded)) -> dict[str, Any]:  # noqa: B008
        return {"guarded": True}

    async def legacy(request: Request) -> JSONResponse:
        return JSONResponse({"legacy": (await request.body()).decode()})

    app.mount("/api", Starlette(routes=[Route("/v1/complete", legacy, methods=["POST"])]))
    client = TestClient(app)
    assert client.post("/api/v1/complete", json=BAD).status_code == 200  # unguarded, under /api/v1/
    with pytest.raises(RuntimeError):
        assert_guarded(app, "/api/v1/")

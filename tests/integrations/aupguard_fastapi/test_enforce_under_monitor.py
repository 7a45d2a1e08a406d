"""Before the fix (found by an attacker's review):
a route whose guard dependency says enforcement="enforce", inside an app whose
SafeguardsMiddleware monitors (a gradual rollout): the dependency reuses the middleware's
decision (dependency.py _decide, 'guarded by SafeguardsMiddleware already'), which was made in
monitor mode, so a flagged prompt is served on the enforcing route."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from starlette.testclient import TestClient

from aupguard import Decision
from aupguard_asgi import SafeguardsMiddleware
from aupguard_fastapi import guard_dependency, install
from tests.conftest import MakeGuard

RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]
FLAGGED = {"prompt": "explain nerve agent synthesis"}


def _user(request: Request) -> str:
    return "alice"


def test_enforcing_dependency_under_monitoring_middleware(make_guard: MakeGuard) -> None:
    guard = make_guard({"moderation": {"rules": RULES}})
    app = FastAPI()
    install(app)
    enforcing = guard_dependency(guard, user=Depends(_user), enforcement="enforce")

    @app.post("/v1/chat")
    async def chat(decision: Decision = Depends(enforcing)) -> dict[str, Any]:  # noqa: B008
        return {"served": True, "monitor": decision.monitor}

    app.add_middleware(SafeguardsMiddleware, safeguards=guard, identify=lambda r: "alice", enforcement="monitor")
    answer = TestClient(app).post("/v1/chat", json=FLAGGED)
    assert answer.status_code == 403, f"enforce route served a flagged prompt: {answer.status_code} {answer.text}"

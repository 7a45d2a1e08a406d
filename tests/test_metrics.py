"""The Prometheus endpoint: decisions by outcome, moderation latency, queue depth and store
figures, on ASGI and Flask; never a user id or prompt text."""

from __future__ import annotations

import re

from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from aupguard import Safeguards
from aupguard_asgi import SafeguardsMiddleware, metrics_app
from aupguard_flask import FlaskSafeguards, metrics_view
from tests.conftest import MakeGuard
from tests.support.servers import RedisServer

RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]
POLICY = {"moderation": {"rules": RULES}, "limits": {"default": "3/minute"}}


def _value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{series} missing from:\n{text}"
    return float(match.group(1))


def _asgi(guard: Safeguards) -> TestClient:
    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/chat", chat, methods=["POST"]), Mount("/metrics", metrics_app(guard))])
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="X-User", routes=["/chat"])
    return TestClient(app)


def test_asgi_endpoint_counts_outcomes_and_times_moderators(make_guard: MakeGuard) -> None:
    guard = make_guard(POLICY)
    client = _asgi(guard)
    send = lambda user, prompt: client.post("/chat", headers={"X-User": user}, json={"prompt": prompt})  # noqa: E731
    assert send("alice-raw-id", "hello").status_code == 200
    assert send("alice-raw-id", "the nerve agent synthesis route").status_code == 403
    assert send("alice-raw-id", "hi").status_code == 200
    assert send("alice-raw-id", "hi").status_code == 429
    scraped = client.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = scraped.text
    assert _value(text, 'aupguard_decisions_total{outcome="allowed"}') == 2
    assert _value(text, 'aupguard_decisions_total{outcome="content_flagged"}') == 1
    assert _value(text, 'aupguard_decisions_total{outcome="rate_limited"}') == 1
    assert _value(text, 'aupguard_moderation_seconds_count{moderator="rules",result="ok"}') == 3
    assert 'aupguard_moderation_seconds_bucket{moderator="rules",result="ok",le="+Inf"} 3' in text
    assert _value(text, "aupguard_audit_queue_depth") >= 0
    assert _value(text, "aupguard_unavailable_total") == 0
    assert "alice-raw-id" not in text and "nerve" not in text and guard.hash_user("alice-raw-id") not in text
    assert client.post("/metrics").status_code == 405


def test_flask_view_serves_the_same_figures(make_guard: MakeGuard) -> None:
    guard = make_guard(POLICY)
    app = Flask(__name__)
    ext = FlaskSafeguards(app, safeguards=guard, user_header="X-User", routes=["/chat"])
    app.add_url_rule("/chat", view_func=lambda: {"ok": True}, methods=["POST"])
    app.add_url_rule("/metrics", view_func=ext.exempt(metrics_view(guard)))
    client = app.test_client()
    assert client.post("/chat", headers={"X-User": "bob"}, json={"prompt": "hello"}).status_code == 200
    assert client.post("/chat", json={"prompt": "hello"}).status_code == 401
    text = client.get("/metrics").get_data(as_text=True)
    assert _value(text, 'aupguard_decisions_total{outcome="allowed"}') == 1
    assert _value(text, 'aupguard_decisions_total{outcome="authentication_required"}') == 1


def test_counter_store_figures_follow_a_redis_outage(make_guard: MakeGuard, own_redis: RedisServer) -> None:
    guard = make_guard({"storage": {"counters": own_redis.url}})
    guard.check("u")
    assert _value(guard.metrics.render(), "aupguard_counter_store_up") == 1
    own_redis.kill()
    guard.check("u")
    text = guard.metrics.render()
    assert _value(text, "aupguard_counter_store_up") == 0
    assert _value(text, "aupguard_counter_store_errors_total") >= 1

"""A caller without an account (``[identity] require_account = false``) is no user: no user
hash, no strikes, no ``metadata.user_id``; anonymous callers are limited per client key (the
client address by default, or the adapters' ``anonymous_key``), not all in one bucket."""

from __future__ import annotations

import asyncio

from flask import Flask, jsonify
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from aupguard_asgi import SafeguardsMiddleware
from aupguard_flask import FlaskSafeguards
from tests.conftest import MakeGuard

OPEN = {"identity": {"require_account": False}, "limits": {"default": "2/minute"}}
FLAGGING = {
    **OPEN,
    "moderation": {"rules": [{"category": "bad", "keywords": ["forbidden"], "action": "block"}]},
}


def test_an_anonymous_decision_has_no_user_hash_and_its_record_none(make_guard: MakeGuard) -> None:
    guard = make_guard(OPEN)
    decision = guard.check(None, client_key="203.0.113.7")
    assert decision.allowed and decision.user_hash is None
    guard.audit.flush()
    (record,) = guard.audit.find(request_id=decision.request_id)
    assert record.user_hash is None
    assert "203.0.113.7" not in repr(record)  # the client key is hashed, never stored as sent


def test_anonymous_callers_are_limited_per_client_key(make_guard: MakeGuard) -> None:
    guard = make_guard(OPEN)
    first = [guard.check(None, client_key="198.51.100.1").status for _ in range(3)]
    other = [guard.check(None, client_key="198.51.100.2").status for _ in range(2)]
    assert first == [200, 200, 429]
    assert other == [200, 200]  # another address has its own window


def test_without_a_client_key_anonymous_calls_share_one_bucket(make_guard: MakeGuard) -> None:
    guard = make_guard(OPEN)
    assert [guard.check(None).status for _ in range(3)] == [200, 200, 429]


def test_an_anonymous_key_never_shares_a_window_with_a_user_of_the_same_name(make_guard: MakeGuard) -> None:
    guard = make_guard(OPEN)
    assert [guard.check("198.51.100.9").status for _ in range(2)] == [200, 200]
    assert guard.check(None, client_key="198.51.100.9").status == 200


def test_sync_and_async_count_an_anonymous_caller_alike(make_guard: MakeGuard) -> None:
    guard = make_guard(OPEN)
    assert guard.check(None, client_key="k").allowed
    assert asyncio.run(guard.acheck(None, client_key="k")).allowed
    assert asyncio.run(guard.acheck(None, client_key="k")).status == 429


def test_an_anonymous_token_budget_is_its_own(make_guard: MakeGuard) -> None:
    guard = make_guard({**OPEN, "limits": {"default": "100/minute", "tokens": "100/hour"}})
    spender = guard.check(None, client_key="spender")
    guard.spend_tokens(spender, 500)
    assert guard.check(None, client_key="spender").error == "rate_limited"
    assert guard.check(None, client_key="saver").allowed


def test_a_flagged_anonymous_prompt_is_refused_and_strikes_no_one(make_guard: MakeGuard) -> None:
    guard = make_guard(FLAGGING)
    refused = guard.check(None, client_key="k", prompt="something forbidden")
    assert refused.error == "content_flagged"
    guard.audit.flush()
    assert guard.store.count_decisions() == 1
    assert guard.check(None, client_key="k").allowed  # no ladder for a caller that is no one


def _starlette(guard: object, **options: object) -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/chat", chat, methods=["POST"])])
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, **options)
    return app


def test_the_asgi_middleware_limits_anonymous_callers_by_client_address(make_guard: MakeGuard) -> None:
    app = _starlette(make_guard(OPEN))
    one = TestClient(app, client=("198.51.100.1", 1000))
    two = TestClient(app, client=("198.51.100.2", 1000))
    assert [one.post("/chat", json={"prompt": "hi"}).status_code for _ in range(3)] == [200, 200, 429]
    assert two.post("/chat", json={"prompt": "hi"}).status_code == 200


def test_the_asgi_middleware_takes_an_anonymous_key(make_guard: MakeGuard) -> None:
    app = _starlette(make_guard(OPEN), anonymous_key=lambda request: request.headers.get("x-device"))
    client = TestClient(app)
    statuses = [client.post("/chat", json={"prompt": "hi"}, headers={"x-device": "a"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert client.post("/chat", json={"prompt": "hi"}, headers={"x-device": "b"}).status_code == 200


def test_the_flask_extension_limits_anonymous_callers_by_remote_address(make_guard: MakeGuard) -> None:
    app = Flask(__name__)

    @app.post("/chat")
    def chat() -> object:
        return jsonify(ok=True)

    FlaskSafeguards(app, safeguards=make_guard(OPEN))
    client = app.test_client()

    def post(address: str) -> int:
        return client.post("/chat", json={"prompt": "hi"}, environ_base={"REMOTE_ADDR": address}).status_code

    assert [post("198.51.100.1") for _ in range(3)] == [200, 200, 429]
    assert post("198.51.100.2") == 200


def test_the_flask_extension_takes_an_anonymous_key(make_guard: MakeGuard) -> None:
    from flask import request

    app = Flask(__name__)

    @app.post("/chat")
    def chat() -> object:
        return jsonify(ok=True)

    FlaskSafeguards(app, safeguards=make_guard(OPEN), anonymous_key=lambda: request.headers.get("x-device"))
    client = app.test_client()
    statuses = [client.post("/chat", json={"prompt": "hi"}, headers={"x-device": "a"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert client.post("/chat", json={"prompt": "hi"}, headers={"x-device": "b"}).status_code == 200


def test_one_ipv6_host_rotating_addresses_in_its_64_is_one_caller(make_guard: MakeGuard) -> None:
    """One IPv6 host is commonly given a /64 and may pick a new address per connection: the
    default client key is the /64 (found by an attacker's review: six addresses got six windows)."""
    app = _starlette(make_guard(OPEN))
    statuses = [
        TestClient(app, client=(f"2001:db8:1:2::{n:x}", 50000)).post("/chat", json={"prompt": "hi"}).status_code
        for n in range(1, 5)
    ]
    assert statuses == [200, 200, 429, 429]
    other = TestClient(app, client=("2001:db8:1:3::1", 50000))  # another /64: another caller
    assert other.post("/chat", json={"prompt": "hi"}).status_code == 200


def test_the_default_client_key_folds_mapped_ipv4_and_zones() -> None:
    from aupguard.adapters.client_keys import client_key_of

    assert client_key_of("::ffff:203.0.113.7") == client_key_of("203.0.113.7") == "203.0.113.7"
    assert client_key_of("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert client_key_of("fe80::1%eth0") == client_key_of("fe80::2%eth1") == "fe80::/64"
    assert client_key_of("testclient") == "testclient" and client_key_of(None) is None and client_key_of("") is None

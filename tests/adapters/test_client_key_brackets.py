"""Before the fix (found by an attacker's review):
client_key_of groups an IPv6 address by its /64, but not the bracketed form (with or
without a port) that some proxies put in X-Forwarded-For / Forwarded and that werkzeug's
ProxyFix passes on as remote_addr: each address of one /64 is then a key of its own."""

from __future__ import annotations

import flask
from werkzeug.middleware.proxy_fix import ProxyFix

from aupguard.adapters.client_keys import client_key_of
from aupguard_flask import FlaskSafeguards
from tests.conftest import MakeGuard


def test_bracketed_ipv6_is_grouped_by_its_64() -> None:
    assert client_key_of("2001:db8::1") == client_key_of("2001:db8::2")
    assert client_key_of("[2001:db8::1]") == client_key_of("[2001:db8::2]"), (
        client_key_of("[2001:db8::1]"),
        client_key_of("[2001:db8::2]"),
    )


def test_bracketed_ipv6_with_port_is_grouped_by_its_64() -> None:
    assert client_key_of("[2001:db8::1]:4711") == client_key_of("[2001:db8::2]:4711")


def test_flask_behind_proxyfix_one_64_escapes_the_limit(make_guard: MakeGuard) -> None:
    guard = make_guard({"identity": {"require_account": False}, "limits": {"default": "2/minute"}})
    app = flask.Flask(__name__)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    FlaskSafeguards(app, safeguards=guard, routes=["/v1/*"])

    @app.post("/v1/chat")
    def chat() -> dict[str, bool]:
        return {"ok": True}

    client = app.test_client()
    codes = [
        client.post("/v1/chat", json={"prompt": "hi"}, headers={"X-Forwarded-For": f"[2001:db8::{i:x}]"}).status_code
        for i in range(1, 6)
    ]
    assert 429 in codes, f"five addresses of one /64, limit 2/minute: {codes}"


def test_control_unbracketed_one_64_is_limited(make_guard: MakeGuard) -> None:
    guard = make_guard({"identity": {"require_account": False}, "limits": {"default": "2/minute"}})
    app = flask.Flask(__name__)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    FlaskSafeguards(app, safeguards=guard, routes=["/v1/*"])

    @app.post("/v1/chat")
    def chat() -> dict[str, bool]:
        return {"ok": True}

    client = app.test_client()
    codes = [client.post("/v1/chat", json={"prompt": "hi"},
                         headers={"X-Forwarded-For": f"2001:db8::{i:x}"}).status_code for i in range(1, 6)]  # fmt: skip
    assert 429 in codes, codes

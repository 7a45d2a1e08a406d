"""FlaskSafeguards with the Flask test client and behind a real werkzeug server."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response, jsonify, request, stream_with_context
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from aupguard import Safeguards
from aupguard.engine.context import current_guarded
from aupguard_flask import FlaskSafeguards, SafeguardsRefusal
from tests.conftest import MakeGuard

RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]
POLICY = {"terms": {"version": "v1", "url": "https://example.com/aup"}, "moderation": {"rules": RULES},
          "limits": {"default": "5/minute"}}  # fmt: skip


def build_app(guard: Safeguards, release: threading.Event | None = None, **options: Any) -> Flask:
    app = Flask(__name__)
    ext = FlaskSafeguards(safeguards=guard, **{"user_header": "X-User", "routes": ["/v1/*"], **options})

    @app.post("/v1/chat")
    def chat() -> Any:
        guarded = current_guarded()
        assert guarded is not None
        return {"echo": request.get_json(), "user_hash": guarded.user_hash,
                "prompt": guarded.decision.prompt.text if guarded.decision.prompt else None}  # fmt: skip

    @app.post("/v1/stream")
    def stream() -> Response:
        def events() -> Iterator[str]:
            yield "data: first\n\n"
            if release is not None:
                release.wait(10)  # bounded: the test releases it after seeing the first chunk
            yield "data: last\n\n"

        return Response(stream_with_context(events()), mimetype="text/event-stream")

    @app.post("/v1/open")
    @ext.exempt
    def open_view() -> Any:
        return {"ok": True}

    @app.post("/special")
    @ext.guard(surface="special-view")
    def special() -> Any:
        return {"ok": True}

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.post("/v1/nested")
    def nested() -> Any:  # code that pushes an app context of its own still sees the guarded request
        with app.app_context():
            inner = current_guarded()
        return {"inner": None if inner is None else inner.request_id}

    ext.init_app(app)
    return app


@pytest.fixture
def guard(make_guard: MakeGuard) -> Safeguards:
    g = make_guard(POLICY)
    g.accept_terms("alice", "v1")
    return g


def post(app: Flask, path: str, user: str | None, payload: Any = None, **kw: Any) -> TestResponse:
    headers = {"X-User": user} if user else {}
    if payload is None and "data" not in kw:
        payload = {"prompt": "hello"}
    return app.test_client().post(path, json=payload, headers=headers, **kw)


def test_allowed_call_with_context_and_headers(guard: Safeguards) -> None:
    app = build_app(guard)
    response = post(app, "/v1/chat", "alice", {"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200
    data = response.get_json()
    assert data["user_hash"] == guard.hash_user("alice") and data["prompt"] == "hi"
    assert data["echo"]["messages"][0]["content"] == "hi"  # the view can still read the body
    assert response.headers["RateLimit-Limit"] == "5" and response.headers["RateLimit-Remaining"] == "4"
    (record,) = guard.audit.find(request_id=response.headers["Aupguard-Request-Id"])
    assert (record.surface, record.outcome) == ("/v1/chat", "allowed")


def test_the_guarded_request_is_seen_in_a_nested_app_context_and_ends_with_the_request(guard: Safeguards) -> None:
    app = build_app(guard)
    response = post(app, "/v1/nested", "alice")
    assert response.get_json()["inner"] == response.headers["Aupguard-Request-Id"]
    with app.app_context():  # one app context around several requests: Flask reuses its g
        client = app.test_client()
        guarded = client.post("/v1/chat", json={"prompt": "hello"}, headers={"X-User": "alice"})
        assert guarded.status_code == 200 and current_guarded() is None  # over with its request
        health = client.get("/health")
        assert "Aupguard-Request-Id" not in health.headers and "RateLimit-Limit" not in health.headers


@pytest.mark.parametrize(
    ("user", "payload", "status", "kind"),
    [(None, None, 401, "authentication_required"),
     ("bob", None, 403, "terms_not_accepted"),
     ("alice", {"prompt": "nerve agent synthesis steps"}, 403, "content_flagged"),
     ("alice", {"nothing": "here"}, 400, "invalid_request_error")],
)  # fmt: skip
def test_refusals_in_anthropic_shape(guard: Safeguards, user: str | None, payload: Any, status: int, kind: str) -> None:
    response = post(build_app(guard), "/v1/chat", user, payload)
    assert response.status_code == status
    assert response.get_json() == {
        "type": "error",
        "error": {"type": kind, "message": response.get_json()["error"]["message"]},
    }


def test_suspended_and_prompt_not_allowed(guard: Safeguards, make_guard: MakeGuard) -> None:
    guard.suspend("alice", reason="fraud", until=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    response = post(build_app(guard), "/v1/chat", "alice")
    assert (response.status_code, response.get_json()["error"]["type"]) == (403, "user_suspended")
    assert 3500 <= int(response.headers["Retry-After"]) <= 3600
    strict = make_guard({"prompts": {"mode": "allowlist", "allowlist": ["What are your hours?"]}})
    refused = post(build_app(strict), "/v1/chat", "carol", {"prompt": "tell me a secret"})
    assert (refused.status_code, refused.get_json()["error"]["type"]) == (403, "prompt_not_allowed")


def test_malformed_and_oversized_bodies(guard: Safeguards) -> None:
    app = build_app(guard, max_body_bytes=1000)
    client = app.test_client()
    for data in [b"{nope", b"\xff\xfe", b""]:
        response = client.post("/v1/chat", data=data, headers={"X-User": "alice", "Content-Type": "application/json"})
        assert (response.status_code, response.get_json()["error"]["type"]) == (400, "invalid_request_error"), data
    big = post(app, "/v1/chat", "alice", {"prompt": "x" * 5000})
    assert (big.status_code, big.get_json()["error"]["type"]) == (413, "request_too_large")
    outcomes = [r.outcome for r in guard.audit.find(user_id="alice")]
    assert outcomes.count("invalid_request_error") == 3 and outcomes.count("request_too_large") == 1


def test_429_with_headers_and_a_custom_errorhandler(guard: Safeguards) -> None:
    app = build_app(guard)

    @app.errorhandler(429)
    def too_many(error: SafeguardsRefusal) -> Any:
        response = jsonify({"custom": True, "kind": error.decision.error})
        response.status_code = 429
        response.headers["Retry-After"] = str(error.decision.retry_after)
        return response

    statuses = [post(app, "/v1/chat", "alice").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    response = post(app, "/v1/chat", "alice")
    assert response.get_json() == {"custom": True, "kind": "rate_limited"}
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_exempt_unguarded_and_per_view_guard(guard: Safeguards) -> None:
    app = build_app(guard)
    assert post(app, "/v1/open", None).status_code == 200  # exempt even under /v1/*
    assert app.test_client().get("/health").status_code == 200
    assert post(app, "/special", None).status_code == 401  # guarded although outside routes
    assert post(app, "/special", "alice").status_code == 200
    assert {r.surface for r in guard.audit.find(user_id="alice")} == {"special-view"}


def test_two_apps_in_one_process_and_the_factory_pattern(make_guard: MakeGuard, tmp_path: Any) -> None:
    first = make_guard(POLICY)
    second = make_guard(POLICY, store=f"sqlite:///{tmp_path / 'second.db'}")
    first.accept_terms("alice", "v1")
    apps = []
    for guard in (first, second):
        app = Flask(f"app{len(apps)}")
        app.config["AUPGUARD_ROUTES"] = ["/v1/*"]

        @app.post("/v1/chat")
        def chat() -> Any:
            return {"ok": True}

        FlaskSafeguards(safeguards=guard, user_header="X-User").init_app(app)
        apps.append(app)
    assert post(apps[0], "/v1/chat", "alice").status_code == 200
    assert post(apps[1], "/v1/chat", "alice").status_code == 403  # terms accepted only in the first
    assert FlaskSafeguards.safeguards(apps[1]) is second
    with pytest.raises(RuntimeError, match="already registered"):
        FlaskSafeguards(safeguards=first).init_app(apps[0])


def test_config_keys_and_precedence(tmp_path: Any, key_entry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = Flask("configured")
    app.config.update(
        AUPGUARD_POLICY={"limits": {"default": "2/minute"}},
        AUPGUARD_STORE=f"sqlite:///{tmp_path / 'c.db'}",
        AUPGUARD_USER_HEADER="X-From-Config",
        AUPGUARD_MAX_BODY_BYTES=50,
    )

    @app.post("/chat")
    def chat() -> Any:
        return {"ok": True}

    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    FlaskSafeguards(app, max_body_bytes=10_000)  # the argument beats the config key
    client = app.test_client()
    headers = {"X-From-Config": "alice"}
    assert client.post("/chat", json={"prompt": "x" * 100}, headers=headers).status_code == 200
    assert client.post("/chat", json={"prompt": "hi"}, headers=headers).status_code == 200
    assert client.post("/chat", json={"prompt": "hi"}, headers=headers).status_code == 429  # limit from config
    FlaskSafeguards.safeguards(app).close()
    with pytest.raises(TypeError, match="unknown FlaskSafeguards option"):
        FlaskSafeguards(colour="blue")


def test_flask_login_user_is_the_default_identity(guard: Safeguards) -> None:
    from flask_login import LoginManager, UserMixin, login_user

    class User(UserMixin):
        def __init__(self, uid: str) -> None:
            self.id = uid

    app = Flask("login")
    app.secret_key = "test"
    LoginManager(app).user_loader(User)

    @app.post("/v1/login/<uid>")
    def login(uid: str) -> Any:
        login_user(User(uid))
        return {"ok": True}

    @app.post("/v1/chat")
    def chat() -> Any:
        return {"user_hash": current_guarded().user_hash}  # type: ignore[union-attr]

    FlaskSafeguards(app, safeguards=guard, routes=["/v1/chat"])
    client = app.test_client()
    assert client.post("/v1/chat", json={"prompt": "hi"}).status_code == 401
    client.post("/v1/login/alice")
    response = client.post("/v1/chat", json={"prompt": "hi"})
    assert response.status_code == 200 and response.get_json()["user_hash"] == guard.hash_user("alice")


# -- a real server over loopback ---------------------------------------------------------


@pytest.fixture
def server(guard: Safeguards) -> Iterator[tuple[str, threading.Event]]:
    release = threading.Event()
    srv = make_server("127.0.0.1", 0, build_app(guard, release), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}", release
    release.set()
    srv.shutdown()
    thread.join(10)


def test_real_server_streams_unbuffered(server: tuple[str, threading.Event]) -> None:
    url, release = server
    with (
        httpx.Client(timeout=10) as http,
        http.stream("POST", f"{url}/v1/stream", json={"prompt": "s"}, headers={"X-User": "alice"}) as response,
    ):
        assert response.status_code == 200 and response.headers["ratelimit-limit"] == "5"
        lines = response.iter_lines()
        assert next(line for line in lines if line) == "data: first"
        assert not release.is_set()  # the view has not produced the last chunk yet
        release.set()
        assert "data: last" in list(lines)


def test_real_server_refusals(server: tuple[str, threading.Event]) -> None:
    url, _ = server
    with httpx.Client(timeout=10) as http:
        assert http.post(f"{url}/v1/chat", json={"prompt": "hi"}).status_code == 401
        bad = http.post(
            f"{url}/v1/chat", content=b"{oops", headers={"X-User": "alice", "content-type": "application/json"}
        )
        assert (bad.status_code, bad.json()["error"]["type"]) == (400, "invalid_request_error")
        big = http.post(f"{url}/v1/chat", content=b"x" * 2_000_000, headers={"X-User": "alice"})
        assert big.status_code == 413
        flagged = http.post(f"{url}/v1/chat", json={"prompt": "nerve agent synthesis"}, headers={"X-User": "alice"})
        assert flagged.status_code == 403


def test_one_extension_object_serves_an_app_factory(
    tmp_path: Any, key_entry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    ext = FlaskSafeguards(user_header="X-User")

    def create_app(name: str, limit: str) -> Flask:
        app = Flask(name)
        app.config.update(
            AUPGUARD_POLICY={"limits": {"default": limit}}, AUPGUARD_STORE=f"sqlite:///{tmp_path / name}.db"
        )

        @app.post("/chat")
        def chat() -> Any:
            return {"ok": True}

        ext.init_app(app)
        return app

    one, two = create_app("one", "1/minute"), create_app("two", "3/minute")
    assert [post(one, "/chat", "alice").status_code for _ in range(2)] == [200, 429]
    assert [post(two, "/chat", "alice").status_code for _ in range(2)] == [200, 200]
    assert FlaskSafeguards.safeguards(one) is not FlaskSafeguards.safeguards(two)
    for app in (one, two):
        FlaskSafeguards.safeguards(app).close()


def test_review_edge_cases(guard: Safeguards, messages_double: Any) -> None:
    client = guard.instrument(messages_double.client())
    app = Flask("edges")
    app.config["MAX_CONTENT_LENGTH"] = 100  # the app's own cap still applies

    @app.post("/v1/stream")
    def stream() -> Response:
        def events() -> Iterator[str]:
            guarded = current_guarded()  # still there while the response streams
            yield f"user {guarded.user_hash if guarded else None}\n"
            message = client.messages.create(model="claude-sonnet-5-5", max_tokens=5,
                                              messages=[{"role": "user", "content": "x"}])  # fmt: skip
            yield f"id {message.id}\n"

        return Response(stream_with_context(events()), mimetype="text/plain")

    def identify() -> str | None:
        if request.args.get("fail"):
            raise RuntimeError("lookup of alice@example.com failed")
        return request.headers.get("X-User")

    FlaskSafeguards(app, safeguards=guard, identify=identify, routes=["/v1/*"])
    http = app.test_client()
    streamed = http.post("/v1/stream", json={"prompt": "hi"}, headers={"X-User": "alice"})
    assert streamed.get_data(as_text=True).startswith(f"user {guard.hash_user('alice')}\nid msg_")
    (sent,) = messages_double.requests_to("/v1/messages")
    assert sent.body["metadata"]["user_id"] == guard.hash_user("alice")
    assert post(app, "/v1/stream", "alice", {"prompt": "x" * 200}).status_code == 413
    failed = http.post("/v1/stream?fail=1", json={"prompt": "hi"})
    assert (failed.status_code, failed.get_json()["error"]["type"]) == (500, "api_error")
    assert "alice" not in failed.get_data(as_text=True)
    preflight = {"Access-Control-Request-Method": "POST", "Origin": "https://app.example"}
    assert http.options("/v1/stream", headers=preflight).status_code != 401  # a CORS preflight passes
    with pytest.raises(TypeError, match="not one string"):
        FlaskSafeguards(Flask("x"), safeguards=guard, routes="/v1/*")


def test_chunked_bodies_over_the_cap_get_413_on_a_real_server(guard: Safeguards) -> None:
    srv = make_server("127.0.0.1", 0, build_app(guard, max_body_bytes=1000), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:

        def chunks() -> Iterator[bytes]:
            yield b'{"prompt": "'
            yield b"y" * 5000
            yield b'"}'

        with httpx.Client(timeout=10) as http:
            response = http.post(f"http://127.0.0.1:{srv.server_port}/v1/chat", content=chunks(),
                                 headers={"X-User": "alice", "content-type": "application/json"})  # fmt: skip
        assert (response.status_code, response.json()["error"]["type"]) == (413, "request_too_large")
    finally:
        srv.shutdown()
        thread.join(10)

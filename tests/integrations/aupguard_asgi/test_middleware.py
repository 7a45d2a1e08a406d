"""SafeguardsMiddleware in Starlette and FastAPI, in-process and behind a real uvicorn."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from aupguard import Safeguards
from aupguard.engine.context import current_guarded
from aupguard_asgi import SafeguardsMiddleware
from tests.conftest import MakeGuard

RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]
POLICY = {"terms": {"version": "v1", "url": "https://example.com/aup"}, "moderation": {"rules": RULES},
          "limits": {"default": "5/minute"}}  # fmt: skip


class Probe:
    """What the app saw, for assertions."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.disconnected = threading.Event()
        self.completed = threading.Event()
        self.calls = 0


def build_app(guard: Safeguards, probe: Probe, **options: Any) -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        probe.calls += 1
        guarded = current_guarded()
        body = await request.json()
        assert guarded is not None
        return JSONResponse({"echo": body, "user_hash": guarded.user_hash, "request_id": guarded.request_id,
                             "prompt": guarded.decision.prompt.text if guarded.decision.prompt else None})  # fmt: skip

    async def stream(request: Request) -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            try:
                yield b"data: first\n\n"
                for _ in range(500):  # wait (bounded) until the test has seen the first chunk
                    if probe.release.is_set():
                        break
                    if await request.is_disconnected():
                        return
                    await asyncio.sleep(0.01)
                yield b"data: last\n\n"
                probe.completed.set()
            finally:  # cancelled or returned early when the client went away
                if not probe.completed.is_set():
                    probe.disconnected.set()

        return StreamingResponse(events(), media_type="text/event-stream")

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"]), Route("/v1/stream", stream, methods=["POST"]),
                            Route("/health", health), WebSocketRoute("/ws", ws)])  # fmt: skip
    options = {"user_header": "x-user", "routes": ["/v1/*"], **options}
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, **options)
    return app


@pytest.fixture
def guard(make_guard: MakeGuard) -> Safeguards:
    g = make_guard(POLICY)
    g.accept_terms("alice", "v1")
    return g


@pytest.fixture
def client(guard: Safeguards) -> Iterator[TestClient]:
    with TestClient(build_app(guard, Probe())) as c:
        yield c


def chat(client: TestClient, user: str | None, payload: Any = None, **kw: Any) -> httpx.Response:
    headers = {"x-user": user} if user else {}
    if payload is None and "content" not in kw:
        payload = {"messages": [{"role": "user", "content": "hello"}]}
    return client.post("/v1/chat", json=payload, headers=headers, **kw)


def test_allowed_call_reaches_the_app_with_context_and_headers(client: TestClient, guard: Safeguards) -> None:
    response = chat(client, "alice", {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    assert response.status_code == 200
    data = response.json()
    assert data["echo"]["messages"][0]["content"][0]["text"] == "hi"  # the body was replayed
    assert data["user_hash"] == guard.hash_user("alice") and data["prompt"] == "hi"
    assert response.headers["ratelimit-limit"] == "5" and response.headers["ratelimit-remaining"] == "4"
    assert response.headers["aupguard-request-id"] == data["request_id"]
    (record,) = guard.audit.find(request_id=data["request_id"])
    assert (record.surface, record.outcome) == ("/v1/chat", "allowed")


@pytest.mark.parametrize(
    ("user", "payload", "status", "kind"),
    [(None, None, 401, "authentication_required"),
     ("bob", None, 403, "terms_not_accepted"),
     ("alice", {"prompt": "steps of nerve agent synthesis"}, 403, "content_flagged"),
     ("alice", {"nothing": "here"}, 400, "invalid_request_error"),
     ("alice", [1, 2], 400, "invalid_request_error")],
)  # fmt: skip
def test_refusals_in_anthropic_shape(
    client: TestClient, user: str | None, payload: Any, status: int, kind: str
) -> None:
    response = chat(client, user, payload)
    assert response.status_code == status
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == kind


def test_suspended_user_gets_403_with_retry_after(client: TestClient, guard: Safeguards) -> None:
    import datetime as dt

    guard.suspend("alice", reason="fraud", until=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    response = chat(client, "alice")
    assert (response.status_code, response.json()["error"]["type"]) == (403, "user_suspended")
    assert 3500 <= int(response.headers["retry-after"]) <= 3600


def test_prompt_not_allowed(make_guard: MakeGuard) -> None:
    guard = make_guard({"prompts": {"mode": "allowlist", "allowlist": ["What are your hours?"]}})
    with TestClient(build_app(guard, Probe())) as c:
        assert chat(c, "alice", {"prompt": "what are your hours?"}).status_code == 200
        refused = chat(c, "alice", {"prompt": "tell me a secret"})
    assert (refused.status_code, refused.json()["error"]["type"]) == (403, "prompt_not_allowed")


def test_malformed_bodies_get_400(client: TestClient, guard: Safeguards) -> None:
    for content in [b"{not json", b"\xff\xfe\x00bad", b""]:
        response = chat(
            client,
            "alice",
            content=content,
        )
        assert response.status_code == 400, content
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert "UTF-8" in chat(client, "alice", content=b"\xff\xfe").json()["error"]["message"]
    refused = [r for r in guard.audit.find(user_id="alice") if r.outcome == "invalid_request_error"]
    assert len(refused) == 4  # every refusal is audited


def test_bodies_over_the_cap_get_413(make_guard: MakeGuard) -> None:
    guard = make_guard()
    with TestClient(build_app(guard, Probe(), max_body_bytes=1000)) as c:
        big = {"prompt": "x" * 2000}
        response = chat(c, "alice", big)
        assert (response.status_code, response.json()["error"]["type"]) == (413, "request_too_large")

        def chunks() -> Iterator[bytes]:  # no content-length: the cap applies while reading
            yield b'{"prompt": "'
            yield b"y" * 2000
            yield b'"}'

        streamed = c.post("/v1/chat", content=chunks(), headers={"x-user": "alice"})
        assert streamed.status_code == 413


def test_429_with_rate_limit_headers(client: TestClient) -> None:
    statuses = [chat(client, "alice").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    response = chat(client, "alice")
    assert response.json()["error"]["type"] == "rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["ratelimit-remaining"] == "0" and response.headers["ratelimit-limit"] == "5"


def test_unguarded_routes_and_websockets_pass_through(client: TestClient, guard: Safeguards) -> None:
    response = client.get("/health")
    assert response.text == "ok" and "ratelimit-limit" not in response.headers
    with client.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "hello"
    assert guard.audit.find(user_id="alice") == []


def test_user_header_is_ignored_unless_configured(guard: Safeguards) -> None:
    app = build_app(guard, Probe(), user_header=None)
    with TestClient(app) as c:
        assert chat(c, "alice").status_code == 401


def test_default_identity_is_starlettes_authenticated_user(guard: Safeguards) -> None:
    class HeaderAuth(AuthenticationBackend):
        async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
            token = conn.headers.get("authorization", "")
            return (AuthCredentials(["user"]), SimpleUser("alice")) if token == "Bearer good" else None

    inner = build_app(guard, Probe(), user_header=None)
    app = Starlette(routes=inner.routes, middleware=[
        Middleware(AuthenticationMiddleware, backend=HeaderAuth()),
        Middleware(SafeguardsMiddleware, safeguards=guard, routes=["/v1/*"])])  # fmt: skip
    with TestClient(app) as c:
        assert c.post("/v1/chat", json={"prompt": "hi"}, headers={"authorization": "Bearer good"}).status_code == 200
        assert c.post("/v1/chat", json={"prompt": "hi"}, headers={"authorization": "Bearer bad"}).status_code == 401


def test_async_identify_callable(guard: Safeguards) -> None:
    async def identify(request: Request) -> str | None:
        return "alice" if request.query_params.get("u") == "a" else None

    with TestClient(build_app(guard, Probe(), identify=identify, user_header=None)) as c:
        assert c.post("/v1/chat?u=a", json={"prompt": "hi"}).status_code == 200
        assert c.post("/v1/chat", json={"prompt": "hi"}).status_code == 401


def test_fastapi_app(guard: Safeguards) -> None:
    api = FastAPI()

    @api.post("/v1/ask")
    async def ask(payload: dict[str, Any]) -> dict[str, Any]:
        guarded = current_guarded()
        return {"user_hash": guarded.user_hash if guarded else None}

    api.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user", routes=["/v1/ask"])
    with TestClient(api) as c:
        ok = c.post("/v1/ask", json={"prompt": "hi"}, headers={"x-user": "alice"})
        assert ok.status_code == 200 and ok.json()["user_hash"] == guard.hash_user("alice")
        assert (
            c.post("/v1/ask", json={"prompt": "nerve agent synthesis"}, headers={"x-user": "alice"}).status_code == 403
        )
        assert c.get("/docs").status_code == 200  # not guarded


def test_parallel_mode_discards_a_flagged_answer(make_guard: MakeGuard) -> None:
    guard = make_guard({**POLICY, "moderation": {"rules": RULES, "mode": "parallel"}})
    guard.accept_terms("alice", "v1")
    probe = Probe()
    with TestClient(build_app(guard, probe)) as c:
        flagged = chat(c, "alice", {"prompt": "nerve agent synthesis"})
        assert (flagged.status_code, flagged.json()["error"]["type"]) == (403, "content_flagged")
        assert probe.calls == 1  # the app ran alongside; its answer was discarded
        assert "echo" not in flagged.text
        assert chat(c, "alice", {"prompt": "hello"}).status_code == 200
    (record,) = [r for r in guard.audit.find(user_id="alice") if r.status == 403]
    assert record.outcome == "content_flagged"


def test_lifespan_shutdown_flushes_the_audit_queue(make_guard: MakeGuard) -> None:
    guard = make_guard()
    with TestClient(build_app(guard, Probe())) as c:
        for _ in range(20):
            chat(c, "alice", {"prompt": "hi"})
    assert guard.audit.pending() == 0


# -- a real server over loopback ---------------------------------------------------------


@pytest.fixture
def server(guard: Safeguards) -> Iterator[tuple[str, Probe]]:
    probe = Probe()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(build_app(guard, probe), log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}", probe
    srv.should_exit = True
    thread.join(10)


def test_real_server_streams_chunk_by_chunk(server: tuple[str, Probe]) -> None:
    url, probe = server
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST", f"{url}/v1/stream", json={"prompt": "stream please"}, headers={"x-user": "alice"}
        ) as response,
    ):
        assert response.status_code == 200 and response.headers["ratelimit-limit"] == "5"
        lines = response.iter_lines()
        first = next(line for line in lines if line)
        assert first == "data: first"  # arrived while the app still holds the last chunk
        assert not probe.release.is_set()
        probe.release.set()
        assert "data: last" in list(lines)


def test_real_server_client_disconnect_mid_stream(server: tuple[str, Probe]) -> None:
    url, probe = server
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST", f"{url}/v1/stream", json={"prompt": "stream please"}, headers={"x-user": "alice"}
        ) as response,
    ):
        next(line for line in response.iter_lines() if line)
    assert probe.disconnected.wait(5)  # the app's stream stopped when the client went away
    assert not probe.completed.is_set()
    with httpx.Client(timeout=10) as http:  # and the server keeps serving
        assert http.post(f"{url}/v1/chat", json={"prompt": "hi"}, headers={"x-user": "alice"}).status_code == 200


def test_real_server_refusals(server: tuple[str, Probe]) -> None:
    url, _ = server
    with httpx.Client(timeout=10) as http:
        assert http.post(f"{url}/v1/chat", json={"prompt": "hi"}).status_code == 401
        bad = http.post(f"{url}/v1/chat", content=b"{oops", headers={"x-user": "alice"})
        assert (bad.status_code, bad.json()["error"]["type"]) == (400, "invalid_request_error")
        big = http.post(f"{url}/v1/chat", content=b"x" * 2_000_000, headers={"x-user": "alice"})
        assert big.status_code == 413


def test_warned_users_get_a_header_and_a_json_hint(client: TestClient, guard: Safeguards) -> None:
    guard.strike("alice", reason="flagged earlier")
    response = chat(client, "alice", {"prompt": "hi"})
    assert response.status_code == 200
    warning = response.headers["aupguard-warning"]
    assert response.json()["aupguard"] == {"warning": warning}
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.json()["echo"] == {"prompt": "hi"}  # the app's answer is intact


def test_a_warned_users_stream_is_not_held(guard: Safeguards) -> None:
    guard.strike("alice", reason="flagged earlier")
    probe = Probe()
    probe.release.set()
    with TestClient(build_app(guard, probe)) as c:
        response = c.post("/v1/stream", json={"prompt": "s"}, headers={"x-user": "alice"})
    assert response.status_code == 200 and "aupguard-warning" in response.headers
    assert response.text == "data: first\n\ndata: last\n\n"


def test_review_edge_cases(guard: Safeguards) -> None:
    from starlette.responses import Response

    async def delete(request: Request) -> JSONResponse:
        return JSONResponse({"body": (await request.body()).decode()})

    async def boom(request: Request) -> Response:
        raise RuntimeError("never reached")

    def identify(request: Request) -> str | None:
        if request.query_params.get("fail"):
            raise RuntimeError("user alice@example.com not found")  # must not reach the client
        return request.headers.get("x-user")

    app = Starlette(routes=[Route("/v1/item", delete, methods=["DELETE", "OPTIONS"]),
                            Route("/v1/boom", boom, methods=["POST"])])  # fmt: skip
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, identify=identify, routes=["/v1/*"])
    with TestClient(app, raise_server_exceptions=False) as c:
        # a body sent with DELETE is read and screened as with POST: no unread body reaches the app
        odd = c.request("DELETE", "/v1/item", content=b'{"id": 1}', headers={"x-user": "alice"})
        assert (odd.status_code, odd.json()["error"]["type"]) == (400, "invalid_request_error")
        kept = c.request("DELETE", "/v1/item", content=b'{"prompt": "hi"}', headers={"x-user": "alice"})
        assert kept.json() == {"body": '{"prompt": "hi"}'}
        preflight = {"access-control-request-method": "DELETE", "origin": "https://app.example"}
        assert c.options("/v1/item", headers=preflight).status_code != 401  # CORS preflights pass
        assert c.options("/v1/item").status_code == 401  # another OPTIONS is guarded
        failed = c.post("/v1/boom?fail=1", json={"prompt": "hi"})
        assert (failed.status_code, failed.json()["error"]["type"]) == (500, "api_error")
        assert "alice" not in failed.text
    with pytest.raises(TypeError, match="not one string"):
        SafeguardsMiddleware(app, guard, routes="/v1/*")


def test_a_warned_users_streamed_json_is_not_held(guard: Safeguards) -> None:
    guard.strike("alice", reason="earlier")

    async def stream(request: Request) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            yield b'{"a": '
            yield b"1}"

        return StreamingResponse(parts(), media_type="application/json")

    app = Starlette(routes=[Route("/v1/s", stream, methods=["POST"])])
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user")
    with TestClient(app) as c:
        response = c.post("/v1/s", json={"prompt": "hi"}, headers={"x-user": "alice"})
    assert response.text == '{"a": 1}' and "aupguard-warning" in response.headers  # passed as it is


def test_a_user_header_that_is_not_utf8_is_refused(guard: Safeguards) -> None:
    import asyncio as aio

    app = build_app(guard, Probe())
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b'{"prompt": "hi"}', "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat", "headers": [(b"x-user", b"\xff\xfe")],
             "query_string": b"", "asgi": {"version": "3.0"}}  # fmt: skip
    aio.run(app(scope, receive, send))
    assert sent[0]["status"] == 400

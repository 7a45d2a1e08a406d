"""Callers the gateway does not know are refused from the headers alone, before any body is
read; bad keys are throttled per address; these refusals are counted and sampled into the
audit log; a body that does not arrive in time gets 408. Raw sockets on a real uvicorn."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aupguard import Safeguards
from aupguard.gateway.callers import RefusalSampler
from aupguard.testing import MessagesDouble
from aupguard_asgi import SafeguardsMiddleware
from tests.conftest import Clock, MakeGuard
from tests.integrations.aupguard_gateway.test_app import ASK, Gateway, start
from tests.support.gateway import serving

WRONG = "agk_000000000000_" + "x" * 43


def send_head(url: str, path: str, headers: dict[str, str], body: bytes = b"", declared: int = 1000) -> socket.socket:
    """Open a connection and send a request's head (and maybe part of its body), no more."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    lines = [f"POST {path} HTTP/1.1", f"host: {host}", "content-type: application/json",
             f"content-length: {declared}", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """The answer to a request whose body was never (fully) sent: status, headers, JSON."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection without answering"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status, *fields = head.decode("latin-1").split("\r\n")
    headers = {n.strip().lower(): v.strip() for n, _, v in (f.partition(":") for f in fields)}
    while len(rest) < int(headers["content-length"]):
        rest += sock.recv(65536)
    sock.close()
    return int(status.split(" ")[1]), headers, json.loads(rest)


@pytest.fixture
def gw(make_guard: MakeGuard, messages_double: MessagesDouble) -> Iterator[Gateway]:
    yield from start(make_guard, messages_double, {"gateway": {"bad_key_limit": "3/minute", "body_timeout": "1s"}})


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens", "/v1/models"])
@pytest.mark.parametrize("headers", [{}, {"x-api-key": WRONG}, {"authorization": "Bearer nope"}])
def test_no_key_or_a_wrong_key_gets_401_before_any_body_is_sent(
    gw: Gateway, path: str, headers: dict[str, str]
) -> None:
    sock = send_head(gw.url, path, headers)  # the body never comes: the answer must not wait for it
    status, _, body = read_answer(sock)
    assert status == 401 and body["error"]["type"] == "authentication_required"
    assert gw.double.requests == []


def test_keyless_malformed_json_is_401_not_400(gw: Gateway) -> None:
    response = httpx.post(f"{gw.url}/v1/messages", content=b"{not json", timeout=10)
    assert response.status_code == 401


def test_wrong_keys_are_throttled_per_address(gw: Gateway) -> None:
    for _ in range(3):
        assert httpx.post(f"{gw.url}/v1/messages", json=ASK, headers={"x-api-key": WRONG}).status_code == 401
    throttled = httpx.post(f"{gw.url}/v1/messages", json=ASK, headers={"x-api-key": WRONG + "y"})
    assert throttled.status_code == 429 and throttled.json()["error"]["type"] == "rate_limited"
    assert 0 < int(throttled.headers["retry-after"]) <= 60
    # while throttled, the address's keys are not looked up: a good one waits too (documented)
    assert httpx.post(f"{gw.url}/v1/messages", json=ASK, headers={"x-api-key": gw.key}).status_code == 429
    # no key at all is still a plain 401: it costs no lookup and does not count
    assert httpx.post(f"{gw.url}/v1/messages", json=ASK).status_code == 401
    assert gw.double.requests == []


def test_unknown_callers_are_counted_and_sampled_into_the_audit_log(gw: Gateway) -> None:
    started = time.monotonic()
    with httpx.Client(timeout=10) as http:
        for n in range(60):
            headers = {"x-api-key": f"not-a-key-{n}"} if n % 2 else {}
            assert http.post(f"{gw.url}/v1/messages", json=ASK, headers=headers).status_code in (401, 429)
    seconds = time.monotonic() - started
    text = gw.guard.metrics.render()
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("aupguard_decisions_total{") and ("authentication_required" in line
                                                                      or "rate_limited" in line))  # fmt: skip
    assert counted == 60  # every refusal is in the metrics
    gw.guard.audit.flush()
    with sqlite3.connect(gw.guard.store.path) as db:  # type: ignore[attr-defined]
        rows = db.execute("SELECT reasons FROM decisions").fetchall()
    reasons = [json.loads(r[0]) for r in rows]
    # one row per reason and second at most, each saying how many refusals it stands for
    assert 1 <= len(rows) <= 3 * (int(seconds) + 2) < 60
    assert all(r[0].startswith("gateway_key_") and r[1].startswith("sampled:") for r in reasons)
    assert sum(int(r[1].split(":")[1]) for r in reasons) <= 60


def test_the_sampler_writes_one_row_per_reason_and_second_with_its_count() -> None:
    clock = Clock(100.0)
    sampler = RefusalSampler(every=1.0, clock=clock)
    assert sampler.take("a") == 1 and sampler.take("b") == 1  # reasons are sampled apart
    assert [sampler.take("a") for _ in range(5)] == [None] * 5
    clock.advance(1.0)
    assert sampler.take("a") == 6  # this one and the five unrecorded before it
    assert sampler.take("a") is None


def test_a_body_that_does_not_arrive_in_time_gets_408(gw: Gateway) -> None:
    sock = send_head(gw.url, "/v1/messages", {"x-api-key": gw.key}, body=b'{"model": "claude', declared=500)
    status, headers, body = read_answer(sock)  # body_timeout = 1s
    assert status == 408 and body["error"]["type"] == "request_timeout"
    assert gw.double.requests == []
    (record,) = gw.guard.audit.find(request_id=headers["aupguard-request-id"])
    assert (record.outcome, record.status, record.user_hash) == ("request_timeout", 408, gw.guard.hash_user("alice"))
    assert gw.client().messages.create(**ASK).content  # type: ignore[arg-type]  # and the gateway goes on


def test_a_slow_count_tokens_body_gets_408_too(gw: Gateway) -> None:
    sock = send_head(gw.url, "/v1/messages/count_tokens", {"x-api-key": gw.key}, body=b"{", declared=50)
    status, _, body = read_answer(sock)
    assert status == 408 and body["error"]["type"] == "request_timeout"


# -- any ASGI app: an anonymous caller is refused before its body is read -----------------------


def test_the_middleware_refuses_an_anonymous_caller_before_reading_its_body(make_guard: MakeGuard) -> None:
    guard: Safeguards = make_guard({})

    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"])])
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user")
    with serving(app) as url:
        status, headers, body = read_answer(send_head(url, "/v1/chat", {}))
        assert status == 401 and body["error"]["type"] == "authentication_required"
        (record,) = guard.audit.find(request_id=headers["aupguard-request-id"])
        assert (record.outcome, record.surface) == ("authentication_required", "/v1/chat")
        assert httpx.post(f"{url}/v1/chat", content=b"{not json").status_code == 401  # not 400

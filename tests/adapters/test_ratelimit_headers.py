"""``RateLimit-Policy`` / ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers-10) on every
adapter, the legacy trio behind ``[limits] legacy_headers``, the gateway passing the
upstream's ``anthropic-ratelimit-*`` on, and an ``identify`` that raises an HTTP exception."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import anthropic
import pytest
from flask import abort
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.testclient import TestClient

from aupguard import Safeguards
from aupguard.adapters.ratelimit_headers import partition_key
from aupguard.ladder import Level
from aupguard.outcome import Decision
from aupguard.policy.config import LimitsPolicy
from aupguard.testing import MessagesDouble, Reply
from tests.conftest import MakeGuard
from tests.integrations.aupguard_asgi import test_middleware as test_asgi
from tests.integrations.aupguard_flask import test_extension as test_flask
from tests.integrations.aupguard_gateway.test_app import ASK, Gateway, start

USER = "k1_" + "ab" * 32
ITEM = re.compile(r'^"(?P<name>[a-z]+)"(?P<params>(;[a-z]+=[^;,]+)*)$')  # one RFC 8941 list member


def params(value: str) -> tuple[str, dict[str, str]]:
    """The policy name and the parameters of a one-item structured field."""
    found = ITEM.match(value)
    assert found is not None, value
    pairs = [p.split("=", 1) for p in found["params"].split(";")[1:]]
    return found["name"], dict(pairs)


def assert_user_partition(value: str, user_hash: str) -> None:
    """``pk`` is a byte sequence holding the first 8 bytes of the user's keyed hash."""
    pk = params(value)[1]["pk"]
    assert pk.startswith(":") and pk.endswith(":")
    assert base64.b64decode(pk[1:-1]) == bytes.fromhex(user_hash.rpartition("_")[2])[:8]


# -- the fields themselves ---------------------------------------------------------------


def test_policy_and_service_limit_fields_with_the_window_from_the_policy() -> None:
    decision = Decision("r1", True, user_hash=USER, limit=60, remaining=42, reset_after=17)
    headers = decision.headers(LimitsPolicy(default="60/minute"))
    assert params(headers["RateLimit-Policy"]) == ("default", {"q": "60", "w": "60", "pk": partition_key(USER)})
    assert params(headers["RateLimit"]) == ("default", {"r": "42", "t": "17", "pk": partition_key(USER)})
    assert_user_partition(headers["RateLimit"], USER)
    assert USER not in "".join(headers.values()) and USER[3:] not in "".join(headers.values())


def test_a_throttled_user_is_counted_in_the_throttled_policy() -> None:
    decision = Decision("r1", False, 429, "rate_limited", "m", USER, Level.THROTTLED, 5, 0, 3000, 3000)
    headers = decision.headers(LimitsPolicy(default="60/minute", throttled="5/hour"))
    assert params(headers["RateLimit-Policy"])[0] == "throttled"
    assert params(headers["RateLimit-Policy"])[1]["w"] == "3600"
    assert params(headers["RateLimit"])[1]["r"] == "0" and headers["Retry-After"] == "3000"


def test_legacy_headers_follow_the_policy() -> None:
    decision = Decision("r1", True, user_hash=USER, limit=60, remaining=59, reset_after=1)
    legacy = decision.headers(LimitsPolicy())
    assert (legacy["RateLimit-Limit"], legacy["RateLimit-Remaining"], legacy["RateLimit-Reset"]) == ("60", "59", "1")
    modern = decision.headers(LimitsPolicy(legacy_headers=False))
    assert not {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} & set(modern)
    assert {"RateLimit-Policy", "RateLimit"} <= set(modern)


def test_without_the_policy_the_window_is_left_out() -> None:
    headers = Decision("r1", True, user_hash=USER, limit=60, remaining=59, reset_after=1).headers()
    assert "w" not in params(headers["RateLimit-Policy"])[1]


def test_an_anonymous_call_is_partitioned_by_its_client_key() -> None:
    key = "k1_" + "0f" * 32
    headers = Decision("r1", True, limit=5, remaining=4, reset_after=1, anonymous_key=key).headers()
    assert_user_partition(headers["RateLimit"], key)


@pytest.mark.parametrize("user_hash", [None, "anonymous", "", "k1_xyz"])
def test_no_partition_key_without_a_user_hash(user_hash: str | None) -> None:
    headers = Decision("r1", True, user_hash=user_hash, limit=5, remaining=4, reset_after=1).headers()
    assert "pk" not in params(headers["RateLimit"])[1] and "pk" not in params(headers["RateLimit-Policy"])[1]


def test_the_legacy_key_is_validated() -> None:
    from aupguard import Policy
    from aupguard.errors import PolicyError

    assert Policy.from_mapping({"limits": {"legacy_headers": False}}, env={}).limits.legacy_headers is False
    with pytest.raises(PolicyError, match=r"limits\.legacy_headers"):
        Policy.from_mapping({"limits": {"legacy_headers": "sometimes"}}, env={})


# -- adapters --------------------------------------------------------------------------------


def test_asgi_answers_carry_the_fields(make_guard: MakeGuard) -> None:
    guard = make_guard({**test_asgi.POLICY, "limits": {"default": "5/minute", "legacy_headers": False}})
    guard.accept_terms("alice", "v1")
    with TestClient(test_asgi.build_app(guard, test_asgi.Probe())) as client:
        allowed = client.post("/v1/chat", json={"prompt": "hello"}, headers={"x-user": "alice"})
        assert allowed.status_code == 200
        assert params(allowed.headers["ratelimit-policy"]) == (
            "default", {"q": "5", "w": "60", "pk": partition_key(guard.hash_user("alice"))})  # fmt: skip
        assert params(allowed.headers["ratelimit"])[1]["r"] == "4"
        assert "ratelimit-limit" not in allowed.headers
        for _ in range(4):
            client.post("/v1/chat", json={"prompt": "hello"}, headers={"x-user": "alice"})
        limited = client.post("/v1/chat", json={"prompt": "hello"}, headers={"x-user": "alice"})
    assert limited.status_code == 429 and limited.json()["error"]["type"] == "rate_limited"
    assert params(limited.headers["ratelimit"])[1]["r"] == "0" and int(limited.headers["retry-after"]) >= 1
    assert_user_partition(limited.headers["ratelimit"], guard.hash_user("alice"))
    assert "alice" not in str(limited.headers)


def test_flask_answers_carry_the_fields_and_the_legacy_trio_by_default(make_guard: MakeGuard) -> None:
    guard = make_guard(test_flask.POLICY)
    guard.accept_terms("alice", "v1")
    app = test_flask.build_app(guard)
    allowed = test_flask.post(app, "/v1/chat", "alice")
    assert allowed.status_code == 200
    assert params(allowed.headers["RateLimit-Policy"]) == (
        "default", {"q": "5", "w": "60", "pk": partition_key(guard.hash_user("alice"))})  # fmt: skip
    assert allowed.headers["RateLimit-Limit"] == "5"  # legacy_headers defaults to true for this release
    for _ in range(4):
        test_flask.post(app, "/v1/chat", "alice")
    limited = test_flask.post(app, "/v1/chat", "alice")
    assert limited.status_code == 429 and params(limited.headers["RateLimit"])[1]["r"] == "0"
    assert "w" in params(limited.headers["RateLimit-Policy"])[1] and limited.headers["Retry-After"]


@pytest.fixture
def gw(make_guard: MakeGuard, messages_double: MessagesDouble) -> Iterator[Gateway]:
    yield from start(make_guard, messages_double)


def test_the_gateway_passes_the_upstreams_rate_limit_headers_on(gw: Gateway) -> None:
    upstream = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-tokens-reset": "2026-12-02T06:00:00Z",
        "x-upstream-internal": "secret",
    }
    gw.double.messages.push(Reply(text="fine", headers=upstream))
    raw = gw.client().messages.with_raw_response.create(**ASK)  # type: ignore[arg-type]
    for name, value in upstream.items():
        if name.startswith("anthropic-ratelimit-"):
            assert raw.headers[name] == value
    assert "x-upstream-internal" not in raw.headers  # only what is named passes
    assert params(raw.headers["ratelimit"])[0] == "default"  # aupguard's own limits too
    gw.double.messages.error(429, headers={"retry-after": "9", "anthropic-ratelimit-requests-remaining": "0"})
    with pytest.raises(anthropic.RateLimitError) as info:
        gw.client().messages.create(**ASK)  # type: ignore[arg-type]
    assert info.value.response.headers["retry-after"] == "9"
    assert info.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"


# -- identify raising an HTTP exception ------------------------------------------------------


def test_asgi_identify_raising_http_exception_answers_its_status(guard_with_terms: Safeguards) -> None:
    def identify(request: Request) -> str:
        if request.headers.get("authorization") != "Bearer good":
            raise StarletteHTTPException(401, "Invalid or expired token.", headers={"WWW-Authenticate": "Bearer"})
        return "alice"

    app = test_asgi.build_app(guard_with_terms, test_asgi.Probe(), identify=identify, user_header=None)
    with TestClient(app) as client:
        refused = client.post("/v1/chat", json={"prompt": "hello"}, headers={"authorization": "Bearer bad"})
        ok = client.post("/v1/chat", json={"prompt": "hello"}, headers={"authorization": "Bearer good"})
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.json() == {"type": "error", "error": {"type": "authentication_required",
                                                         "message": "Invalid or expired token."}}  # fmt: skip
    (record,) = guard_with_terms.audit.find(request_id=refused.headers["aupguard-request-id"])
    assert record.outcome == "authentication_required"
    assert ok.status_code == 200


def test_flask_identify_raising_http_exception_answers_its_status(guard_with_terms: Safeguards) -> None:
    def identify() -> str:
        abort(403)

    app = test_flask.build_app(guard_with_terms, identify=identify)
    refused = test_flask.post(app, "/v1/chat", "alice")
    assert refused.status_code == 403 and refused.get_json()["error"]["type"] == "permission_error"
    assert guard_with_terms.audit.find(request_id=refused.headers["Aupguard-Request-Id"])


@pytest.fixture
def guard_with_terms(make_guard: MakeGuard) -> Safeguards:
    guard = make_guard(test_asgi.POLICY)
    guard.accept_terms("alice", "v1")
    return guard

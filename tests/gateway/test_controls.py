"""``[gateway]`` operator controls: what a caller may ask of the operator's account. Each
control refuses what it should (403 ``permission_error`` or 400, naming the field and the
policy key, recorded, nothing forwarded) and passes what it should."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aupguard import Policy, PolicyError
from aupguard.gateway.controls import check_body
from aupguard.testing import MessagesDouble
from tests.conftest import MakeGuard
from tests.integrations.aupguard_gateway.test_app import ASK, Gateway, start

WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
CODE = {"type": "code_execution_20250825", "name": "code_execution"}
CUSTOM = {"name": "get_weather", "description": "weather", "input_schema": {"type": "object"}}
MCP = {"type": "url", "url": "https://mcp.example.com/sse", "name": "example"}
FILE_BLOCK = {"type": "document", "source": {"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}}


def with_content(*blocks: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": "Summarise this."}, *blocks]}]


def post(gw: Gateway, body: dict[str, Any], beta: str | None = None) -> httpx.Response:
    headers = {"x-api-key": gw.key, **({"anthropic-beta": beta} if beta else {})}
    return httpx.post(f"{gw.url}/v1/messages", json=body, headers=headers, timeout=10)


@pytest.fixture
def gw(make_guard: MakeGuard, messages_double: MessagesDouble) -> Iterator[Gateway]:
    yield from start(make_guard, messages_double)


REFUSED_BY_DEFAULT = [
    ({**ASK, "container": "container_011CNha8"}, None, "'container'", "passthrough_fields"),
    ({**ASK, "documents": ["doc-1"]}, None, "'documents'", "passthrough_fields"),
    ({**ASK, "tools": [WEB_SEARCH]}, None, "'web_search_20250305' (tools[0])", "server_tools"),
    ({**ASK, "tools": [CUSTOM, CODE]}, None, "tools[1]", "server_tools"),
    ({**ASK, "tools": [{**CUSTOM, "type": "bash_20250124"}]}, None, "bash_20250124", "server_tools"),
    ({**ASK, "mcp_servers": [MCP]}, None, "mcp_servers[0]", "mcp_servers"),
    ({**ASK, "messages": with_content(FILE_BLOCK)}, None, "messages[0].content[1].source", "files"),
    ({**ASK, "messages": with_content({"type": "container_upload", "file_id": "file_1"})}, None, "file id",
     "files"),
    (ASK, "files-api-2025-04-14", "'files-api-2025-04-14'", "betas"),
    (ASK, "interleaved-thinking-2025-05-14, mcp-client-2025-04-04", "'mcp-client-2025-04-04'", "betas"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "beta", "named", "key"), REFUSED_BY_DEFAULT)
def test_what_reaches_the_operators_resources_is_refused_by_default(
    gw: Gateway, body: dict[str, Any], beta: str | None, named: str, key: str
) -> None:
    response = post(gw, body, beta)
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["type"] == "permission_error" and named in error["message"] and f"[gateway] {key}" in error["message"]
    assert gw.double.requests == []  # nothing forwarded
    (record,) = gw.guard.audit.find(request_id=response.headers["aupguard-request-id"])
    assert (record.outcome, record.status, record.user_hash) == ("permission_error", 403, gw.guard.hash_user("alice"))


@pytest.mark.parametrize(
    "body",
    [ASK, {**ASK, "tools": [CUSTOM, {**CUSTOM, "type": "custom", "name": "other"}]},
     {**ASK, "model": "claude-opus-4-1", "max_tokens": 64_000, "temperature": 0.2, "stream": False,
      "system": [{"type": "text", "text": "Be brief."}], "stop_sequences": ["END"], "metadata": {}}],
)  # fmt: skip
def test_plain_messages_calls_pass_by_default(gw: Gateway, body: dict[str, Any]) -> None:
    response = post(gw, body, "token-efficient-tools-2025-02-19,interleaved-thinking-2025-05-14")
    assert response.status_code == 200, response.text
    assert len(gw.double.requests) == 1


CONFIGURED = {"gateway": {
    "models": ["claude-haiku-*", "claude-sonnet-4-5"], "max_tokens": 1000,
    "server_tools": ["web_search_*"], "mcp_servers": [MCP["url"]], "betas": ["mcp-client-*"],
    "passthrough_fields": ["container"], "files": True,
}}  # fmt: skip


@pytest.fixture
def configured(make_guard: MakeGuard, messages_double: MessagesDouble) -> Iterator[Gateway]:
    yield from start(make_guard, messages_double, CONFIGURED)


@pytest.mark.parametrize(
    ("body", "beta"),
    [({**ASK, "model": "claude-haiku-4-5", "max_tokens": 1000}, None),
     ({**ASK, "model": "claude-sonnet-4-5", "tools": [WEB_SEARCH, CUSTOM]}, None),
     ({**ASK, "mcp_servers": [MCP], "container": "container_1", "messages": with_content(FILE_BLOCK)},
      "mcp-client-2025-04-04")],
)  # fmt: skip
def test_what_the_operator_allows_passes(configured: Gateway, body: dict[str, Any], beta: str | None) -> None:
    response = post(configured, body, beta)
    assert response.status_code == 200, response.text
    (sent,) = configured.double.requests
    assert {k: v for k, v in sent.body.items() if k != "metadata"} == {k: v for k, v in body.items() if k != "metadata"}


@pytest.mark.parametrize(
    ("body", "beta", "status", "named"),
    [({**ASK, "model": "claude-opus-4-1"}, None, 403, "[gateway] models"),
     ({**ASK, "model": "claude-sonnet-4-5-x"}, None, 403, "[gateway] models"),
     ({**ASK, "model": ["claude-haiku-4-5"]}, None, 400, "model must be a string"),
     ({**ASK, "max_tokens": 1001}, None, 400, "[gateway] max_tokens"),
     ({**ASK, "max_tokens": 10**50}, None, 400, "[gateway] max_tokens"),
     ({**ASK, "max_tokens": 100.0}, None, 400, "max_tokens must be an integer"),
     ({**ASK, "tools": [CODE]}, None, 403, "[gateway] server_tools"),
     ({**ASK, "tools": {"type": "web_search_20250305"}}, None, 400, "tools must be a list"),
     ({**ASK, "mcp_servers": [{**MCP, "url": "https://mcp.example.com/sse/other"}]}, None, 403,
      "[gateway] mcp_servers"),
     ({**ASK, "documents": ["d"]}, None, 403, "[gateway] passthrough_fields"),
     (ASK, "files-api-2025-04-14", 403, "[gateway] betas")],
)  # fmt: skip
def test_what_the_operator_does_not_allow_is_refused(
    configured: Gateway, body: dict[str, Any], beta: str | None, status: int, named: str
) -> None:
    response = post(configured, body, beta)
    assert response.status_code == status, response.text
    assert named in response.json()["error"]["message"]
    assert configured.double.requests == []


def test_a_file_id_deep_in_a_body_is_found_without_recursion() -> None:
    policy = Policy.from_mapping({}, env={}).gateway
    nested: Any = {"type": "file", "file_id": "file_1"}
    for _ in range(50_000):  # far deeper than Python's recursion limit
        nested = [nested]
    refused = check_body({**ASK, "messages": [{"role": "user", "content": nested}]}, policy)
    assert refused is not None and refused.error == "permission_error" and "[gateway] files" in refused.message
    assert len(refused.message) < 400  # the path in the message is cut


@pytest.mark.parametrize(
    ("table", "key"),
    [({"models": []}, "gateway.models"), ({"models": "claude-*"}, "gateway.models"),
     ({"max_tokens": 0}, "gateway.max_tokens"), ({"mcp_servers": ["mcp.example.com"]}, "gateway.mcp_servers"),
     ({"passthrough_fields": ["not a name"]}, "gateway.passthrough_fields"), ({"files": "yes"}, "gateway.files"),
     ({"bad_key_limit": "lots"}, "gateway.bad_key_limit"), ({"body_timeout": 0}, "gateway.body_timeout")],
)  # fmt: skip
def test_bad_controls_are_refused_at_load_naming_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(PolicyError, match=key.replace(".", r"\.")):
        Policy.from_mapping({"gateway": table}, env={})

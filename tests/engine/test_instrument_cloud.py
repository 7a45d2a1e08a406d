"""``guard.instrument()`` with the real ``AnthropicBedrock`` / ``AsyncAnthropicBedrock`` /
``AnthropicVertex`` / ``AsyncAnthropicVertex`` against local doubles of their HTTP APIs:
only the hashed ``metadata.user_id`` goes out (Bedrock refuses any other key), the
platforms' request ids and message ids are linked, streams too, and the one answer recorder
counts, captures and handles refusals as for Anthropic's own API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest

from aupguard import Refused, Safeguards, generate_key_entry
from tests.conftest import MakeGuard
from tests.support.cloud_doubles import BedrockDouble, VertexDouble

BEDROCK_MODEL = "anthropic.claude-sonnet-5-5-v1:0"
VERTEX_MODEL = "claude-sonnet-5-5@20261001"
BUDGET = 100_000


@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch) -> Iterator[BedrockDouble]:
    """The double, and fake AWS credentials in the environment (the SDK signs with SigV4)."""
    for name, value in (("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST"), ("AWS_SECRET_ACCESS_KEY", "test-secret")):
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    double = BedrockDouble().start()
    yield double
    double.stop()


@pytest.fixture
def vertex() -> Iterator[VertexDouble]:
    double = VertexDouble().start()
    yield double
    double.stop()


@pytest.fixture
def guard(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch) -> Safeguards:
    monkeypatch.setenv("TEST_CAPTURE_KEY", generate_key_entry("c1"))
    return make_guard({"limits": {"tokens": f"{BUDGET}/day"}, "moderation": {"refusals": "strike"},
                       "capture": {"enabled": True, "key_env": "TEST_CAPTURE_KEY"}})  # fmt: skip


Double = BedrockDouble | VertexDouble


def clients(double: Double) -> tuple[Any, Callable[[], Any], str]:
    """(a sync client, a factory of async clients, the model)."""
    if isinstance(double, BedrockDouble):
        options: dict[str, Any] = {"aws_region": "us-east-1", "base_url": double.url, "max_retries": 0}
        return (anthropic.AnthropicBedrock(**options), lambda: anthropic.AsyncAnthropicBedrock(**options),
                BEDROCK_MODEL)  # fmt: skip
    options = {"region": "us-east5", "project_id": "proj-1", "access_token": double.access_token,
               "base_url": double.url + "/v1", "max_retries": 0}  # fmt: skip
    return (anthropic.AnthropicVertex(**options), lambda: anthropic.AsyncAnthropicVertex(**options),
            VERTEX_MODEL)  # fmt: skip


def every_call(guard: Safeguards, double: Double) -> Iterator[tuple[str, Callable[[], Any]]]:
    """Each way of calling: sync and async, whole and streamed; each returns the final message."""
    sync, make_async, model = clients(double)
    client = guard.instrument(sync)
    ask: dict[str, Any] = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}],
                           "metadata": {"user_id": "raw-id-of-the-app", "session": "s-1"}}  # fmt: skip

    def sync_stream() -> Any:
        with client.messages.stream(**ask) as stream:
            return stream.get_final_message()

    async def async_call(streamed: bool) -> Any:
        aclient = guard.instrument(make_async())
        if not streamed:
            return await aclient.messages.create(**ask)
        async with aclient.messages.stream(**ask) as stream:
            return await stream.get_final_message()

    yield "sync", lambda: client.messages.create(**ask)
    yield "sync-stream", sync_stream
    yield "async", lambda: asyncio.run(async_call(False))
    yield "async-stream", lambda: asyncio.run(async_call(True))


@pytest.mark.parametrize("platform", ["bedrock", "vertex"])
def test_calls_carry_only_the_hash_and_are_linked_counted_and_captured(
    guard: Safeguards, request: pytest.FixtureRequest, platform: str
) -> None:
    double: Double = request.getfixturevalue(platform)
    for way, call in every_call(guard, double):
        user = f"{platform}-{way}"
        double.messages.text(f"answer by {way}")
        with guard.as_user(user):
            message = call()
        sent = double.requests[-1]
        # the platform accepts only user_id in metadata: the hash, nothing else, never the raw id
        assert sent.body["metadata"] == {"user_id": guard.hash_user(user)}, way
        assert b"raw-id-of-the-app" not in sent.raw and user.encode() not in sent.raw
        (record,) = guard.audit.find(user_id=user)
        # the platform's own request id: Bedrock's x-amzn-requestid (a UUID), Vertex's request-id
        assert record.anthropic_request_id == sent.request_id, way
        assert guard.audit.find(anthropic_request_id=sent.request_id)[0].request_id == record.request_id
        assert (record.message_id, record.model) == (message.id, message.model), way
        assert (record.input_tokens, record.output_tokens) == (message.usage.input_tokens,
                                                               message.usage.output_tokens), way  # fmt: skip
        left = guard.counters.tokens_left(guard.hash_user(user))
        assert left is not None and left.remaining == BUDGET - record.input_tokens - record.output_tokens
        completions = [c.text for c in guard.capture.export(user_id=user) if c.kind == "completion"]
        assert completions == [f"answer by {way}"], way


@pytest.mark.parametrize("platform", ["bedrock", "vertex"])
def test_a_refusal_from_claude_on_the_platform_is_a_safety_signal(
    guard: Safeguards, request: pytest.FixtureRequest, platform: str
) -> None:
    double: Double = request.getfixturevalue(platform)
    for way, call in every_call(guard, double):
        user = f"{platform}-{way}"
        double.messages.refusal(category="cyber")
        with guard.as_user(user):
            assert call().stop_reason == "refusal"
        assert guard.status(user).strikes == 1, way
        (record,) = guard.audit.find(user_id=user)
        assert "claude_refusal:cyber" in record.reasons
    items = guard.store.review_items()
    assert len(items) == 4 and all(i.categories == ("cyber",) for i in items)


@pytest.mark.parametrize("platform", ["bedrock", "vertex"])
def test_refused_and_anonymous_calls_on_the_platform(
    make_guard: MakeGuard, request: pytest.FixtureRequest, platform: str
) -> None:
    double: Double = request.getfixturevalue(platform)
    sync, _, model = clients(double)
    guard = make_guard({"identity": {"require_account": False}})
    client = guard.instrument(sync)
    ask: dict[str, Any] = {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}],
                           "metadata": {"user_id": "raw", "tenant": "t"}}  # fmt: skip
    guard.suspend("mallory", reason="fraud")
    with guard.as_user("mallory"), pytest.raises(Refused):
        client.messages.create(**ask)
    assert double.requests == []  # nothing reached the platform
    double.messages.text("anonymous answer")
    client.messages.create(**ask)  # anonymous (allowed by policy): no metadata at all
    (sent,) = double.requests
    assert "metadata" not in sent.body and b"raw" not in sent.raw


def test_instrumenting_keeps_the_platform_client(bedrock: BedrockDouble, vertex: VertexDouble,
                                                  guard: Safeguards) -> None:  # fmt: skip
    for double in (bedrock, vertex):
        sync, make_async, _ = clients(double)
        for client in (sync, make_async()):
            instrumented = guard.instrument(client)
            assert type(instrumented) is type(client)
            assert guard.instrument(instrumented) is instrumented  # once only

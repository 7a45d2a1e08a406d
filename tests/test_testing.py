"""The Messages-API double answers the way the real SDK expects: JSON with the
``request-id`` header, SSE that the SDK's ``messages.stream`` helpers consume (sync and
async), Anthropic's error shape, and an error event mid-stream. Other tests rely on these."""

from __future__ import annotations

import asyncio

import anthropic
import pytest

from aupguard.moderation.claude import DEFAULT_MODEL
from tests.support import MessagesDouble, Reply


def test_double_streams_with_the_sdk_helper(messages_double: MessagesDouble) -> None:
    messages_double.messages.text("Hello from the double, in pieces.", chunk_delay=0.01)
    with (
        messages_double.client() as client,
        client.messages.stream(
            model=DEFAULT_MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.request_id
        assert stream.response.headers["content-type"].startswith("text/event-stream")
    assert len(pieces) > 1 and "".join(pieces) == "Hello from the double, in pieces."
    assert final.id.startswith("msg_") and final.stop_reason == "end_turn" and final.model == DEFAULT_MODEL
    [request] = messages_double.requests
    assert request_id == request.request_id and request_id.startswith("req_")
    assert request.body["stream"] is True


def test_double_streams_to_the_async_sdk(messages_double: MessagesDouble) -> None:
    async def run() -> str:
        async with (
            messages_double.async_client() as client,
            client.messages.stream(
                model=DEFAULT_MODEL, max_tokens=50, messages=[{"role": "user", "content": "x"}]
            ) as s,
        ):
            return "".join([text async for text in s.text_stream])

    assert asyncio.run(run()) == "echo: x"


def test_double_json_answer_carries_the_request_id(messages_double: MessagesDouble) -> None:
    with messages_double.client() as client:
        raw = client.messages.with_raw_response.create(
            model=DEFAULT_MODEL, max_tokens=10, messages=[{"role": "user", "content": "hello"}]
        )
        message = raw.parse()
    [request] = messages_double.requests
    assert raw.headers["request-id"] == message._request_id == request.request_id
    assert message.content[0].type == "text" and message.content[0].text == "echo: hello"


def test_double_errors_have_anthropics_shape(messages_double: MessagesDouble) -> None:
    messages_double.messages.error(529, message="busy")
    with messages_double.client() as client, pytest.raises(anthropic.OverloadedError) as info:
        client.messages.create(model=DEFAULT_MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 529 and info.value.type == "overloaded_error"
    assert info.value.request_id == messages_double.requests[0].request_id


def test_double_can_fail_a_stream_midway(messages_double: MessagesDouble) -> None:
    messages_double.messages.push(Reply(text="partial answer", stream_error="overloaded_error"))
    seen: list[str] = []
    with (
        messages_double.client() as client,
        client.messages.stream(model=DEFAULT_MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}]) as s,
        pytest.raises(anthropic.APIStatusError),
    ):
        seen.extend(s.text_stream)
    assert "".join(seen) == "partial answer"

"""The Bedrock and Vertex AI doubles speak their services' wire formats: the AWS event-stream
framing as botocore reads it (CRCs checked), Bedrock's SigV4 requirement and its 400 for any
``metadata`` key but ``user_id``, Vertex's bearer token, with the real SDK classes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from tests.support.cloud_doubles import BedrockDouble, VertexDouble, bedrock_chunk, event_stream_message

MODEL = "anthropic.claude-sonnet-5-5-v1:0"
ASK = {"model": MODEL, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch) -> Iterator[BedrockDouble]:
    for name, value in (("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST"), ("AWS_SECRET_ACCESS_KEY", "test-secret")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
    double = BedrockDouble().start()
    yield double
    double.stop()


@pytest.fixture
def vertex() -> Iterator[VertexDouble]:
    double = VertexDouble().start()
    yield double
    double.stop()


def test_event_stream_framing_is_what_botocore_reads() -> None:
    event = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "héllo"}}
    buffer = EventStreamBuffer()
    frame = bedrock_chunk(event)
    buffer.add_data(frame[:7])  # a frame split anywhere is read once whole
    assert list(buffer) == []
    buffer.add_data(frame[7:])
    (message,) = list(buffer)
    assert message.headers == {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    assert json.loads(__import__("base64").b64decode(json.loads(message.payload)["bytes"])) == event
    for index in (9, len(frame) - 1):  # the prelude's CRC, then the message's
        broken = bytearray(frame)
        broken[index] ^= 0x01
        with pytest.raises(ChecksumMismatch):
            list(_read(bytes(broken)))
    assert len(event_stream_message({}, b"")) == 16  # prelude (12) + message CRC (4)


def _read(data: bytes) -> Iterator[object]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    yield from buffer


def test_bedrock_answers_the_real_sdk_and_refuses_what_bedrock_refuses(bedrock: BedrockDouble) -> None:
    client = anthropic.AnthropicBedrock(aws_region="us-east-1", base_url=bedrock.url, max_retries=0)
    bedrock.messages.text("from bedrock")
    message = client.messages.create(**ASK)  # type: ignore[arg-type]
    assert message.content[0].text == "from bedrock" and message.id.startswith("msg_bdrk_")  # type: ignore[union-attr]
    (sent,) = bedrock.requests
    assert sent.path == f"/model/{MODEL}/invoke" and "anthropic_version" in sent.body
    assert sent.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTESTTESTTEST/")
    bedrock.messages.text("streamed from bedrock")
    with client.messages.stream(**ASK) as stream:  # type: ignore[arg-type]
        assert "".join(stream.text_stream) == "streamed from bedrock"
    assert bedrock.requests[-1].path == f"/model/{MODEL}/invoke-with-response-stream"
    with pytest.raises(anthropic.BadRequestError, match="extraneous key \\[session\\]"):
        client.messages.create(**ASK, metadata={"user_id": "u", "session": "s"})  # type: ignore[arg-type, typeddict-unknown-key]


def test_vertex_answers_the_real_sdk_with_its_bearer_token(vertex: VertexDouble) -> None:
    client = anthropic.AnthropicVertex(region="us-east5", project_id="proj-1", access_token=vertex.access_token,
                                       base_url=vertex.url + "/v1", max_retries=0)  # fmt: skip
    vertex.messages.text("from vertex")
    message = client.messages.create(**ASK)  # type: ignore[arg-type]
    assert message.content[0].text == "from vertex" and message.id.startswith("msg_vrtx_")  # type: ignore[union-attr]
    (sent,) = vertex.requests
    assert sent.path == f"/v1/projects/proj-1/locations/us-east5/publishers/anthropic/models/{MODEL}:rawPredict"
    vertex.messages.text("streamed from vertex")
    with client.messages.stream(**ASK) as stream:  # type: ignore[arg-type]
        assert "".join(stream.text_stream) == "streamed from vertex"
    assert vertex.requests[-1].path.endswith(":streamRawPredict")
    wrong = anthropic.AnthropicVertex(region="us-east5", project_id="proj-1", access_token="wrong",
                                      base_url=vertex.url + "/v1", max_retries=0)  # fmt: skip
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(**ASK)  # type: ignore[arg-type]

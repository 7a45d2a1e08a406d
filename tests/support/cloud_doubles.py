"""Local test doubles of Claude on Amazon Bedrock and on Google Cloud Vertex AI, for the real
``anthropic.AnthropicBedrock`` / ``AnthropicVertex`` clients (``base_url`` pointed here).

Bedrock (``bedrock-runtime``):

- ``POST /model/{modelId}/invoke``: the Anthropic message as JSON; headers ``x-amzn-requestid``
  (a UUID) and ``x-amzn-bedrock-invocation-latency`` / ``-input-token-count`` /
  ``-output-token-count``;
- ``POST /model/{modelId}/invoke-with-response-stream``: ``application/vnd.amazon.eventstream``,
  AWS event-stream framing (prelude with its CRC32, headers, payload, message CRC32), each
  event a ``chunk`` whose payload is ``{"bytes": base64(<Anthropic stream event JSON>)}``; the
  ``message_stop`` event carries ``amazon-bedrock-invocationMetrics``;
- the request must be SigV4-signed (an ``AWS4-HMAC-SHA256`` authorization for the service
  ``bedrock``), its body has ``anthropic_version`` and no ``model`` / ``stream``; a
  ``metadata`` key other than ``user_id`` is a 400 ``ValidationException`` (as Bedrock answers).

Vertex AI:

- ``POST /v1/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:rawPredict`` (JSON)
  and ``:streamRawPredict`` (SSE, the Messages API's event sequence); ``request-id`` header
  ``req_vrtx_...``, message ids ``msg_vrtx_...``;
- ``Authorization: Bearer <access_token>`` must match the double's ``access_token``; the
  body has ``anthropic_version`` and no ``model``; only ``metadata.user_id`` is accepted.

Both are scripted like the Messages-API double (``double.messages.text(...)``, ``.refusal()``,
``.push(Reply(...))``) and record every request.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aupguard.testing.bodies import message as _message
from aupguard.testing.bodies import sse_events as _sse_events
from aupguard.testing.scripting import RecordedRequest, Reply, Script, echo_reply, new_id
from aupguard.testing.served import ServedDouble

BEDROCK_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<action>invoke|invoke-with-response-stream)$")
VERTEX_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/publishers/anthropic/models/"
    r"(?P<model>[^/]+):(?P<action>rawPredict|streamRawPredict)$"
)


def event_stream_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: total length, headers length, prelude CRC32, headers
    (name length, name, type 7 = string, value length, value), payload, message CRC32."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", 7, len(raw_value)) + raw_value
    total = 4 + 4 + 4 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack("!I", binascii.crc32(message))


def bedrock_chunk(event: Mapping[str, Any]) -> bytes:
    """An Anthropic stream event as Bedrock sends it: a ``chunk`` event of base64 bytes."""
    payload = json.dumps({"bytes": base64.b64encode(json.dumps(event).encode()).decode()}).encode()
    headers = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    return event_stream_message(headers, payload)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest output is for test failures."""

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        headers = {name.lower(): value for name, value in self.headers.items()}
        double = self.server.double
        request = RecordedRequest("POST", path, headers, body, raw, double.new_request_id())
        double.record(request)
        problem = double.problem(request)
        if problem is not None:
            status, payload = problem
            self._send(status, json.dumps(payload).encode(), "application/json", double.error_headers(request, payload))
            return
        reply = double.messages.next_reply(request)
        if reply.status >= 400:
            payload = {"message": reply.error_message}
            self._send(reply.status, json.dumps(payload).encode(), "application/json", double.headers(request))
            return
        message = double.message(request, reply)
        if double.streams(request):
            self._stream(double.stream_body(request, reply, message), double.stream_headers(request))
        else:
            self._send(200, json.dumps(message).encode(), "application/json", double.headers(request, message))

    def _send(self, status: int, data: bytes, content_type: str, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, chunks: list[bytes], headers: Mapping[str, str]) -> None:
        self.send_response(200)
        self.send_header("transfer-encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(b"%X\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, double: _CloudDouble) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.double = double


class _CloudDouble(ServedDouble):
    """What both doubles share: the server, the script of answers, the record."""

    message_prefix = "msg_"

    def __init__(self) -> None:
        super().__init__()
        self.messages = Script(echo_reply)

    def make_server(self) -> _Server:
        return _Server(self)

    def message(self, request: RecordedRequest, reply: Reply) -> dict[str, Any]:
        message = _message(request, reply)
        message["id"] = new_id(self.message_prefix)
        message["model"] = self.model_of(request)
        return message

    def events(self, request: RecordedRequest, reply: Reply, message: dict[str, Any]) -> list[dict[str, Any]]:
        """The Messages API's event sequence for ``message`` (its id and model kept)."""
        events = [data for _, data in _sse_events(request, reply)]
        events[0]["message"] |= {"id": message["id"], "model": message["model"]}
        return events

    @staticmethod
    def body_problem(request: RecordedRequest) -> str | None:
        body = request.body
        if not isinstance(body, dict):
            return "The request body must be JSON."
        if "anthropic_version" not in body:
            return "anthropic_version is required"
        if "model" in body:
            return "#: extraneous key [model] is not permitted"
        metadata = body.get("metadata", {})
        extra = sorted(set(metadata) - {"user_id"}) if isinstance(metadata, dict) else ["metadata"]
        if extra:
            return f"#/metadata: extraneous key [{extra[0]}] is not permitted"
        return None

    # what each platform fills in
    def new_request_id(self) -> str:
        raise NotImplementedError

    def model_of(self, request: RecordedRequest) -> str:
        raise NotImplementedError

    def problem(self, request: RecordedRequest) -> tuple[int, dict[str, Any]] | None:
        raise NotImplementedError

    def streams(self, request: RecordedRequest) -> bool:
        raise NotImplementedError

    def headers(self, request: RecordedRequest, message: Mapping[str, Any] | None = None) -> dict[str, str]:
        raise NotImplementedError

    def error_headers(self, request: RecordedRequest, payload: Mapping[str, Any]) -> dict[str, str]:
        return self.headers(request)

    def stream_headers(self, request: RecordedRequest) -> dict[str, str]:
        raise NotImplementedError

    def stream_body(self, request: RecordedRequest, reply: Reply, message: dict[str, Any]) -> list[bytes]:
        raise NotImplementedError


class BedrockDouble(_CloudDouble):
    """Claude on Amazon Bedrock's runtime API. ``requests[i].path`` is ``/model/{id}/invoke...``."""

    message_prefix = "msg_bdrk_"

    def new_request_id(self) -> str:
        return str(uuid.uuid4())

    def model_of(self, request: RecordedRequest) -> str:
        found = BEDROCK_PATH.match(request.path)
        return found["model"] if found else "unknown"

    def streams(self, request: RecordedRequest) -> bool:
        found = BEDROCK_PATH.match(request.path)
        return found is not None and found["action"] == "invoke-with-response-stream"

    def problem(self, request: RecordedRequest) -> tuple[int, dict[str, Any]] | None:
        if BEDROCK_PATH.match(request.path) is None:
            return 404, {"message": f"No route for {request.path}"}
        authorization = request.headers.get("authorization", "")
        if not re.match(r"AWS4-HMAC-SHA256 Credential=\w+/\d{8}/[\w-]+/bedrock/aws4_request, ", authorization):
            return 403, {"message": "Missing Authentication Token"}
        problem = self.body_problem(request)
        if problem is not None:
            return 400, {"message": f"Malformed input request: {problem}, please reformat your input and try again."}
        return None

    def headers(self, request: RecordedRequest, message: Mapping[str, Any] | None = None) -> dict[str, str]:
        headers = {"x-amzn-requestid": request.request_id}
        if message is not None:
            usage = message["usage"]
            headers |= {"x-amzn-bedrock-invocation-latency": "321",
                        "x-amzn-bedrock-input-token-count": str(usage["input_tokens"]),
                        "x-amzn-bedrock-output-token-count": str(usage["output_tokens"])}  # fmt: skip
        return headers

    def error_headers(self, request: RecordedRequest, payload: Mapping[str, Any]) -> dict[str, str]:
        kind = "ValidationException" if str(payload.get("message", "")).startswith("Malformed") else "AccessDenied"
        return {
            **self.headers(request),
            "x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        }

    def stream_headers(self, request: RecordedRequest) -> dict[str, str]:
        return {"content-type": "application/vnd.amazon.eventstream", "x-amzn-bedrock-content-type": "application/json",
                **self.headers(request)}  # fmt: skip

    def stream_body(self, request: RecordedRequest, reply: Reply, message: dict[str, Any]) -> list[bytes]:
        events = self.events(request, reply, message)
        usage = message["usage"]
        events[-1]["amazon-bedrock-invocationMetrics"] = {
            "inputTokenCount": usage["input_tokens"], "outputTokenCount": usage["output_tokens"],
            "invocationLatency": 321, "firstByteLatency": 123,
        }  # fmt: skip
        return [bedrock_chunk(event) for event in events if event["type"] != "ping"]


class VertexDouble(_CloudDouble):
    """Claude on Vertex AI. The SDK's ``base_url`` is ``double.url + "/v1"``."""

    message_prefix = "msg_vrtx_"

    def __init__(self, access_token: str = "vertex-test-token") -> None:  # noqa: S107 - a test token
        super().__init__()
        self.access_token = access_token

    def new_request_id(self) -> str:
        return new_id("req_vrtx_")

    def model_of(self, request: RecordedRequest) -> str:
        found = VERTEX_PATH.match(request.path)
        return found["model"] if found else "unknown"

    def streams(self, request: RecordedRequest) -> bool:
        found = VERTEX_PATH.match(request.path)
        return found is not None and found["action"] == "streamRawPredict"

    def problem(self, request: RecordedRequest) -> tuple[int, dict[str, Any]] | None:
        if VERTEX_PATH.match(request.path) is None:
            return 404, _vertex_error(404, "NOT_FOUND", f"{request.path} was not found")
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return 401, _vertex_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        problem = self.body_problem(request)
        if problem is not None:
            return 400, {"type": "error", "error": {"type": "invalid_request_error", "message": problem},
                         "request_id": request.request_id}  # fmt: skip
        return None

    def headers(self, request: RecordedRequest, message: Mapping[str, Any] | None = None) -> dict[str, str]:
        return {"request-id": request.request_id}

    def stream_headers(self, request: RecordedRequest) -> dict[str, str]:
        return {"content-type": "text/event-stream; charset=utf-8", **self.headers(request)}

    def stream_body(self, request: RecordedRequest, reply: Reply, message: dict[str, Any]) -> list[bytes]:
        return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in self.events(request, reply, message)]


def _vertex_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}

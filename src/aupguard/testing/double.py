"""A local test double of Anthropic's Messages API, plus OpenAI-shaped ``/v1/moderations`` and
``/v1/chat/completions`` (the shape vLLM, Ollama, TGI and LM Studio serve guard models in).

Why a real HTTP server on 127.0.0.1 rather than a mock: the code under test uses the real
``anthropic`` SDK and real ``httpx``, so the double has to speak HTTP the way the services
do (JSON bodies, SSE with the real event sequence, the ``request-id`` header, Anthropic's
error shape, ``retry-after-ms``) for the SDK's own parsing, streaming helpers, retries and
timeouts to run exactly as they do in production.

Scripting (see :mod:`aupguard.testing.scripting`): each endpoint has a :class:`Script`. Tests
queue :class:`Reply` objects, served in order; when the queue is empty the script's
``responder`` answers (by default an echo for Messages, a clean verdict for moderations, ``safe`` for chat).
Every request is recorded before it is answered.
Delays wait on an event that :meth:`MessagesDouble.stop` sets, so a test that provoked a
client timeout never waits for the scripted delay at teardown.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic

from aupguard.testing.bodies import chat_completion, message, sse_events
from aupguard.testing.scripting import (
    ANTHROPIC_ERRORS,
    CHAT_PATH,
    COUNT_TOKENS_PATH,
    MESSAGES_PATH,
    MODERATIONS_PATH,
    OPENAI_ERRORS,
    RecordedRequest,
    Reply,
    Script,
    chat_reply,
    count_reply,
    echo_reply,
    new_id,
    verdict_reply,
)
from aupguard.testing.served import ServedDouble


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for JSON, chunked transfer for SSE, as the real API
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest output is for test failures."""

    def setup(self) -> None:
        super().setup()
        # as production servers do: without it, a status line and a body written apart wait on
        # Nagle's algorithm for the client's delayed ACK (40 ms on Linux)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):  # a client dropped its keep-alive connection: normal
            self.close_connection = True

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = RecordedRequest(self.command, path, headers, body, raw, new_id("req_"))
        double = self.server.double
        double.record(request)
        scripts = {MESSAGES_PATH: double.messages, COUNT_TOKENS_PATH: double.count_tokens}
        script = {**scripts, MODERATIONS_PATH: double.moderations, CHAT_PATH: double.chat}.get(path)
        if script is None or self.command != "POST":
            reply = Reply(404, error_type="not_found_error", error_message=f"{self.command} {path} not found")
        else:
            reply = script.next_reply(request)
        if reply.delay and double.stopping.wait(reply.delay):
            self.close_connection = True
            return
        try:
            self._answer(request, reply, openai=path in (MODERATIONS_PATH, CHAT_PATH))
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            self.close_connection = True

    def _answer(self, request: RecordedRequest, reply: Reply, *, openai: bool) -> None:
        headers = {"request-id": request.request_id, **reply.headers}
        if openai:
            headers["x-request-id"] = request.request_id
        if reply.raw is not None:
            self._send(reply.status, reply.raw, reply.content_type, headers)
        elif reply.status >= 400 and reply.payload is None:
            self._send_json(reply.status, self._error_body(request, reply, openai=openai), headers)
        elif reply.payload is not None:
            payload = reply.payload
            if request.path == MODERATIONS_PATH and isinstance(payload, dict):
                model = request.body.get("model") if isinstance(request.body, dict) else None
                payload = {"id": new_id("modr-"), "model": model or "omni-moderation-latest"} | payload
            self._send_json(reply.status, payload, headers)
        elif request.path == CHAT_PATH:
            self._send_json(reply.status, chat_completion(request, reply), headers)
        elif isinstance(request.body, dict) and request.body.get("stream"):
            self._stream(request, reply, headers)
        else:
            self._send_json(reply.status, message(request, reply), headers)

    @staticmethod
    def _error_body(request: RecordedRequest, reply: Reply, *, openai: bool) -> dict[str, Any]:
        if openai:
            kind = reply.error_type or OPENAI_ERRORS.get(reply.status, "server_error")
            return {"error": {"message": reply.error_message, "type": kind, "param": None, "code": None}}
        kind = reply.error_type or ANTHROPIC_ERRORS.get(reply.status, "api_error")
        error = {"type": kind, "message": reply.error_message}
        return {"type": "error", "error": error, "request_id": request.request_id}

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, content_type: str, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, request: RecordedRequest, reply: Reply, headers: Mapping[str, str]) -> None:
        self.send_response(reply.status)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        events = sse_events(request, reply)
        for index, (event, data) in enumerate(events):
            if index and reply.chunk_delay and self.server.double.stopping.wait(reply.chunk_delay):
                self.close_connection = True
                return
            if reply.hold is not None and index == len(events) - 1 and not self._held(reply.hold):
                self.close_connection = True
                return
            chunk = f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
            self.wfile.write(b"%X\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def _held(self, hold: threading.Event) -> bool:
        """Wait for ``hold``; False (and ``client_gone`` set) if the client closed meanwhile."""
        double = self.server.double
        while not hold.wait(0.01):
            if double.stopping.is_set():
                return False
            readable, _, _ = select.select([self.connection], [], [], 0)
            if readable:
                try:
                    closed = self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    closed = True
                if closed:
                    double.client_gone.set()
                    return False
        return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, double: MessagesDouble) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.double = double
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(connection)

    def drop_connections(self) -> None:
        """Wake handler threads parked on idle keep-alive connections, so stop() is prompt."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class MessagesDouble(ServedDouble):
    """The double: ``start()`` binds a free port on 127.0.0.1; ``url`` is the SDK's ``base_url``;
    ``messages`` and ``moderations`` are the scripts; ``requests`` is the record."""

    def __init__(self) -> None:
        super().__init__()
        self.messages = Script(echo_reply)
        self.moderations = Script(lambda request: verdict_reply(False))
        self.count_tokens = Script(count_reply)
        self.chat = Script(lambda request: chat_reply("safe"))
        self.stopping = threading.Event()
        self.client_gone = threading.Event()  # a held stream found its client gone

    def make_server(self) -> _Server:
        return _Server(self)

    def stop(self) -> None:
        self.stopping.set()  # held streams end
        super().stop()

    def after_shutdown(self) -> None:
        self._server.drop_connections()

    @property
    def moderations_url(self) -> str:
        return self.url + MODERATIONS_PATH

    @property
    def chat_url(self) -> str:
        return self.url + CHAT_PATH

    def client(self, **options: Any) -> anthropic.Anthropic:
        """The SDK client the tests use: real SDK, this double, no SDK retries unless asked."""
        return anthropic.Anthropic(**self._client_options(options))

    def async_client(self, **options: Any) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(**self._client_options(options))

    def _client_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        defaults: dict[str, Any] = {"api_key": "test-key", "base_url": self.url, "max_retries": 0}
        return defaults | dict(options)

    def reset(self) -> None:
        """Forget the record and every scripted reply (the server keeps running)."""
        with self._lock:
            self._requests.clear()
        self.messages.reset()
        self.moderations.reset()
        self.count_tokens.reset()
        self.chat.reset()

"""Scripting and record types of the test double: what a test queues (:class:`Reply`,
:class:`Script`) and what the double received (:class:`RecordedRequest`).

Kept apart from the HTTP server so a test reads like a script: ``double.messages.text(...)``,
``double.messages.error(529)``, ``double.moderations.verdict(True, ["violence"])``.
"""

from __future__ import annotations

import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
MODERATIONS_PATH = "/v1/moderations"
CHAT_PATH = "/v1/chat/completions"
OPENAI_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}
ANTHROPIC_ERRORS |= {
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
OPENAI_ERRORS = {400: "invalid_request_error", 401: "invalid_request_error", 429: "rate_limit_exceeded"}


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """What the double received. ``headers`` have lower-cased names; ``body`` is the parsed
    JSON (None when the body was not JSON); ``request_id`` is the id the double answered with."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    raw: bytes
    request_id: str

    @property
    def user_text(self) -> str:
        """The text of the last user message of a Messages request ('' when there is none)."""
        messages = self.body.get("messages") if isinstance(self.body, dict) else None
        for message in reversed(messages or []):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                blocks = content if isinstance(content, list) else []
                return "".join(
                    str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text"
                )
        return ""


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer. For Messages, ``text`` becomes a message (JSON, or SSE when the
        request has ``"stream": true``); ``payload`` is sent as the JSON body as-is; ``raw`` bytes
        are sent as-is (garbage bodies). A status >= 400 without payload/raw gets the endpoint's
        error shape with ``error_type``. ``delay`` is waited before the status line (longer than
        a client's timeout makes a timeout); ``chunk_delay`` between SSE events; ``stream_error``
        ends an SSE stream with an ``error`` event of that type after the text; ``hold`` keeps
        an SSE stream's last event back until the event is set (or the client goes away).
    For chat completions, ``text`` is the assistant message's content and ``top_logprobs``
    (token → logprob) the alternatives of its first token, sent when the request asks for
    ``logprobs`` as a real server does."""

    status: int = 200
    text: str = ""
    stop_reason: str = "end_turn"
    refusal_category: str | None = None
    payload: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"
    error_type: str | None = None
    error_message: str = "scripted error"
    delay: float = 0.0
    chunk_delay: float = 0.0
    stream_error: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None
    top_logprobs: Mapping[str, float] | None = None


def verdict_reply(
    flagged: bool,
    categories: Iterable[str] = (),
    scores: Mapping[str, float] | None = None,
    *,
    delay: float = 0.0,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """An OpenAI moderation answer: every known category present, the given ones true."""
    hit = set(categories)
    names = [*OPENAI_CATEGORIES, *sorted(hit - set(OPENAI_CATEGORIES))]
    names += sorted(set(scores or {}) - set(names))
    all_scores = {name: 0.9 if name in hit else 0.01 for name in names} | dict(scores or {})
    result = {"flagged": flagged, "categories": {n: n in hit for n in names}, "category_scores": all_scores}
    return Reply(payload={"results": [result]}, delay=delay, headers=dict(headers or {}))


def chat_reply(content: str, *, top_logprobs: Mapping[str, float] | None = None, delay: float = 0.0) -> Reply:
    """A chat-completions answer whose message content is ``content``."""
    return Reply(text=content, top_logprobs=dict(top_logprobs) if top_logprobs else None, delay=delay)


def count_reply(request: RecordedRequest) -> Reply:
    return Reply(payload={"input_tokens": len(request.raw) // 4 + 1})


def echo_reply(request: RecordedRequest) -> Reply:
    return Reply(text=f"echo: {request.user_text}")


class Script:
    """The answers of one endpoint: a FIFO of replies, then ``responder`` when it is empty.
    ``responder`` may be replaced (e.g. an answer that depends on the request, or a default delay)."""

    def __init__(self, default: Callable[[RecordedRequest], Reply]) -> None:
        self._default = default
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.responder = default

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def text(
        self,
        text: str,
        *,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        stop_reason: str = "end_turn",
        hold: threading.Event | None = None,
    ) -> None:
        self.push(Reply(text=text, delay=delay, chunk_delay=chunk_delay, stop_reason=stop_reason, hold=hold))

    def refusal(self, text: str = "", *, category: str | None = "general_harms") -> None:
        self.push(Reply(text=text, stop_reason="refusal", refusal_category=category))

    def error(
        self,
        status: int,
        error_type: str | None = None,
        *,
        message: str = "scripted error",
        delay: float = 0.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.push(Reply(status, error_type=error_type, error_message=message, delay=delay, headers=dict(headers or {})))

    def raw(self, body: bytes, *, status: int = 200, content_type: str = "application/json") -> None:
        self.push(Reply(status, raw=body, content_type=content_type))

    def answer(self, content: str, *, top_logprobs: Mapping[str, float] | None = None, delay: float = 0.0) -> None:
        self.push(chat_reply(content, top_logprobs=top_logprobs, delay=delay))

    def verdict(
        self, flagged: bool, categories: Iterable[str] = (), scores: Mapping[str, float] | None = None, **kw: Any
    ) -> None:
        self.push(verdict_reply(flagged, categories, scores, **kw))

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
        self.responder = self._default

    def next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return self.responder(request)

"""What a Claude answer says, read once for every way an answer arrives.

:class:`AnswerFacts` collects the message id, model, token usage, text and stop reason of
one answer: from the SDK's stream events and messages (the instrumented client, Bedrock and
Vertex included), from the JSON of raw SSE events or of a whole message (the gateway), or
set field by field (the LangChain callback). :mod:`aupguard.engine.answers` then decides
and does what the answer means for the guarded call, the same way for all of them.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

__all__ = ["REQUEST_ID_HEADERS", "AnswerFacts", "as_namespace", "request_id_of"]

#: Response headers that name the upstream's request, in the order they are looked for:
#: Anthropic's own (also what Claude on Vertex AI sends, ``req_vrtx_...``), then Amazon
#: Bedrock's (``x-amzn-requestid``, a UUID).
REQUEST_ID_HEADERS = ("request-id", "x-amzn-requestid")


def request_id_of(headers: Any) -> str | None:
    """The upstream's request id from response ``headers`` (case-insensitive, as httpx's)."""
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return str(value)
    return None


class AnswerFacts:
    def __init__(self) -> None:
        self.message_id: str | None = None
        self.model: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.text: list[str] = []
        self.other: list[str] = []  # thinking and tool-use input: not the answer's text, still moderated
        self.stop_reason: str | None = None
        self.stop_details: Any = None

    def see(self, event: Any) -> None:
        """One event of the SDK's stream (objects with attributes)."""
        kind = getattr(event, "type", None)
        if kind == "message_start":
            message = event.message
            self.message_id = getattr(message, "id", None)
            self.model = getattr(message, "model", None)
            self.input_tokens = getattr(getattr(message, "usage", None), "input_tokens", 0) or 0
        elif kind == "message_delta":  # the running totals of tokens, and how it stopped
            usage = getattr(event, "usage", None)
            self.input_tokens = getattr(usage, "input_tokens", None) or self.input_tokens
            self.output_tokens = getattr(usage, "output_tokens", 0) or 0
            delta = getattr(event, "delta", None)
            self.stop_reason = getattr(delta, "stop_reason", None) or self.stop_reason
            self.stop_details = getattr(delta, "stop_details", None) or self.stop_details
        elif kind == "content_block_delta":
            delta = getattr(event, "delta", None)
            text = getattr(delta, "text", None)
            if isinstance(text, str):
                self.text.append(text)
            else:
                other = getattr(delta, "thinking", None) or getattr(delta, "partial_json", None)
                if isinstance(other, str):
                    self.other.append(other)

    @property
    def moderated_text(self) -> str:
        """What output moderation reads: the text, then thinking and tool-use input."""
        if not self.other:
            return "".join(self.text)
        return "".join(self.text) + "\n" + "\n".join(self.other)

    def see_json(self, event: Any) -> None:
        """One SSE event's decoded ``data`` (plain JSON)."""
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            if isinstance(message, dict):
                self._see_message_head(message)
        elif kind == "message_delta":
            usage, delta = _dict(event.get("usage")), _dict(event.get("delta"))
            self.input_tokens = _int(usage.get("input_tokens")) or self.input_tokens
            self.output_tokens = _int(usage.get("output_tokens")) or self.output_tokens
            self.stop_reason = _str(delta.get("stop_reason")) or self.stop_reason
            self.stop_details = as_namespace(delta.get("stop_details")) or self.stop_details
        elif kind == "content_block_delta":
            delta = _dict(event.get("delta"))
            text = delta.get("text")
            if isinstance(text, str):
                self.text.append(text)
            else:
                other = delta.get("thinking") or delta.get("partial_json")
                if isinstance(other, str):
                    self.other.append(other)

    def see_message(self, message: Any) -> None:
        """A whole message (a JSON answer that was not streamed)."""
        if not isinstance(message, dict):
            return
        self._see_message_head(message)
        self.output_tokens = _int(_dict(message.get("usage")).get("output_tokens"))
        self.stop_reason = _str(message.get("stop_reason"))
        self.stop_details = as_namespace(message.get("stop_details"))
        for block in message.get("content") or []:
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                self.text.append(block["text"])
            elif isinstance(block.get("thinking"), str):
                self.other.append(block["thinking"])
            elif block.get("type") in ("tool_use", "server_tool_use", "mcp_tool_use") and "input" in block:
                self.other.append(json.dumps(block["input"], ensure_ascii=False))

    def see_sdk_message(self, message: Any) -> None:
        """A whole message as the SDK parsed it (its fields as plain JSON, extras included)."""
        dump = getattr(message, "model_dump", None)
        self.see_message(dump(mode="json") if callable(dump) else None)

    def _see_message_head(self, message: dict[str, Any]) -> None:
        self.message_id = _str(message.get("id"))
        self.model = _str(message.get("model"))
        self.input_tokens = _int(_dict(message.get("usage")).get("input_tokens"))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def as_namespace(value: Any) -> Any:
    """``stop_details`` as attributes, the way the SDK's own object reads."""
    return SimpleNamespace(**value) if isinstance(value, dict) else None

"""The bodies the double answers with, built the way the services build them: a Messages
message, its SSE event sequence, and an OpenAI-shaped chat completion."""

from __future__ import annotations

import re
from typing import Any

from aupguard.testing.scripting import RecordedRequest, Reply, new_id

__all__ = ["chat_completion", "message", "sse_events"]


def message(request: RecordedRequest, reply: Reply) -> dict[str, Any]:
    body = request.body if isinstance(request.body, dict) else {}
    refusal = reply.stop_reason == "refusal"
    content = [] if refusal and not reply.text else [{"type": "text", "text": reply.text}]
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-double"),
        "content": content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "stop_details": {"type": "refusal", "category": reply.refusal_category, "explanation": None}
        if refusal
        else None,
        "usage": {"input_tokens": len(request.raw) // 4 + 1, "output_tokens": len(reply.text.split()) + 1},
    }


def chat_completion(request: RecordedRequest, reply: Reply) -> dict[str, Any]:
    """A chat completion as OpenAI (and vLLM) send it; ``logprobs`` only when asked for."""
    body = request.body if isinstance(request.body, dict) else {}
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": reply.text},
        "finish_reason": "stop",
        "logprobs": None,
    }
    if body.get("logprobs") and reply.top_logprobs:
        ranked = sorted(reply.top_logprobs.items(), key=lambda item: item[1], reverse=True)
        alternatives = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in reply.top_logprobs.items()]
        first = next(a for a in alternatives if a["token"] == ranked[0][0])
        choice["logprobs"] = {"content": [first | {"top_logprobs": alternatives}]}
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": 1_800_000_000,
        "model": body.get("model", "guard-double"),
        "choices": [choice],
        "usage": {"prompt_tokens": len(request.raw) // 4 + 1, "completion_tokens": 2, "total_tokens": 3},
    }


def sse_events(request: RecordedRequest, reply: Reply) -> list[tuple[str, dict[str, Any]]]:
    """The event sequence of a streamed message, as the Messages API sends it."""
    whole = message(request, reply)
    usage = whole["usage"]
    start = whole | {"content": [], "stop_reason": None, "stop_details": None, "usage": usage | {"output_tokens": 1}}
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
    events.append(("ping", {"type": "ping"}))
    if whole["content"]:
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
        )
        for piece in re.findall(r"\S+\s*|\s+", reply.text):
            delta = {"type": "text_delta", "text": piece}
            events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    if reply.stream_error:
        error = {"type": reply.stream_error, "message": reply.error_message}
        events.append(("error", {"type": "error", "error": error, "request_id": request.request_id}))
        return events
    delta = {"stop_reason": reply.stop_reason, "stop_sequence": None, "stop_details": whole["stop_details"]}
    events.append(
        ("message_delta", {"type": "message_delta", "delta": delta, "usage": {"output_tokens": usage["output_tokens"]}})
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events

"""Reading and interpreting a guarded request's body, for every adapter (no framework here).

The body is read up to a cap; JSON is decoded strictly (UTF-8, an object at the top); the
end user's prompt is taken from the Anthropic Messages shape (the last user message),
``{"prompt": ...}``, or ``{"template": ..., "variables": ...}``; corpus ``documents`` are ids.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .prompt_policy import PromptRequest

__all__ = ["BadBody", "TooLarge", "prompt_from_body", "read_body"]

Message = MutableMapping[str, Any]


class TooLarge(Exception):
    pass


class BadBody(Exception):
    """The body is not what a guarded route accepts; the message is safe to show. ``kind``
    is the error kind answered (by default 400 ``invalid_request_error``)."""

    def __init__(self, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.kind = kind


async def read_body(receive: Callable[[], Awaitable[Message]], limit: int, declared: int | None) -> tuple[bytes, bool]:
    """The whole body, or :class:`TooLarge` past ``limit`` bytes. Also returns whether the
    client disconnected while sending it."""
    if declared is not None and declared > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def parse_json(body: bytes) -> dict[str, Any]:
    if not body:
        raise BadBody("the request body is empty; expected a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("the request body is not valid UTF-8") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadBody(f"the request body is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise BadBody("the request body nests too deeply") from None
    if not isinstance(data, dict):
        raise BadBody("the request body must be a JSON object")
    return data


def _text_of(content: Any) -> tuple[str, bool]:
    """The text of a message's content and whether it carries documents of its own."""
    if isinstance(content, str):
        return content, False
    if not isinstance(content, list):
        raise BadBody("messages[-1].content must be a string or a list of content blocks")
    texts, documents = [], False
    for block in content:
        if not isinstance(block, dict):
            raise BadBody("content blocks must be objects")
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind in ("document", "image", "file"):
            documents = True
    return "\n".join(texts), documents


def prompt_from_body(data: dict[str, Any]) -> PromptRequest:
    """The end user's request in a guarded body (see the module docstring)."""
    documents = data.get("documents", [])
    if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
        raise BadBody("documents must be a list of document ids")
    if "template" in data:
        variables = data.get("variables", {})
        if not isinstance(data["template"], str) or not isinstance(variables, dict):
            raise BadBody("template must be a string and variables an object")
        return PromptRequest(template=data["template"], variables=variables, documents=tuple(documents))
    if "messages" in data:
        messages = data["messages"]
        if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
            raise BadBody("messages must be a non-empty list of message objects")
        last = messages[-1]
        if last.get("role") != "user":
            raise BadBody("the last message must have role 'user'")
        text, inline = _text_of(last.get("content"))
        return PromptRequest(text=text, documents=tuple(documents), inline_documents=inline)
    prompt = data.get("prompt")
    if not isinstance(prompt, str):
        raise BadBody("expected 'messages' (Anthropic Messages shape), 'prompt' (a string) or 'template'")
    return PromptRequest(text=prompt, documents=tuple(documents))

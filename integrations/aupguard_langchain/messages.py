"""LangChain's messages as a Messages-API body, so the core screens a chain's call exactly
as it screens a request through any other adapter (translation only: no decision here).

Every message of the call is end-user text unless the app wrote it, and the callback cannot
tell which: the system message, every human and AI turn (with its tool calls and
reasoning), every tool result. Content blocks in LangChain's own shapes (``image_url``,
``reasoning``, ``tool_call``, ``text-plain``) become their Anthropic equivalents; Anthropic's
own blocks pass as they are; anything else is left for the core to refuse.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

__all__ = ["as_messages_body", "prompts_body"]

_MEDIA = frozenset({"image", "image_url", "file", "audio", "video", "input_audio"})
_NOT_TEXT = {"type": "image", "source": {"type": "url", "url": "about:blank"}}  # counted, not read


def _block(part: Any) -> Any:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, dict):
        return part  # refused by the core: a block must be an object
    kind = part.get("type")
    if kind in ("text", "text-plain") and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "reasoning":
        return {"type": "thinking", "thinking": part.get("reasoning", "")}
    if kind == "thinking":
        return {"type": "thinking", "thinking": part.get("thinking", "")}
    if kind in ("tool_call", "tool_use"):
        return {"type": "tool_use", "id": str(part.get("id")), "name": str(part.get("name")),
                "input": part.get("args", part.get("input", {}))}  # fmt: skip
    if kind == "file" and str(part.get("mime_type", "")).startswith("text/"):  # sent on as a text document
        data = part.get("base64", part.get("data"))
        if isinstance(data, str):
            return {"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": data}}
        text = part.get("text")
        if isinstance(text, str):
            return {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
    if kind in _MEDIA and kind != "image":
        return _NOT_TEXT
    return part


def _content(content: Any) -> Any:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return [_block(part) for part in content]
    return content


def as_messages_body(messages: list[BaseMessage], params: Any = None) -> dict[str, Any]:
    """The Messages-API body of one chat model call; ``params`` are the call's invocation
    parameters, whose bound ``tools`` (their descriptions and schemas) are screened too."""
    system: list[Any] = []
    plain = 0  # system messages of plain text
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.type == "system":
            content = _content(message.content)
            plain += isinstance(content, str)
            system += [{"type": "text", "text": content}] if isinstance(content, str) else content
        elif isinstance(message, ToolMessage):
            result = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": _content(message.content)}
            turns.append({"role": "user", "content": [result]})
        elif isinstance(message, AIMessage):
            content = _content(message.content)
            if message.tool_calls and isinstance(content, str):
                content = [{"type": "text", "text": content}] if content else []
            called = {b.get("id") for b in content if isinstance(b, dict) and b.get("type") == "tool_use"}
            calls = [_block({"type": "tool_call", **c}) for c in message.tool_calls if c.get("id") not in called]
            turns.append({"role": "assistant", "content": [*content, *calls] if calls else content})
        else:  # human, and any other role: the end user's side
            turns.append({"role": "user", "content": _content(message.content)})
    body: dict[str, Any] = {"messages": turns or [{"role": "user", "content": ""}]}
    tools = params.get("tools") if isinstance(params, dict) else None
    if isinstance(tools, list) and tools:
        body["tools"] = tools
    if plain == 1 and len(system) == 1:
        body["system"] = system[0]["text"]  # one plain system message: a string, as the API has it
    elif system:
        body["system"] = [{"type": "text", "text": b["text"]} if b.get("type") == "text" else b for b in system]
    return body


def prompts_body(prompts: list[str]) -> dict[str, Any]:
    """A plain LLM's prompts as one body: each prompt a user turn, the last one the prompt."""
    return {"messages": [{"role": "user", "content": p} for p in prompts] or [{"role": "user", "content": ""}]}

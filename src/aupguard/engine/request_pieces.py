"""Every piece of end-user text in a Messages-API request body, with where it came from.

The Messages API is stateless: the client sends the whole conversation on every call, and
all of it is the client's to write: ``system``, every turn of either role (an assistant turn
can be forged, and a prefill is legal), tool results, documents, search results, tool
definitions, thinking. :func:`read_messages` walks a body and returns each piece of text
(:class:`Piece`: where it is, e.g. ``messages[2].content[0]``, its role, turn and kind) and
the body with every piece cleaned of invisible characters (:func:`aupguard.normalize.clean`),
so that what is screened is what goes on.

How each content block is read (what is text, what is media, what is refused) is
:mod:`aupguard.engine.content_blocks`; this module walks the request's tools, system and turns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..normalize import clean
from .content_blocks import BlockReader, copy_with, walk_each
from .pieces import BadBody, MessagesText, Piece

# Piece, MessagesText and BadBody live in .pieces (a leaf the readers share); they are
# imported from here too, where they have always been
__all__ = ["BadBody", "MessagesText", "Piece", "read_messages"]


class _Walk(BlockReader):
    """The walk over a request: tools, system and the turns; their content blocks are read
    as :class:`~aupguard.engine.content_blocks.BlockReader` reads them."""

    def system(self, value: object) -> object:
        self.role, self.turn = "system", -1
        if isinstance(value, str):
            return self.text(value, "system", "system")
        if not isinstance(value, list):
            raise BadBody("system must be a string or a list of text blocks")
        return walk_each(value, lambda block, i: self.text_block(block, f"system[{i}]", only_text=True))

    def tools(self, value: object) -> object:
        self.role, self.turn = "tools", -1
        if not isinstance(value, list):
            raise BadBody("tools must be a list of tool definitions")
        return walk_each(value, self.tool)

    def tool(self, tool: object, i: int) -> object:
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise BadBody(f"{where} must be an object")
        out = tool
        if "description" in tool:
            out = copy_with(
                out, "description", self.text(tool["description"], f"{where}.description", "tool_description")
            )
        # the rest of the definition, as one piece: its name, schema, examples, a server tool's settings
        rest = {k: v for k, v in out.items() if k not in ("description", "type", "cache_control")}
        cleaned = self.strings(rest, where, "tool_schema")
        return out if cleaned is rest else {**out, **cleaned}  # type: ignore[dict-item]

    def messages(self, value: object) -> object:
        if not isinstance(value, list) or not value:
            raise BadBody("messages must be a non-empty list of message objects")
        return walk_each(value, self.message)

    def message(self, message: object, i: int) -> object:
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise BadBody(f"{where} must be an object")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise BadBody(f"{where}.role must be 'user' or 'assistant'")
        self.role, self.turn = role, i
        content = message.get("content")
        if isinstance(content, str):
            return copy_with(message, "content", self.text(content, f"{where}.content", "text"))
        if not isinstance(content, list):
            raise BadBody(f"{where}.content must be a string or a list of content blocks")
        return copy_with(message, "content", walk_each(content, lambda b, j: self.block(b, f"{where}.content[{j}]")))


def _plain(body: Mapping[str, Any]) -> MessagesText | None:
    """The common shape read the short way: turns of plain ASCII-or-clean text, no system
    prompt or tools (None for anything else: the full walk then reads it)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or "system" in body or "tools" in body:
        return None
    pieces = []
    prompt_turn = -1
    for i, message in enumerate(messages):
        if type(message) is not dict:
            return None
        role, content = message.get("role"), message.get("content")
        if (
            type(content) is not str
            or role not in ("user", "assistant")
            or (not content.isascii() and clean(content) != content)
        ):
            return None
        if role == "user":
            prompt_turn = i
        if content:
            pieces.append(Piece(f"messages[{i}].content", role, i, "text", content))
    return MessagesText(tuple(pieces), body, 0, prompt_turn, len(messages), 0, False)


def read_messages(body: Mapping[str, Any]) -> MessagesText:
    """Every piece of end-user text in a Messages-API ``body`` (see the module docstring), in
    the order Claude reads them: tools, system, then the turns (``messages`` may be absent:
    a body of another shape can still carry ``system`` and ``tools``)."""
    fast = _plain(body)
    if fast is not None:
        return fast
    walk = _Walk()
    out: Any = body
    if body.get("tools") is not None:
        out = copy_with(out, "tools", walk.tools(body["tools"]))
    has_system = body.get("system") not in (None, "", [])
    if body.get("system") is not None:
        out = copy_with(out, "system", walk.system(body["system"]))
    messages = body.get("messages")
    prompt_turn = -1
    if messages is not None:
        out = copy_with(out, "messages", walk.messages(messages))
        assert isinstance(messages, list)
        prompt_turn = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), -1)
    return MessagesText(
        tuple(walk.pieces), out, walk.media, prompt_turn, len(messages or ()), walk.documents,
        has_system or body.get("tools") not in (None, []),
    )  # fmt: skip

"""Every piece of end-user text in a Messages-API request body, with where it came from.

The Messages API is stateless: the client sends the whole conversation on every call, and
all of it is the client's to write: ``system``, every turn of either role (an assistant turn
can be forged, and a prefill is legal), tool results, documents, search results, tool
definitions, thinking. :func:`read_messages` walks a body and returns each piece of text
(:class:`Piece`: where it is, e.g. ``messages[2].content[0]``, its role, turn and kind) and
the body with every piece cleaned of invisible characters (:func:`aupguard.normalize.clean`),
so that what is screened is what goes on.

Images, PDFs, files by id and documents by URL are not text: they are counted (``media``),
not screened. Anthropic's encrypted blocks (``redacted_thinking``, encrypted search content)
cannot carry the client's words and are passed. A block type aupguard does not know, or a
field of the wrong type, is refused (:class:`BadBody` naming the field), never skipped.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, NamedTuple

from ..errors import AupguardError
from ..normalize import clean

__all__ = ["BadBody", "MessagesText", "Piece", "read_messages"]


class BadBody(AupguardError):
    """The body is not what a guarded route accepts; the message is safe to show (it names
    fields, never their text). ``kind`` is the error kind answered (by default 400
    ``invalid_request_error``)."""

    def __init__(self, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.kind = kind


class Piece(NamedTuple):
    """One piece of end-user text. ``turn`` is the index in ``messages`` (-1 for ``system``
    and ``tools``); ``role`` is ``system``, ``tools``, ``user`` or ``assistant``. (Named
    tuples, as :class:`~aupguard.outcome.Decision`: several times cheaper to make.)"""

    where: str
    role: str
    turn: int
    kind: str
    text: str


class MessagesText(NamedTuple):
    """What :func:`read_messages` found. ``body`` is the request with every piece cleaned
    (the very object given when nothing needed cleaning); ``prompt_turn`` is the index of the
    last user message (-1 without one); ``documents`` counts document, image and search-result
    blocks (material the client brought, which ``corpus`` mode refuses)."""

    pieces: tuple[Piece, ...]
    body: Mapping[str, Any]
    media: int
    prompt_turn: int
    turns: int
    documents: int
    has_system: bool

    @property
    def prompt_text(self) -> str:
        """The text blocks of the last user message, joined: the end user's prompt."""
        if self.prompt_turn < 0:
            return ""
        return "\n".join(p.text for p in self.pieces if p.turn == self.prompt_turn and p.kind == "text")

    @property
    def history(self) -> bool:
        """Whether the request carries turns other than the last user message (history, a prefill)."""
        return self.turns > (1 if self.prompt_turn >= 0 else 0)


#: Blocks Anthropic's servers wrote whose strings are ids, URLs and encrypted content, or
#: text (read as any other); the client can forge them, so their strings are screened too.
_SERVER_RESULTS = frozenset({
    "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
    "bash_code_execution_tool_result", "text_editor_code_execution_tool_result", "mcp_tool_result",
    "tool_search_tool_result", "container_upload",
})  # fmt: skip
_TOOL_CALLS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
#: Fields whose strings are no one's words: structure, ids, signatures, Anthropic's ciphertext.
_OPAQUE = frozenset({
    "type", "id", "tool_use_id", "signature", "encrypted_content", "encrypted_index", "file_id",
    "media_type", "cache_control", "citations",
})  # fmt: skip


class _Walk:
    def __init__(self) -> None:
        self.pieces: list[Piece] = []
        self.media = 0
        self.documents = 0
        self.role = ""
        self.turn = -1

    def text(self, value: object, where: str, kind: str) -> str:
        if not isinstance(value, str):
            raise BadBody(f"{where} must be a string")
        cleaned = clean(value)
        if cleaned:
            self.pieces.append(Piece(where, self.role, self.turn, kind, cleaned))
        return cleaned

    # -- top level ---------------------------------------------------------------------

    def system(self, value: object) -> object:
        self.role, self.turn = "system", -1
        if isinstance(value, str):
            return self.text(value, "system", "system")
        if not isinstance(value, list):
            raise BadBody("system must be a string or a list of text blocks")
        return _each(value, lambda block, i: self.text_block(block, f"system[{i}]", only_text=True))

    def tools(self, value: object) -> object:
        self.role, self.turn = "tools", -1
        if not isinstance(value, list):
            raise BadBody("tools must be a list of tool definitions")
        return _each(value, self.tool)

    def tool(self, tool: object, i: int) -> object:
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise BadBody(f"{where} must be an object")
        out = tool
        if "description" in tool:
            out = _put(out, "description", self.text(tool["description"], f"{where}.description", "tool_description"))
        # the rest of the definition, as one piece: its name, schema, examples, a server tool's settings
        rest = {k: v for k, v in out.items() if k not in ("description", "type", "cache_control")}
        cleaned = self.strings(rest, where, "tool_schema")
        return out if cleaned is rest else {**out, **cleaned}  # type: ignore[dict-item]

    def messages(self, value: object) -> object:
        if not isinstance(value, list) or not value:
            raise BadBody("messages must be a non-empty list of message objects")
        return _each(value, self.message)

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
            return _put(message, "content", self.text(content, f"{where}.content", "text"))
        if not isinstance(content, list):
            raise BadBody(f"{where}.content must be a string or a list of content blocks")
        return _put(message, "content", _each(content, lambda b, j: self.block(b, f"{where}.content[{j}]")))

    # -- content blocks ----------------------------------------------------------------

    def block(self, block: object, where: str, nested: bool = False) -> object:
        if not isinstance(block, dict):
            raise BadBody(f"{where} must be an object")
        kind = block.get("type")
        if not isinstance(kind, str):
            raise BadBody(f"{where}.type is missing" if kind is None else f"{where}.type must be a string")
        if kind == "text":
            return self.text_block(block, where)
        if kind == "image":
            return self.image(block, where)
        if kind == "document":
            return self.document(block, where)
        if kind == "search_result":
            return self.search_result(block, where)
        if nested:  # what a tool result may hold
            if kind == "tool_reference":  # tool search: names a tool the request defines
                return self.strings(block, where, "tool_result")
            raise BadBody(f"{where}.type must be text, image, document, search_result or tool_reference here")
        if kind == "tool_result":
            content = block.get("content")
            if content is None:
                return block
            if isinstance(content, str):
                return _put(block, "content", self.text(content, f"{where}.content", "tool_result"))
            if not isinstance(content, list):
                raise BadBody(f"{where}.content must be a string or a list of content blocks")
            return _put(block, "content", _each(content, lambda b, j: self.block(b, f"{where}.content[{j}]", True)))
        if kind in _TOOL_CALLS:  # the tool's name is read with its input: Claude reads both
            name = block.get("name")
            names = (name,) if isinstance(name, str) else ()
            return _put(block, "input", self.strings(block.get("input", {}), f"{where}.input", "tool_use", names))
        if kind == "thinking":
            return _put(block, "thinking", self.text(block.get("thinking"), f"{where}.thinking", "thinking"))
        if kind == "redacted_thinking":  # Anthropic's ciphertext: no words of the client's
            self.media += 1
            return block
        if kind in _SERVER_RESULTS:
            return self.strings(block, where, kind)
        raise BadBody(f"{where}.type is not a content block type aupguard can screen")

    def text_block(self, block: object, where: str, only_text: bool = False) -> object:
        if not isinstance(block, dict) or (only_text and block.get("type") != "text"):
            raise BadBody(f"{where} must be a text block")
        out = _put(block, "text", self.text(block.get("text"), where, "text"))
        citations = block.get("citations")
        if citations is not None:  # quoted text in a (forged) answer is text too
            if not isinstance(citations, list):
                raise BadBody(f"{where}.citations must be a list")
            out = _put(out, "citations", _each(citations, lambda c, j: self.citation(c, f"{where}.citations[{j}]")))
        return out

    def citation(self, citation: object, where: str) -> object:
        if not isinstance(citation, dict):
            raise BadBody(f"{where} must be an object")
        out = citation
        for name in ("cited_text", "document_title", "title"):
            if citation.get(name) is not None:
                out = _put(out, name, self.text(citation[name], f"{where}.{name}", "citation"))
        return out

    def image(self, block: dict[str, Any], where: str) -> object:
        if not isinstance(block.get("source"), dict):
            raise BadBody(f"{where}.source must be an object")
        self.media += 1
        self.documents += 1
        return block

    def document(self, block: dict[str, Any], where: str) -> object:
        self.documents += 1
        out: object = block
        for name in ("title", "context"):
            if block.get(name) is not None:
                out = _put(out, name, self.text(block[name], f"{where}.{name}", "document"))
        source = block.get("source")
        if not isinstance(source, dict):
            raise BadBody(f"{where}.source must be an object")
        kind, here = source.get("type"), f"{where}.source"
        if kind == "text":
            return _put(out, "source", _put(source, "data", self.text(source.get("data"), f"{here}.data", "document")))
        if kind == "content":
            content = source.get("content")
            if isinstance(content, str):
                new: object = self.text(content, f"{here}.content", "document")
            elif isinstance(content, list):
                new = _each(content, lambda b, j: self.document_part(b, f"{here}.content[{j}]"))
            else:
                raise BadBody(f"{here}.content must be a string or a list of blocks")
            return _put(out, "source", _put(source, "content", new))
        if kind == "base64":
            media = _media_type(source.get("media_type"))
            if media.startswith("text/"):
                return _put(out, "source", _put(source, "data", self.base64_text(source.get("data"), f"{here}.data")))
            if media != "application/pdf":  # a type aupguard cannot say is not text: refused, not passed
                raise BadBody(f"{here}.media_type must be application/pdf or a text/ type")
            if not isinstance(source.get("data"), str):
                raise BadBody(f"{here}.data must be a string")
            self.media += 1  # a PDF: not text aupguard can read
            return out
        if kind in ("url", "file"):
            self.media += 1
            return out
        raise BadBody(f"{here}.type must be text, base64, content, url or file")

    def document_part(self, block: object, where: str) -> object:
        if isinstance(block, dict) and block.get("type") == "image":
            return self.image(block, where)
        return self.text_block(block, where, only_text=True)

    def base64_text(self, data: object, where: str) -> str:
        if not isinstance(data, str):
            raise BadBody(f"{where} must be a string")
        try:
            cleaned, sent = _base64_text(data)
        except ValueError:
            raise BadBody(f"{where} is not base64 of UTF-8 text (its media_type is a text/ type)") from None
        self.text(cleaned, where, "document")
        return sent

    def search_result(self, block: dict[str, Any], where: str) -> object:
        self.documents += 1
        out: object = block
        for name in ("title", "source"):
            out = _put(out, name, self.text(block.get(name), f"{where}.{name}", "search_result"))
        content = block.get("content")
        if not isinstance(content, list):
            raise BadBody(f"{where}.content must be a list of text blocks")
        parts = _each(content, lambda b, j: self.text_block(b, f"{where}.content[{j}]", only_text=True))
        return _put(out, "content", parts)

    def strings(self, value: object, where: str, kind: str, names: tuple[str, ...] = ()) -> object:
        """Every string in a JSON value, object keys too (tool input, schemas, server results),
        as one piece (after ``names``, read with it): a tool's schema costs one moderator
        call, not one per string."""
        found: list[str] = [*names]
        out = self._strings(value, kind, found)
        text = "\n".join(found)
        if text:
            self.pieces.append(Piece(where, self.role, self.turn, kind, text))
        return out

    def _strings(self, value: object, kind: str, found: list[str]) -> object:
        if isinstance(value, str):
            cleaned = clean(value)
            found.append(cleaned)
            return cleaned
        if isinstance(value, list):
            return _each(value, lambda v, _: self._strings(v, kind, found))
        if not isinstance(value, dict):
            return value
        server = kind in _SERVER_RESULTS
        opaque = _OPAQUE if server else frozenset()
        if server and value.get("type") == "base64":
            if not _media_type(value.get("media_type")).startswith("text/"):
                # binary content in a server result (an image, a file): its data is not text; the rest is
                self.media += 1
            elif isinstance(value.get("data"), str):  # text: read decoded, and sent on cleaned
                try:
                    cleaned, sent = _base64_text(value["data"])
                except ValueError:
                    raise BadBody(f"base64 data in a {kind} block is not base64 of UTF-8 text") from None
                found.append(cleaned)
                value = value if sent is value["data"] else {**value, "data": sent}
            opaque = opaque | {"data"}
        out: dict[str, Any] | None = None
        for i, (key, item) in enumerate(value.items()):
            new_key = clean(key)
            found.append(new_key)
            new = item if key in opaque else self._strings(item, kind, found)
            if out is None and (new is not item or new_key != key):
                out = dict(list(value.items())[:i])
            if out is not None:
                out[new_key] = new
        return value if out is None else out


def _media_type(value: object) -> str:
    """A media type without its parameters, in lower case (``text/plain; charset=utf-8`` is ``text/plain``)."""
    return value.split(";", 1)[0].strip().lower() if isinstance(value, str) else ""


def _base64_text(data: str) -> tuple[str, str]:
    """The text base64 ``data`` holds, cleaned, and the data to send on (``data`` itself when
    nothing was cleaned). ``ValueError`` when it is not base64 of UTF-8 text."""
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8")
    except binascii.Error:
        raise ValueError("not base64") from None
    cleaned = clean(text)
    return cleaned, data if cleaned == text else base64.b64encode(cleaned.encode("utf-8")).decode("ascii")


def _put(container: Any, key: str, value: object) -> Any:
    """``container`` with ``key`` set to ``value``: a copy only when it changes."""
    if container.get(key) is value:
        return container
    return {**container, key: value}


def _each(items: list[Any], walk: Any) -> list[Any]:
    """``items`` walked one by one: a copy only when one of them changes."""
    out: list[Any] | None = None
    for i, item in enumerate(items):
        new = walk(item, i)
        if new is not item and out is None:
            out = items[:i]
        if out is not None:
            out.append(new)
    return items if out is None else out


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
        out = _put(out, "tools", walk.tools(body["tools"]))
    has_system = body.get("system") not in (None, "", [])
    if body.get("system") is not None:
        out = _put(out, "system", walk.system(body["system"]))
    messages = body.get("messages")
    prompt_turn = -1
    if messages is not None:
        out = _put(out, "messages", walk.messages(messages))
        assert isinstance(messages, list)
        prompt_turn = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), -1)
    return MessagesText(
        tuple(walk.pieces), out, walk.media, prompt_turn, len(messages or ()), walk.documents,
        has_system or body.get("tools") not in (None, []),
    )  # fmt: skip

"""The reading of content blocks: text, citations, images, documents (base64 text decoded),
search results, tool calls and results, thinking, and the JSON strings of tool input,
schemas and server results. :class:`BlockReader` collects each piece of end-user text it
finds and returns the block cleaned of invisible characters (a copy only where something
changed); the walk over a request's turns (:mod:`aupguard.engine.request_pieces`) builds on it.

Images, PDFs, files by id and documents by URL are not text: they are counted (``media``),
not screened. Anthropic's encrypted blocks (``redacted_thinking``, encrypted search content)
cannot carry the client's words and are passed. A block type aupguard does not know, or a
field of the wrong type, is refused (:class:`~aupguard.engine.pieces.BadBody` naming the
field), never skipped.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ..normalize import clean
from .pieces import BadBody, Piece

__all__ = ["BlockReader", "copy_with", "walk_each"]


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


class BlockReader:
    """Reads content blocks, keeping each piece of text found (under the current ``role``
    and ``turn``) and counting media and documents."""

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
                return copy_with(block, "content", self.text(content, f"{where}.content", "tool_result"))
            if not isinstance(content, list):
                raise BadBody(f"{where}.content must be a string or a list of content blocks")
            return copy_with(
                block, "content", walk_each(content, lambda b, j: self.block(b, f"{where}.content[{j}]", True))
            )
        if kind in _TOOL_CALLS:  # the tool's name is read with its input: Claude reads both
            name = block.get("name")
            names = (name,) if isinstance(name, str) else ()
            return copy_with(block, "input", self.strings(block.get("input", {}), f"{where}.input", "tool_use", names))
        if kind == "thinking":
            return copy_with(block, "thinking", self.text(block.get("thinking"), f"{where}.thinking", "thinking"))
        if kind == "redacted_thinking":  # Anthropic's ciphertext: no words of the client's
            self.media += 1
            return block
        if kind in _SERVER_RESULTS:
            return self.strings(block, where, kind)
        raise BadBody(f"{where}.type is not a content block type aupguard can screen")

    def text_block(self, block: object, where: str, only_text: bool = False) -> object:
        if not isinstance(block, dict) or (only_text and block.get("type") != "text"):
            raise BadBody(f"{where} must be a text block")
        out = copy_with(block, "text", self.text(block.get("text"), where, "text"))
        citations = block.get("citations")
        if citations is not None:  # quoted text in a (forged) answer is text too
            if not isinstance(citations, list):
                raise BadBody(f"{where}.citations must be a list")
            out = copy_with(
                out, "citations", walk_each(citations, lambda c, j: self.citation(c, f"{where}.citations[{j}]"))
            )
        return out

    def citation(self, citation: object, where: str) -> object:
        if not isinstance(citation, dict):
            raise BadBody(f"{where} must be an object")
        out = citation
        for name in ("cited_text", "document_title", "title"):
            if citation.get(name) is not None:
                out = copy_with(out, name, self.text(citation[name], f"{where}.{name}", "citation"))
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
                out = copy_with(out, name, self.text(block[name], f"{where}.{name}", "document"))
        source = block.get("source")
        if not isinstance(source, dict):
            raise BadBody(f"{where}.source must be an object")
        kind, here = source.get("type"), f"{where}.source"
        if kind == "text":
            return copy_with(
                out, "source", copy_with(source, "data", self.text(source.get("data"), f"{here}.data", "document"))
            )
        if kind == "content":
            content = source.get("content")
            if isinstance(content, str):
                new: object = self.text(content, f"{here}.content", "document")
            elif isinstance(content, list):
                new = walk_each(content, lambda b, j: self.document_part(b, f"{here}.content[{j}]"))
            else:
                raise BadBody(f"{here}.content must be a string or a list of blocks")
            return copy_with(out, "source", copy_with(source, "content", new))
        if kind == "base64":
            media = _media_type(source.get("media_type"))
            if media.startswith("text/"):
                return copy_with(
                    out, "source", copy_with(source, "data", self.base64_text(source.get("data"), f"{here}.data"))
                )
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
            out = copy_with(out, name, self.text(block.get(name), f"{where}.{name}", "search_result"))
        content = block.get("content")
        if not isinstance(content, list):
            raise BadBody(f"{where}.content must be a list of text blocks")
        parts = walk_each(content, lambda b, j: self.text_block(b, f"{where}.content[{j}]", only_text=True))
        return copy_with(out, "content", parts)

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
            return walk_each(value, lambda v, _: self._strings(v, kind, found))
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


def copy_with(container: Any, key: str, value: object) -> Any:
    """``container`` with ``key`` set to ``value``: a copy only when it changes."""
    if container.get(key) is value:
        return container
    return {**container, key: value}


def walk_each(items: list[Any], walk: Any) -> list[Any]:
    """``items`` walked one by one: a copy only when one of them changes."""
    out: list[Any] | None = None
    for i, item in enumerate(items):
        new = walk(item, i)
        if new is not item and out is None:
            out = items[:i]
        if out is not None:
            out.append(new)
    return items if out is None else out

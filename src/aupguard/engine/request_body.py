"""Interpreting a guarded request's body, for every adapter (no framework here; reading it,
up to a cap, is :mod:`aupguard.adapters.body`).

JSON is decoded once, strictly (UTF-8, an object at the top,
bounded nesting, no NaN or Infinity, no number too large to read, no lone surrogate: each a
400 naming the problem). Duplicate keys: the last one wins, as for Python's ``json`` (what
the app reads) and for what the gateway forwards (the parsed body, serialised again). The
end user's request is one of: the Anthropic Messages shape
(every piece of text in it, see :mod:`aupguard.engine.request_pieces`), ``{"prompt": ...}``, or
``{"template": ..., "variables": ...}``; corpus ``documents`` are ids. :func:`upstream_body`
gives the Messages-API body that may go on to Claude once the call was decided.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..normalize import clean
from .pieces import BadBody, MessagesText, Piece
from .prompt_policy import PromptRequest
from .request_pieces import read_messages

if TYPE_CHECKING:
    from .prompt_policy import ResolvedPrompt

__all__ = [
    "MAX_DEPTH",
    "BadBody",
    "parse_json",
    "prompt_from_body",
    "upstream_body",
]

#: Deepest nesting of JSON arrays and objects a guarded body may have (a Messages request
#: with tool schemas needs a few dozen levels at most).
MAX_DEPTH = 64
#: Fields of ours, not the Messages API's: they never go on to Claude.
OUR_FIELDS = ("prompt", "template", "variables", "documents")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _no_constant(name: str) -> Any:
    raise BadBody(f"the request body is not valid JSON ({name} is not a JSON number)")


def _finite(text: str) -> float:
    """A JSON number as a float; one too large for a float (``1e999``) is refused, not read as
    infinity (which would go on as ``Infinity``, not JSON)."""
    value = float(text)
    if math.isinf(value):
        raise BadBody("the request body holds a number too large to read")
    return value


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or :class:`BadBody` saying what is wrong with it."""
    if not body:
        raise BadBody("the request body is empty; expected a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("the request body is not valid UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise BadBody(f"the request body is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise BadBody(f"the request body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise BadBody("the request body holds a number too large to read") from None
    if not isinstance(data, dict):
        raise BadBody("the request body must be a JSON object")
    _check_shape(data, _SURROGATE_ESCAPE.search(body) is not None)
    return data


def _check_shape(data: dict[str, Any], surrogates: bool) -> None:
    """Bounded depth (every later walk over the body is then safe) and, when the text had a
    surrogate escape, no lone surrogate (it cannot be encoded, moderated or sent on)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadBody(f"the request body nests deeper than {MAX_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if surrogates:
                for text in (key, item):
                    if isinstance(text, str) and not _encodable(text):
                        raise BadBody("the request body holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
            if isinstance(item, dict | list):
                stack.append((item, depth + 1))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def prompt_from_body(data: dict[str, Any], origin: str = "client") -> PromptRequest:
    """The end user's request in a guarded body (see the module docstring); ``origin`` as
    :class:`~aupguard.engine.prompt_policy.PromptRequest` has it."""
    documents: Any = data.get("documents", ())
    if documents and (not isinstance(documents, list) or not all(isinstance(d, str) for d in documents)):
        raise BadBody("documents must be a list of document ids")
    if "prompt" in data and ("messages" in data or "template" in data):
        raise BadBody("send one of 'messages', 'prompt' or 'template', not several")
    if "variables" in data and "template" not in data:  # unread, it would reach the app unscreened
        raise BadBody("variables go with a template: send 'template' too, or leave 'variables' out")
    if "template" in data:
        variables = data.get("variables", {})
        if not isinstance(data["template"], str) or not isinstance(variables, dict):
            raise BadBody("template must be a string and variables an object")
        cleaned = {k: clean(v) if isinstance(v, str) else v for k, v in variables.items()}
        found = read_messages(data if cleaned == variables else {**data, "variables": cleaned})
        # the template is the prompt: turns sent with it are history, screened as every piece is
        return _request(found, documents, origin, None, found.pieces, found.turns > 0, -1, data["template"], cleaned)
    if "messages" not in data:
        prompt = data.get("prompt")
        if not isinstance(prompt, str):
            raise BadBody("expected 'messages' (Anthropic Messages shape), 'prompt' (a string) or 'template'")
        text = clean(prompt)
        found = read_messages(data if text == prompt else {**data, "prompt": text})
        pieces = (*found.pieces, Piece("prompt", "user", 0, "text", text)) if text else found.pieces
        return _request(found, documents, origin, text, pieces, False, 0)
    found = read_messages(data)
    return _request(found, documents, origin, found.prompt_text, found.pieces, found.history, found.prompt_turn)


def _request(
    found: MessagesText, documents: Any, origin: str, text: str | None, pieces: tuple[Piece, ...], history: bool,
    prompt_turn: int, template: str | None = None, variables: Mapping[str, Any] | None = None,
) -> PromptRequest:  # fmt: skip
    return PromptRequest(
        text, template, variables if variables is not None else _NO_VARIABLES, tuple(documents), found.documents > 0,
        pieces, found.body, prompt_turn, history, found.has_system, found.media, origin,
    )  # fmt: skip


_NO_VARIABLES: Mapping[str, Any] = MappingProxyType({})


def upstream_body(prompt: ResolvedPrompt) -> dict[str, Any]:
    """The Messages-API body to send to Claude for a decided call: the client's body as it was
    screened and cleaned, or, where the prompt policy wrote the prompt (an allowlisted
    wording, a template, a corpus question), a body built from the decision: the client's
    parameters (model, max_tokens, ...) and, only when the policy allows them and they were
    screened, its system prompt and earlier turns. Fields of ours (``prompt``, ``template``,
    ``variables``, ``documents``) never go on."""
    body = dict(prompt.body or {})
    for name in OUR_FIELDS:
        body.pop(name, None)
    if "messages" in body and not prompt.replaced:
        return body
    sent = body.get("messages")
    turns: list[Any] = sent if isinstance(sent, list) else []
    content: Any = prompt.text
    if prompt.documents:
        content = [
            *({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": d.text},
               "title": d.id} for d in prompt.documents),
            {"type": "text", "text": prompt.text},
        ]  # fmt: skip
    ask = {"role": "user", "content": content}
    at = prompt.prompt_turn if 0 <= prompt.prompt_turn < len(turns) else None
    if at is None:  # no user turn of the client's to replace: the prompt comes last
        body["messages"] = [*turns, ask]
    else:  # the user's turn becomes the policy's; a prefill after it stays
        body["messages"] = [*turns[:at], ask, *turns[at + 1 :]]
    return body

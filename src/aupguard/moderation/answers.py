"""Reading a model's free-text answer: what the Claude and guard-model moderators share.

Models drift from the format they were asked for: a code fence around the verdict, a
sentence before it, a ``<think>`` block first, stray whitespace or capitals. These helpers
take the answer apart tolerantly, but never guess: what they cannot read is ``None``, and
the moderator turns that into an ``unparseable answer`` failure (never a clean verdict).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["category_key", "only_json_object", "strip_wrapping"]

_THINKING = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.IGNORECASE | re.DOTALL)
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?```\s*$", re.DOTALL)


def category_key(name: str) -> str:
    """A category name with case, spaces, hyphens and punctuation ignored: ``"Violent
    Crimes"``, ``"violent-crimes"`` and ``"violent_crimes"`` all give ``"violentcrimes"``."""
    return re.sub(r"[^0-9a-z]+", "", name.casefold())


def strip_wrapping(answer: str) -> str:
    """The answer without reasoning blocks (``<think>…</think>``) and without one code fence
    around all of it, trimmed."""
    text = _THINKING.sub("", answer).strip()
    fenced = _FENCE.match(text)
    return fenced.group(1).strip() if fenced else text


def only_json_object(answer: str) -> dict[str, Any] | None:
    """The one JSON object in ``answer``, or None when there is none or more than one.

    Models sometimes wrap the verdict in a code fence or put a sentence before it, so the text
    around the object may be anything but a brace. A ``{`` that does not open a valid object
    (the verdict broken by quoted text left unescaped: the nested ``{"violation": false}``
    after it would be the attacker's), or a second object, means the answer cannot be trusted:
    the moderated text can make the model echo a ``{"violation": false}`` of the attacker's
    before, after or inside its own verdict."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    start = answer.find("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(answer, start)
        except ValueError:  # a brace that opens no object: the model may have quoted the text
            return None  # unescaped, so an object found further on may be the attacker's own
        if isinstance(value, dict):
            found.append(value)
            if len(found) > 1:
                return None
        start = answer.find("{", end)
    return found[0] if found else None

"""What reading a Messages-API body gives (:func:`aupguard.engine.request_pieces.read_messages`):
each :class:`Piece` of end-user text, the :class:`MessagesText` that holds them, and
:class:`BadBody` for a body that cannot be read. A leaf module: the readers import it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from ..errors import AupguardError

__all__ = ["BadBody", "MessagesText", "Piece"]


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

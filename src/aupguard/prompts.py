"""What a guarded call's prompt is, as plain data: what the end user sent
(:class:`PromptRequest`) and what the prompt policy made of it (:class:`ResolvedPrompt`).
The checks live in :mod:`aupguard.engine.prompt_policy`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from .engine.pieces import Piece

__all__ = ["CorpusDocument", "PromptRequest", "ResolvedPrompt"]


class PromptRequest(NamedTuple):
    """What an end user sent: free ``text``, or a ``template`` id with ``variables``; plus
    corpus ``documents`` by id, and whether the request carried documents of its own.

    Read from a request body (:func:`aupguard.engine.request_body.prompt_from_body`), it also holds
    every piece of end-user text in it (``pieces``, already cleaned), the cleaned ``body``,
    the index of the prompt's turn in ``messages`` (``prompt_turn``), whether the client sent
    turns besides the prompt (``history``) or instructions of its own (``system``: a system
    prompt or tools), and how many images and PDFs it carried (``media``, not text).

    ``origin`` says who wrote the request: ``client`` (a body a client sent through an
    adapter: the whole prompt policy applies), ``chain`` (a LangChain call: the app wrote the
    system prompt and keeps the history, so they are screened but not refused), ``app`` (a
    call the app makes through the instrumented client outside any adapter: screened by the
    moderators, not held to the prompt policy, which governs what end users send).

    (A named tuple, as :class:`~aupguard.outcome.Decision`: one is made for every request.)"""

    text: str | None = None
    template: str | None = None
    variables: Mapping[str, Any] = MappingProxyType({})
    documents: tuple[str, ...] = ()
    inline_documents: bool = False
    pieces: tuple[Piece, ...] = ()
    body: Mapping[str, Any] | None = None
    prompt_turn: int = -1
    history: bool = False
    system: bool = False
    media: int = 0
    origin: str = "client"


@dataclass(frozen=True, slots=True)
class CorpusDocument:
    id: str
    text: str
    sha256: str


class ResolvedPrompt(NamedTuple):
    """The prompt to send to Claude (``text``) and the corpus documents it refers to; every
    piece of end-user text to moderate (``pieces``: the prompt and, from a request body, all
    the rest of it); the client's body, cleaned (``body``: what the app is given); and whether
    the policy wrote the prompt itself (``replaced``: an allowlisted wording, a rendered
    template, a corpus question), so the client's own turn does not go on."""

    text: str
    documents: tuple[CorpusDocument, ...] = ()
    pieces: tuple[Piece, ...] = ()
    body: Mapping[str, Any] | None = None
    replaced: bool = False
    prompt_turn: int = -1
    media: int = 0

    @property
    def screened(self) -> tuple[Piece, ...]:
        """What the moderators see: ``pieces``, or the prompt alone when there are none."""
        return self.pieces or ((Piece("prompt", "user", 0, "text", self.text),) if self.text else ())

"""Chunked moderation of one streamed answer: windows that overlap, so a phrase split across
chunks is still seen, moderated as they fill (sync and async flavours)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..outcome import Decision

if TYPE_CHECKING:
    from .screening import Screening

__all__ = ["OutputStream"]


class OutputStream:
    """Chunked output moderation for one streamed answer (sync and async flavours).

    ``feed(chunk)`` returns None while the answer may go on, or the refusal decision once a
    window is flagged with ``block`` (stop sending, tell the client); ``finish()`` moderates
    what is left and returns the final decision. A window is moderated when ``WINDOW`` new
    characters have arrived, together with the last ``OVERLAP`` characters before them."""

    WINDOW = 512
    OVERLAP = 96

    def __init__(self, guard: Screening, decision: Decision) -> None:
        self._guard = guard
        self.decision = decision
        self._text: list[str] = []
        self._size = 0
        self._checked = 0  # characters already moderated
        self._active = bool(guard.policy.moderation.output and guard.moderation)
        self.stopped = False

    def _window(self, final: bool) -> str | None:
        if not self._active or self.stopped:
            return None
        if not final and self._size - self._checked < self.WINDOW:
            return None
        if final and self._size == self._checked:
            return None
        text = "".join(self._text)
        self._text = [text]  # joined once per window, not once per chunk
        start = max(0, self._checked - self.OVERLAP)
        if start:  # begin at a word boundary, so a cut word does not pass for a whole one
            space = text.find(" ", start, self._checked)
            start = self._checked if space < 0 else space + 1
        self._checked = self._size
        return text[start:]

    def _verdict(self, decision: Decision) -> Decision | None:
        self.decision = decision
        moderation = decision.moderation
        if moderation is not None and moderation.flagged:
            self._active = False  # flagged once is enough: one review item per answer
        if not decision.allowed:
            self.stopped = True
            return decision
        return None

    def feed(self, chunk: str) -> Decision | None:
        if self.stopped:
            return self.decision
        self._text.append(chunk)
        self._size += len(chunk)
        window = self._window(final=False)
        return None if window is None else self._verdict(self._guard.screen_output(self.decision, window))

    async def afeed(self, chunk: str) -> Decision | None:
        if self.stopped:
            return self.decision
        self._text.append(chunk)
        self._size += len(chunk)
        window = self._window(final=False)
        return None if window is None else self._verdict(await self._guard.ascreen_output(self.decision, window))

    def finish(self) -> Decision:
        window = self._window(final=True)
        if window is not None:
            self._verdict(self._guard.screen_output(self.decision, window))
        return self.decision

    async def afinish(self) -> Decision:
        window = self._window(final=True)
        if window is not None:
            self._verdict(await self._guard.ascreen_output(self.decision, window))
        return self.decision

"""The moderator protocol and its verdicts.

A moderator looks at one text (an end user's prompt, or a completion) and says whether it
violates the usage policy, in which categories. It comes in a sync and an async flavour
with the same names (``moderate`` / ``amoderate``). A moderator that cannot answer (timeout,
transport error, an answer it cannot parse) raises :class:`ModeratorError`; the chain then
applies ``[moderation] fail``. Moderators never log or raise with the text in the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import AupguardError

__all__ = ["Moderator", "ModeratorError", "Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One moderator's answer. ``categories`` are the flagged categories (empty when clean).
    ``risk_level`` (1 low, 2 medium, 3 high) is set by moderators that grade risk (Claude
    with ``risk_levels``, Qwen3Guard's Controversial / Unsafe); ``[moderation] actions``
    can map ``risk_1`` … ``risk_3`` to actions."""

    flagged: bool
    categories: tuple[str, ...] = ()
    moderator: str = ""
    explanation: str = ""
    risk_level: int | None = None

    @classmethod
    def clean(cls, moderator: str) -> Verdict:
        return cls(False, (), moderator, "")


class ModeratorError(AupguardError):
    """The moderator gave no usable verdict. The message names the moderator and the kind of
    failure (``timeout``, ``http 529``, ``unparseable answer``), never the text moderated."""

    def __init__(self, moderator: str, kind: str) -> None:
        self.moderator = moderator
        self.kind = kind
        super().__init__(f"moderator {moderator} failed: {kind}")


@runtime_checkable
class Moderator(Protocol):
    """What the chain runs. ``name`` appears in verdicts, audit records and metrics. A
    moderator that does no I/O may set a class attribute ``local = True``: the chain then
    calls ``moderate`` inline even from async code, and does not cache its verdicts."""

    name: str

    def moderate(self, text: str) -> Verdict: ...

    async def amoderate(self, text: str) -> Verdict: ...

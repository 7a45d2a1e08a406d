"""What the instrumented client and the answer recorder need of the engine, as a protocol:
they take the :class:`~aupguard.engine.safeguards.Safeguards` facade without importing it
(the facade imports them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..audit.writer import AuditLog
    from ..capture.recorder import Capture
    from ..counters.base import Counters
    from ..moderation.chain import ModerationChain
    from ..outcome import Decision
    from ..policy.config import Policy
    from ..prompts import PromptRequest
    from .screening import Screening

__all__ = ["Guard"]


class Guard(Protocol):
    """The parts of the engine an instrumented client, the answer recorder and ``call`` use."""

    policy: Policy
    audit: AuditLog
    capture: Capture
    counters: Counters
    moderation: ModerationChain
    screening: Screening

    def hash_user(self, user_id: str) -> str: ...

    def check(
        self,
        user_id: str | None,
        *,
        surface: str = ...,
        prompt: str | PromptRequest | None = ...,
        defer_moderation: bool = ...,
        client_key: str | None = ...,
    ) -> Decision: ...

    async def acheck(
        self,
        user_id: str | None,
        *,
        surface: str = ...,
        prompt: str | PromptRequest | None = ...,
        defer_moderation: bool = ...,
        client_key: str | None = ...,
    ) -> Decision: ...

    def refusal(
        self, user_id: str | None, surface: str, error: str, message: str, *, reasons: tuple[str, ...] = ...
    ) -> Decision: ...

    async def arefusal(
        self, user_id: str | None, surface: str, error: str, message: str, *, reasons: tuple[str, ...] = ...
    ) -> Decision: ...

    def screen(self, decision: Decision) -> Decision: ...

    async def ascreen(self, decision: Decision) -> Decision: ...

    def screen_output(self, decision: Decision, text: str) -> Decision: ...

    async def ascreen_output(self, decision: Decision, text: str) -> Decision: ...

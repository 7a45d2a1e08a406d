"""The guarded request in progress, as a context variable.

An adapter sets it around the app's handler; code the app runs for that request (its own
Anthropic calls through ``guard.instrument(...)``, logging) reads it with
:func:`current_guarded`. Context variables follow the request into tasks it starts and
never leak into other requests. The raw user id stays in process memory.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass

from .decision import Decision

__all__ = ["Guarded", "current_guarded", "reset_guarded", "set_guarded"]


@dataclass(frozen=True, slots=True)
class Guarded:
    user_id: str | None  # the raw id: in memory only, never stored
    decision: Decision

    @property
    def request_id(self) -> str:
        return self.decision.request_id

    @property
    def user_hash(self) -> str | None:
        return self.decision.user_hash


_current: ContextVar[Guarded | None] = ContextVar("aupguard_guarded", default=None)


def current_guarded() -> Guarded | None:
    """The guarded request this code runs for, or None outside one."""
    return _current.get()


def set_guarded(value: Guarded | None) -> Token[Guarded | None]:
    """Set the current guarded request; pass the token to ``reset_guarded`` when it ends."""
    return _current.set(value)


def reset_guarded(token: Token[Guarded | None]) -> None:
    _current.reset(token)

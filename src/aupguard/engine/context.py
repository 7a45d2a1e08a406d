"""The guarded request in progress, as a context variable.

An adapter sets it around the app's handler; code the app runs for that request (its own
Anthropic calls through ``guard.instrument(...)``, logging) reads it with
:func:`current_guarded`. Context variables follow the request into tasks it starts and
never leak into other requests. The raw user id stays in process memory.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass

from ..outcome import Decision

__all__ = ["Guarded", "current_guarded", "register_lookup", "reset_guarded", "set_guarded"]


@dataclass(slots=True)
class Guarded:
    user_id: str | None  # the raw id: in memory only, never stored
    decision: Decision
    ended: bool = False  # set when the request is over, wherever its context went
    answer_recorded: bool = False  # an instrumented client records the answer (ids, tokens, capture, refusal)

    @property
    def request_id(self) -> str:
        return self.decision.request_id

    @property
    def user_hash(self) -> str | None:
        return self.decision.user_hash


_current: ContextVar[Guarded | None] = ContextVar("aupguard_guarded", default=None)


_lookups: list[Callable[[], Guarded | None]] = []


def current_guarded() -> Guarded | None:
    """The guarded request this code runs for, or None outside one."""
    found = _current.get()
    if found is not None and found.ended:  # a context copied into a task outlived its request
        found = None
    if found is None:
        for lookup in _lookups:  # e.g. Flask's request context, re-pushed while a response streams
            found = lookup()
            if found is not None and not found.ended:
                break
            found = None
    return found


def register_lookup(lookup: Callable[[], Guarded | None]) -> None:
    """Add a place to find the guarded request when the context variable has none (an
    adapter whose framework keeps request state elsewhere). Registering twice is harmless."""
    if lookup not in _lookups:
        _lookups.append(lookup)


def set_guarded(value: Guarded | None) -> Token[Guarded | None]:
    """Set the current guarded request; pass the token to ``reset_guarded`` when it ends."""
    return _current.set(value)


def reset_guarded(token: Token[Guarded | None]) -> None:
    _current.reset(token)

"""The guarded request's context, entered and left the same way by every adapter.

While the app handles an allowed request, :func:`aupguard.engine.context.current_guarded`
gives its user and decision (the instrumented client reads it). The adapter enters it once
the decision is made; when the request is over it resets the context variable and marks the
request ended, so threads and tasks the app started (they hold a copy of the context) stop
acting for that user. ASGI does both at once; Flask resets at teardown but, for a streamed
response, ends the request only after the body has streamed.
"""

from __future__ import annotations

from contextvars import Token

from ..engine.context import Guarded, reset_guarded, set_guarded
from ..outcome import Decision

__all__ = ["GuardedContext"]


class GuardedContext:
    """``ctx = GuardedContext(user, decision)`` enters; ``ctx.release()`` resets the context
    variable (once, whatever the number of calls); ``ctx.end()`` also ends the request."""

    __slots__ = ("_token", "guarded")

    def __init__(self, user: str | None, decision: Decision) -> None:
        self.guarded = Guarded(user, decision)
        self._token: Token[Guarded | None] | None = set_guarded(self.guarded)

    def release(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            reset_guarded(token)

    def end(self) -> None:
        self.release()
        self.guarded.ended = True

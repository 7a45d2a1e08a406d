"""One span per guarded call (``aupguard.check``), refused ones too.

The engine's ``check`` / ``acheck`` (and the adapters' refusals, ``refusal`` / ``arefusal``,
and the parallel verdict, ``screen`` / ``ascreen``, as ``aupguard.screen``) are wrapped by the
decorators below; a traced method called inside another (``check`` screening inline) adds
no span of its own. The span's attributes are read from the
:class:`~aupguard.outcome.Decision` that comes back:

- ``aupguard.decision`` (``allowed`` / ``refused``), ``aupguard.status_code``,
  ``aupguard.error`` and ``error.type`` (the error kind of a refusal, whose span status is
  ERROR with ``refused: <kind>``), ``aupguard.reasons`` (the audit record's text-free reasons);
- ``aupguard.request_id``, ``aupguard.surface``, ``aupguard.level``, the user's keyed hash as
  ``aupguard.user.hash`` and ``enduser.pseudo.id`` (never the raw id: the engine never puts
  it in a decision), the rate limit (``aupguard.rate_limit.limit`` / ``.remaining``);
- moderation: ``aupguard.moderation.action``, ``.categories``, ``.flagged_by``, ``.where``,
  ``.errors``, ``.cached``, ``.pending``, and each moderator that ran with its latency
  (``aupguard.moderation.ran`` and ``aupguard.moderation.latency_ms``, in the same order);
- the prompt text (``aupguard.prompt``, at most 8 KiB) only with ``[otel] capture_content = true``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from ..outcome import WOULD_REFUSE
from .tracer import active_tracer, otel_trace, quiet
from .tracer import moderators_ran as _ran

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from ..outcome import Decision

__all__ = ["arun_traced", "run_traced", "traced", "traced_async"]

P = ParamSpec("P")
S = TypeVar("S")
CHECK = "aupguard.check"
_PROMPT_LIMIT = 8192


def traced(
    name: str, surface_at: int | None = None
) -> Callable[[Callable[Concatenate[S, P], Decision]], Callable[Concatenate[S, P], Decision]]:
    """Wrap an engine method that returns a Decision in a span called ``name``; the surface
    is the ``surface`` keyword, or the positional argument ``surface_at`` (after ``self``)."""

    def wrap(fn: Callable[Concatenate[S, P], Decision]) -> Callable[Concatenate[S, P], Decision]:
        @functools.wraps(fn)
        def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> Decision:
            if quiet():
                return fn(self, *args, **kwargs)
            return run_traced(name, self, _surface(args, kwargs, surface_at), lambda: fn(self, *args, **kwargs))

        return wrapper

    return wrap


def traced_async(
    name: str, surface_at: int | None = None
) -> Callable[
    [Callable[Concatenate[S, P], Coroutine[Any, Any, Decision]]],
    Callable[Concatenate[S, P], Coroutine[Any, Any, Decision]],
]:
    """:func:`traced` for a coroutine method."""

    def wrap(
        fn: Callable[Concatenate[S, P], Coroutine[Any, Any, Decision]],
    ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, Decision]]:
        @functools.wraps(fn)
        async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> Decision:
            if quiet():
                return await fn(self, *args, **kwargs)
            surface = _surface(args, kwargs, surface_at)
            return await arun_traced(name, self, surface, lambda: fn(self, *args, **kwargs))

        return wrapper

    return wrap


def run_traced(name: str, guard: Any, surface: str | None, run: Callable[[], Decision]) -> Decision:
    """``run()`` inside a span called ``name`` (a call inside a traced one adds no span)."""
    tracer = active_tracer()
    if tracer is None or _ran.get() is not None:
        return run()
    ran: list[tuple[str, float, bool]] = []
    token = _ran.set(ran)
    try:
        with tracer.start_as_current_span(name) as span:
            decision = run()
            if span.is_recording():
                _describe(span, guard, decision, surface, ran)
            return decision
    finally:
        _ran.reset(token)


async def arun_traced(
    name: str, guard: Any, surface: str | None, run: Callable[[], Coroutine[Any, Any, Decision]]
) -> Decision:
    """:func:`run_traced` for a coroutine."""
    tracer = active_tracer()
    if tracer is None or _ran.get() is not None:
        return await run()
    ran: list[tuple[str, float, bool]] = []
    token = _ran.set(ran)
    try:
        with tracer.start_as_current_span(name) as span:
            decision = await run()
            if span.is_recording():
                _describe(span, guard, decision, surface, ran)
            return decision
    finally:
        _ran.reset(token)


def _surface(args: tuple[Any, ...], kwargs: dict[str, Any], at: int | None) -> str | None:
    found = kwargs.get("surface")
    if found is None and at is not None and len(args) > at:
        found = args[at]
    return found if isinstance(found, str) else None


def _describe(span: Span, guard: Any, decision: Decision, surface: str | None,
              ran: list[tuple[str, float, bool]]) -> None:  # fmt: skip
    attributes: dict[str, Any] = {
        "aupguard.request_id": decision.request_id,
        "aupguard.decision": "allowed" if decision.allowed else "refused",
        "aupguard.status_code": decision.status,
    }
    if surface is not None:
        attributes["aupguard.surface"] = surface
    if decision.user_hash is not None:
        attributes["aupguard.user.hash"] = attributes["enduser.pseudo.id"] = decision.user_hash
    if decision.level is not None:
        attributes["aupguard.level"] = decision.level.value
    if decision.limit is not None:
        attributes["aupguard.rate_limit.limit"] = decision.limit
        attributes["aupguard.rate_limit.remaining"] = decision.remaining or 0
    if decision.warning is not None:
        attributes["aupguard.warned"] = True
    if decision.reasons:
        attributes["aupguard.reasons"] = list(decision.reasons)
        would = [r[len(WOULD_REFUSE) :] for r in decision.reasons if r.startswith(WOULD_REFUSE)]
        if would:  # monitor mode let it through
            attributes["aupguard.would_refuse"] = would
    moderation = decision.moderation
    if moderation is not None:
        attributes["aupguard.moderation.action"] = moderation.action or "none"
        attributes["aupguard.moderation.cached"] = moderation.cached
        for key, values in (
            ("categories", moderation.categories),
            ("flagged_by", moderation.moderators),
            ("where", moderation.where[:20]),
            ("errors", moderation.errors),
        ):
            if values:
                attributes[f"aupguard.moderation.{key}"] = list(values)
    if decision.moderation_pending:
        attributes["aupguard.moderation.pending"] = True
    if ran:
        attributes["aupguard.moderation.ran"] = [name for name, _, _ in ran]
        attributes["aupguard.moderation.latency_ms"] = [round(seconds * 1000, 3) for _, seconds, _ in ran]
        failed = [name for name, _, bad in ran if bad]
        if failed:
            attributes["aupguard.moderation.failed"] = failed
    if decision.prompt is not None and decision.prompt.text and _captures(guard):
        attributes["aupguard.prompt"] = decision.prompt.text[:_PROMPT_LIMIT]
    if not decision.allowed and decision.error is not None:
        attributes["aupguard.error"] = attributes["error.type"] = decision.error
        span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, f"refused: {decision.error}"))
    span.set_attributes(attributes)


def _captures(guard: Any) -> bool:
    otel = getattr(getattr(guard, "policy", None), "otel", None)
    return bool(getattr(otel, "capture_content", False))

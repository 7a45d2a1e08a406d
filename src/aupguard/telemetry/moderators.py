"""A CLIENT span per remote moderator call (``aupguard.moderator <name>``).

Attributes: ``aupguard.moderator.name`` and ``.type`` (its class), ``.model`` when it has
one, ``server.address`` / ``server.port`` (the host only: a URL's path or query may carry a
key), the verdict (``aupguard.moderator.flagged``, ``.categories``, ``.risk_level``) or, when
it failed, ``error.type`` with the failure's kind (``timeout``, ``http 529``) and status
ERROR; each failed attempt is an event ``aupguard.moderator.attempt_failed``. The
text moderated and the moderator's explanation are never recorded (an explanation may
quote the text).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .tracer import active_tracer, otel_trace

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from ..moderation.base import Verdict

__all__ = ["attempt_failed", "traced_amoderate", "traced_moderate"]

M = TypeVar("M")


def traced_moderate(fn: Callable[[M, str], Verdict]) -> Callable[[M, str], Verdict]:
    @functools.wraps(fn)
    def wrapper(self: M, text: str) -> Verdict:
        tracer = active_tracer()
        if tracer is None:
            return fn(self, text)
        with tracer.start_as_current_span(_name(self), kind=otel_trace.SpanKind.CLIENT,
                                          record_exception=False, set_status_on_exception=False) as span:  # fmt: skip
            _describe_moderator(span, self)
            try:
                verdict = fn(self, text)
            except Exception as exc:
                _failed(span, exc)
                raise
            _verdict(span, verdict)
            return verdict

    return wrapper


def traced_amoderate(
    fn: Callable[[M, str], Coroutine[Any, Any, Verdict]],
) -> Callable[[M, str], Coroutine[Any, Any, Verdict]]:
    @functools.wraps(fn)
    async def wrapper(self: M, text: str) -> Verdict:
        tracer = active_tracer()
        if tracer is None:
            return await fn(self, text)
        with tracer.start_as_current_span(_name(self), kind=otel_trace.SpanKind.CLIENT,
                                          record_exception=False, set_status_on_exception=False) as span:  # fmt: skip
            _describe_moderator(span, self)
            try:
                verdict = await fn(self, text)
            except BaseException as exc:  # also a timeout's cancellation: the span says so
                _failed(span, exc)
                raise
            _verdict(span, verdict)
            return verdict

    return wrapper


def attempt_failed(kind: str) -> None:
    """One attempt of a remote call failed (an event on the current span; a retry may follow)."""
    if otel_trace is None or active_tracer() is None:
        return
    span = otel_trace.get_current_span()
    if span.is_recording():
        span.add_event("aupguard.moderator.attempt_failed", {"error.type": kind})


def _name(moderator: Any) -> str:
    return f"aupguard.moderator {getattr(moderator, 'name', 'moderator')}"


def _describe_moderator(span: Span, moderator: Any) -> None:
    if not span.is_recording():
        return
    attributes: dict[str, Any] = {
        "aupguard.moderator.name": str(getattr(moderator, "name", "")),
        "aupguard.moderator.type": type(moderator).__name__,
    }
    model = getattr(moderator, "model", None)
    if isinstance(model, str):
        attributes["aupguard.moderator.model"] = model
    url = getattr(moderator, "url", None) or getattr(moderator, "base_url", None)
    if isinstance(url, str):
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if host:
            attributes["server.address"] = host
        if port:
            attributes["server.port"] = port
    span.set_attributes(attributes)


def _verdict(span: Span, verdict: Verdict) -> None:
    if not span.is_recording():
        return
    span.set_attribute("aupguard.moderator.flagged", verdict.flagged)
    if verdict.categories:
        span.set_attribute("aupguard.moderator.categories", list(verdict.categories))
    if verdict.risk_level is not None:
        span.set_attribute("aupguard.moderator.risk_level", verdict.risk_level)


def _failed(span: Span, exc: BaseException) -> None:
    from ..moderation.base import ModeratorError

    kind = exc.kind if isinstance(exc, ModeratorError) else type(exc).__name__  # never the message
    span.set_attribute("error.type", kind)
    span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, kind))

"""The tracer aupguard's spans go to, or None: the one test on the hot path.

``opentelemetry-api`` is optional (the ``otel`` extra). Without it, or while no tracer
provider is set (the API's proxy stands in until the app sets one), :func:`active_tracer`
returns None and every hook is a function call and a comparison: no span objects, no
attributes built. :func:`use_tracer_provider` gives aupguard a provider of its own (tests,
or an app that keeps aupguard's spans apart from the global provider).
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

try:
    from opentelemetry import trace as otel_trace
except ImportError:  # the ``otel`` extra is not installed: every hook is a no-op
    otel_trace = None  # type: ignore[assignment]

__all__ = [
    "INSTRUMENTATION",
    "active_tracer",
    "moderator_ran",
    "moderators_ran",
    "otel_trace",
    "quiet",
    "use_tracer_provider",
]

INSTRUMENTATION = "aupguard"
#: the moderators that ran during the traced call in progress: (name, seconds, failed)
moderators_ran: ContextVar[list[tuple[str, float, bool]] | None] = ContextVar("aupguard_moderators_ran", default=None)
_own: TracerProvider | None = None
_tracers: dict[object, Tracer] = {}  # by provider (held: an id could be reused)


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Send aupguard's spans to ``provider`` instead of the global one (None: the global one
    again)."""
    global _own
    _own = provider
    _tracers.clear()


def active_tracer() -> Tracer | None:
    """aupguard's tracer when spans can be recorded, else None."""
    if otel_trace is None or quiet():
        return None
    provider: Any = _own if _own is not None else otel_trace.get_tracer_provider()
    if isinstance(provider, otel_trace.ProxyTracerProvider | otel_trace.NoOpTracerProvider):
        return None  # nothing set yet: spans would be dropped anyway
    tracer = _tracers.get(provider)
    if tracer is None:
        tracer = _tracers[provider] = provider.get_tracer(INSTRUMENTATION, _version())
        if len(_tracers) > 8:  # providers are few; stay bounded anyway
            _tracers.clear()
            _tracers[provider] = tracer
    return tracer


#: whether the environment names a tracer provider (the API loads it on first use), read at import
_ENV_PROVIDER = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def quiet() -> bool:
    """True when no span can be recorded for certain (no provider of aupguard's, none set
    globally nor named in the environment): the hot path's whole cost of tracing."""
    if _own is not None:
        return False
    if otel_trace is None:
        return True
    # the API's own global (the test get_tracer_provider makes, without its os.environ lookup);
    # a version without it reads as "maybe set": the slow path then asks the API itself
    return not _ENV_PROVIDER and getattr(otel_trace, "_TRACER_PROVIDER", True) is None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aupguard")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0"


def moderator_ran(name: str, seconds: float, failed: bool) -> None:
    """Called by the moderator chain after each moderator (a no-op outside a traced call)."""
    ran = moderators_ran.get()
    if ran is not None:
        ran.append((name, seconds, failed))

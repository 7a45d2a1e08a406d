"""OpenTelemetry spans for aupguard (the ``otel`` extra: ``opentelemetry-api`` only).

- ``aupguard.check``: one span per guarded call, allowed or refused (:mod:`.checks`);
- ``aupguard.moderator <name>``: one CLIENT span per remote moderator call (:mod:`.moderators`);
- ``chat <model>``: the instrumented client's Messages calls as GenAI client spans (:mod:`.genai`).

Without ``opentelemetry-api``, or while no tracer provider is set, every hook returns at
once (no span, no attribute built). Raw user ids are never recorded (only the keyed
hash); prompt and completion text only with ``[otel] capture_content = true``. See
docs/observability.md.
"""

from __future__ import annotations

from .checks import traced, traced_async
from .genai import traced_acall, traced_call
from .moderators import attempt_failed, traced_amoderate, traced_moderate
from .tracer import active_tracer, moderator_ran, use_tracer_provider

__all__ = [
    "active_tracer",
    "attempt_failed",
    "moderator_ran",
    "traced",
    "traced_acall",
    "traced_amoderate",
    "traced_async",
    "traced_call",
    "traced_moderate",
    "use_tracer_provider",
]

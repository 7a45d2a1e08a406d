"""Plain records the stores keep. User ids appear only as hashes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..ladder import UserState

__all__ = ["AuditEvent", "AuditRecord", "Describe", "ReviewItem", "StrikeRecord"]


@dataclass(frozen=True, slots=True)
class StrikeRecord:
    id: str
    user_hash: str
    at: float
    reason: str
    category: str
    source: str
    actor: str
    voided_at: float | None = None
    void_reason: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """A state change: who did what to which user, when and why."""

    id: str
    at: float
    user_hash: str | None
    action: str
    actor: str
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One guarded call: our request id linked to the user hash and Anthropic's ids."""

    request_id: str
    at: float
    user_hash: str | None
    surface: str
    outcome: str  # "allowed" or the error kind
    status: int
    level: str | None
    reasons: tuple[str, ...] = ()
    anthropic_request_id: str | None = None
    message_id: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """A flagged prompt waiting for a human reviewer. Holds no prompt text (captured text,
    encrypted, comes with the instrumentation)."""

    id: str
    at: float
    user_hash: str
    request_id: str | None
    strike_id: str | None
    action: str
    categories: tuple[str, ...]
    moderators: tuple[str, ...]
    explanation: str
    status: str = "open"


#: Given the user's state before and after a change, the events that record it.
Describe = Callable[[UserState, UserState], list[AuditEvent]]

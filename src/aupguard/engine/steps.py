"""The pure steps of one guarded call: plain functions over plain data, no I/O.

:mod:`aupguard.engine.pipeline` strings them together and does the I/O between them.
"""

from __future__ import annotations

import json

from ..counters.base import Hit
from ..ladder import Level, UserStatus
from ..outcome import ERROR_STATUS, Decision, Refusal, whole_seconds
from ..policy.config import Policy
from .gates import throttle_gate, warning_for

__all__ = [
    "budget_refusal",
    "check_surface",
    "reasons_json",
    "refuse",
    "surface_or_default",
    "throttled",
]


def refuse(request_id: str, refusal: Refusal, user_hash: str | None, level: Level | None) -> Decision:
    """The decision of a refused call."""
    return Decision(
        request_id,
        False,
        ERROR_STATUS[refusal.error],
        refusal.error,
        refusal.message,
        user_hash,
        level,
        retry_after=refusal.retry_after,
    )


def budget_refusal(request_id: str, budget: Hit, user_hash: str | None, level: Level | None) -> Decision:
    """The refusal of a call whose token budget is spent (no request slot is counted for it)."""
    wait = whole_seconds(budget.reset_after)
    message = f"The token budget of {budget.limit} tokens is spent. Retry after {wait} s."
    return refuse(request_id, Refusal("rate_limited", message, wait), user_hash, level)


def throttled(request_id: str, user_hash: str | None, status: UserStatus | None, hit: Hit, policy: Policy) -> Decision:
    """The decision once the rate limit answered: 429 past the limit, else allowed (with the
    warning a user with strikes gets)."""
    level = None if status is None else status.level
    reset_after = int(hit.reset_after + 0.999)
    refusal = throttle_gate(hit, level)
    if refusal is not None:
        return Decision(
            request_id,
            False,
            429,
            refusal.error,
            refusal.message,
            user_hash,
            level,
            hit.limit,
            0,
            reset_after,
            refusal.retry_after,
        )
    return Decision(
        request_id,
        True,
        200,
        None,
        "",
        user_hash,
        level,
        hit.limit,
        hit.remaining,
        reset_after,
        None,
        warning_for(status, policy),
    )


def check_surface(surface: object) -> None:
    """``surface`` names a route or feature: a programming error if it is not short text."""
    if not isinstance(surface, str) or not surface or len(surface) > 200:
        raise ValueError("surface must be a non-empty string of at most 200 characters")
    try:
        surface.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("surface is not valid Unicode") from None


def surface_or_default(surface: object) -> str:
    """``surface`` when it is a valid one, else ``"default"`` (for refusals an adapter records)."""
    if isinstance(surface, str):
        try:
            check_surface(surface)
        except ValueError:
            return "default"
        return surface
    return "default"


def reasons_json(decision: Decision) -> str:
    """The text-free reasons of the audit record, as stored."""
    if decision.reasons:
        return json.dumps([*decision.reasons, "warned"] if decision.warning is not None else list(decision.reasons))
    return '["warned"]' if decision.warning is not None else "[]"

"""The checks of one guarded call, as pure functions over plain data.

Order: account → terms → suspended? → throttle. The engine gathers the inputs (user state,
limiter hit) and turns the verdicts into a :class:`~aupguard.outcome.Decision`.
"""

from __future__ import annotations

from ..counters.base import Hit
from ..ladder import Level, UserStatus
from ..outcome import Refusal, whole_seconds
from ..policy.config import Policy
from ..timestamps import clamp, utc_text

__all__ = ["account_gate", "standing_gate", "throttle_gate", "warning_for"]


def account_gate(has_user: bool, policy: Policy) -> Refusal | None:
    if has_user or not policy.identity.require_account:
        return None
    return Refusal(
        "authentication_required",
        "An account is required to use this service. Sign in and try again.",
    )


def standing_gate(status: UserStatus, policy: Policy, now: float) -> Refusal | None:
    """Terms first (a user must know the rules before being judged by them), then suspension."""
    terms = policy.terms
    if terms is not None and status.terms_version != terms.version:
        where = f" at {terms.url}" if terms.url else ""
        return Refusal(
            "terms_not_accepted",
            f"Accept the usage policy version {terms.version}{where} to continue.",
        )
    if status.level is Level.SUSPENDED:
        if status.until is None:
            return Refusal("user_suspended", "This account is suspended for repeated usage policy violations.")
        # a stored end past what a datetime holds (an older policy's) is shown and counted clamped
        end = utc_text(status.until, "%Y-%m-%d %H:%M UTC")
        return Refusal(
            "user_suspended",
            f"This account is suspended for repeated usage policy violations until {end}.",
            whole_seconds(clamp(status.until) - now),
        )
    return None


def throttle_gate(hit: Hit, level: Level | None) -> Refusal | None:
    if hit.allowed:
        return None
    tier = " (reduced after usage policy violations)" if level is Level.THROTTLED else ""
    return Refusal(
        "rate_limited",
        f"Rate limit of {hit.limit} requests exceeded{tier}. Retry after {whole_seconds(hit.reset_after)} s.",
        whole_seconds(hit.reset_after),
    )


def warning_for(status: UserStatus | None, policy: Policy) -> str | None:
    """The notice an allowed call carries for a user with strikes."""
    if status is None or status.level in (Level.OK, Level.SUSPENDED):
        return None
    more = policy.ladder.suspend - status.strikes
    if status.level is Level.WARNED:
        return (
            f"Your recent requests were flagged under the usage policy ({status.strikes} strike(s)). "
            f"Further violations lead to reduced limits and suspension."
        )
    return (
        f"Your limits are reduced after {status.strikes} usage policy strike(s); "
        f"{max(more, 0)} more lead(s) to suspension."
    )

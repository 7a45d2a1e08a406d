"""Exceptions raised by aupguard. Messages never contain raw user ids or key material."""

from __future__ import annotations

__all__ = [
    "AppealConflict",
    "AppealError",
    "AppealRateLimited",
    "ArchiveError",
    "AupguardError",
    "ConfigurationError",
    "CountersUnavailable",
    "InvalidUserId",
    "PolicyError",
    "StoreError",
    "UnknownAppealTarget",
    "UnknownStrike",
]


class AupguardError(Exception):
    """Base class of every error aupguard raises on purpose."""


class PolicyError(AupguardError, ValueError):
    """A policy value is invalid. ``key`` is the dotted policy key (``ladder.warn``)."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"invalid policy: {key} = {shown}; allowed: {allowed}")


class ConfigurationError(AupguardError):
    """aupguard cannot start as configured (missing hash key, unknown store scheme, ...)."""


class InvalidUserId(AupguardError, ValueError):
    """A user id is not a usable identifier. The message describes it without echoing it."""


class StoreError(AupguardError):
    """The durable store failed or holds data this version cannot read. ``transient`` is
    True when retrying later may succeed (the server is down, the database locked)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ArchiveError(AupguardError):
    """The capture archive's object store refused or could not be reached. ``transient`` is
    True when retrying later may succeed (the server is down or timed out). The message
    never holds a credential."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class CountersUnavailable(AupguardError):
    """The counter store (Redis) cannot be reached and ``[storage] fail = "closed"``."""


class UnknownStrike(AupguardError, LookupError):
    """No strike has the given id."""


class AppealError(AupguardError):
    """An appeal cannot be filed or decided. ``status`` is the HTTP status an adapter answers
    with, ``kind`` the error type in Anthropic's error shape; the message is safe to show the
    end user (it never says whether another user's strike exists)."""

    status = 400
    kind = "invalid_request_error"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnknownAppealTarget(AppealError, LookupError):
    """No strike or refused request of this user has that id (or no appeal has that id)."""

    status = 404
    kind = "not_found_error"


class AppealConflict(AppealError):
    """Appealed already, or decided already."""

    status = 409
    kind = "conflict_error"


class AppealRateLimited(AppealError):
    """The user filed ``[review] appeals`` appeals already."""

    status = 429
    kind = "rate_limited"

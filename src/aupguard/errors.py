"""Exceptions raised by aupguard. Messages never contain raw user ids or key material."""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "AupguardError",
    "ConfigurationError",
    "CountersUnavailable",
    "InvalidUserId",
    "PolicyError",
    "StoreError",
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

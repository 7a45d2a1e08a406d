"""Durable stores, chosen by URI scheme (``sqlite:///path``, ``memory://``)."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigurationError
from .records import AuditEvent, AuditRecord, Describe, ReviewItem, StrikeRecord
from .sqlite import SQLiteStore

__all__ = [
    "AuditEvent",
    "AuditRecord",
    "Describe",
    "ReviewItem",
    "SQLiteStore",
    "StrikeRecord",
    "register_store",
    "store_from_uri",
]

_SCHEMES: dict[str, Callable[[str], SQLiteStore]] = {}


def register_store(scheme: str, factory: Callable[[str], SQLiteStore]) -> None:
    """Make ``scheme://...`` URIs open stores built by ``factory(uri)``."""
    _SCHEMES[scheme] = factory


def _sqlite(uri: str) -> SQLiteStore:
    path = uri.removeprefix("sqlite://")
    if "?" in path or "#" in path or path.endswith(":memory:"):
        raise ConfigurationError("sqlite store URI takes a plain file path (no query, no :memory:); use memory://")
    if not path.startswith("/") or path == "/":
        raise ConfigurationError("sqlite store URI must be sqlite:///relative/path.db or sqlite:////absolute/path.db")
    return SQLiteStore(path[1:])


register_store("sqlite", _sqlite)
register_store("memory", lambda uri: SQLiteStore(None))


def store_from_uri(uri: str) -> SQLiteStore:
    scheme = uri.partition("://")[0]
    factory = _SCHEMES.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        raise ConfigurationError(f"unsupported store URI scheme {scheme!r} (storage.store); supported: {known}")
    return factory(uri)

"""Durable stores, chosen by URI scheme (``sqlite:///path``, ``memory://``, ``postgresql://``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigurationError
from .records import AuditEvent, AuditRecord, Describe, ReviewItem, StrikeRecord
from .sql import SQLStore
from .sqlite.store import SQLiteStore
from .uris import redact_uri

__all__ = [
    "AuditEvent",
    "AuditRecord",
    "Describe",
    "ReviewItem",
    "SQLStore",
    "SQLiteStore",
    "StrikeRecord",
    "redact_uri",
    "register_store",
    "sqlite_file",
    "store_from_uri",
]

#: factory(uri, options) -> store; options: migrate (bool), pool_size (int), timeout (seconds)
StoreFactory = Callable[[str, Mapping[str, Any]], SQLStore]
_SCHEMES: dict[str, StoreFactory] = {}


def register_store(scheme: str, factory: StoreFactory) -> None:
    """Make ``scheme://...`` URIs open stores built by ``factory(uri, options)``."""
    _SCHEMES[scheme] = factory


def sqlite_file(uri: str) -> str | None:
    """The file a ``sqlite:///path`` URI names (relative to the working folder), else None."""
    return uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None


def _sqlite(uri: str, options: Mapping[str, Any]) -> SQLStore:
    path = uri.removeprefix("sqlite://")
    if "?" in path or "#" in path or path.endswith(":memory:"):
        raise ConfigurationError("sqlite store URI takes a plain file path (no query, no :memory:); use memory://")
    if not path.startswith("/") or path == "/":
        raise ConfigurationError("sqlite store URI must be sqlite:///relative/path.db or sqlite:////absolute/path.db")
    return SQLiteStore(path[1:])


def _postgres(uri: str, options: Mapping[str, Any]) -> SQLStore:
    from .postgres.store import PostgresStore

    return PostgresStore(uri, **options)


register_store("sqlite", _sqlite)
register_store("memory", lambda uri, options: SQLiteStore(None))
register_store("postgresql", _postgres)
register_store("postgres", _postgres)


def store_from_uri(uri: str, *, migrate: bool = True, pool_size: int = 4, timeout: float = 5.0) -> SQLStore:
    """Open the store ``uri`` names. With ``migrate=False`` a PostgreSQL schema that is behind
    is an error naming ``aupguard migrate`` instead of being brought up to date; ``pool_size``
    and ``timeout`` (seconds to wait for a connection) apply to server stores."""
    scheme = uri.partition("://")[0]
    factory = _SCHEMES.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        raise ConfigurationError(f"unsupported store URI scheme {scheme!r} (storage.store); supported: {known}")
    return factory(uri, {"migrate": migrate, "pool_size": pool_size, "timeout": timeout})

"""Counters by URI, discovered by scheme (as ``limits.storage_from_string`` does): each
backend registers the schemes it serves; :func:`counters_from_uri` builds the one a URI names."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigurationError
from ..policy.config import LimitsPolicy, StoragePolicy
from .base import Counters, SweptMemoryStorage
from .redis import SCHEMES as REDIS_SCHEMES
from .redis import RedisCounters

__all__ = ["CountersFactory", "counters_from_uri", "register", "schemes"]

#: Builds counters from (URI, ``[limits]``, ``[storage]``).
CountersFactory = Callable[[str, LimitsPolicy, StoragePolicy], Counters]


def _memory(uri: str, limits: LimitsPolicy, storage: StoragePolicy) -> Counters:
    return Counters(SweptMemoryStorage(), limits)


_REGISTRY: dict[str, CountersFactory] = {"memory": _memory, **dict.fromkeys(REDIS_SCHEMES, RedisCounters)}


def register(scheme: str, factory: CountersFactory) -> None:
    """Serve ``scheme://`` URIs with ``factory`` (a backend of your own)."""
    _REGISTRY[scheme] = factory


def schemes() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def counters_from_uri(uri: str, policy: LimitsPolicy, storage: StoragePolicy | None = None) -> Counters:
    scheme = uri.partition("://")[0]
    factory = _REGISTRY.get(scheme)
    if factory is None:
        known = ", ".join(f"{name}://" for name in _REGISTRY)
        raise ConfigurationError(f"unsupported counters URI scheme {scheme!r} (storage.counters); supported: {known}")
    return factory(uri, policy, storage or StoragePolicy())

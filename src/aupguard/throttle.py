"""Rate limits through ``limits``: the tier by ladder level, counters by URI.

Counters are keyed by the user hash. ``memory://`` keeps them in this process; the calls
below never block on I/O for it, so the async path uses them directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import limits
from limits.storage import MemoryStorage, Storage
from limits.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

from .errors import ConfigurationError
from .ladder import Level
from .policy import LimitsPolicy

__all__ = ["Counters", "Hit", "counters_from_uri"]

_STRATEGIES: dict[str, Callable[[Storage], RateLimiter]] = {
    "moving-window": MovingWindowRateLimiter,
    "fixed-window": FixedWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
}


@dataclass(frozen=True, slots=True)
class Hit:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until the window frees a slot


class Counters:
    """The base and throttled tiers of ``[limits]`` over one ``limits`` storage."""

    def __init__(self, storage: Storage, policy: LimitsPolicy) -> None:
        self.storage = storage
        self._limiter = _STRATEGIES[policy.strategy](storage)
        self._tiers = {
            False: limits.parse(policy.default),
            True: limits.parse(policy.throttled),
        }

    def hit(self, key: str, level: Level | None) -> Hit:
        item = self._tiers[level is Level.THROTTLED]
        allowed = self._limiter.hit(item, key)
        stats = self._limiter.get_window_stats(item, key)
        return Hit(allowed, item.amount, max(0, stats.remaining), max(0.0, stats.reset_time - time.time()))

    def reset(self) -> None:
        self.storage.reset()


def counters_from_uri(uri: str, policy: LimitsPolicy) -> Counters:
    scheme = uri.partition("://")[0]
    if scheme == "memory":
        return Counters(MemoryStorage(), policy)
    raise ConfigurationError(f"unsupported counters URI scheme {scheme!r} (storage.counters); supported: memory://")

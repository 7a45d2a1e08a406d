"""Rate limits through ``limits``: the tier by ladder level, counters by URI.

Counters are keyed by the user hash. ``memory://`` keeps them in this process; the calls
below never block on I/O for it, so the async path uses them directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import limits
from limits.storage import MemoryStorage, MovingWindowSupport, Storage
from limits.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

from ..ladder import Level
from ..policy.config import LimitsPolicy

__all__ = ["ANY_VERSION", "Counters", "Hit", "SweptMemoryStorage"]

_KEY_CACHE_LIMIT = 65_536
#: The version that matches any user state version (``hit_checked``)
ANY_VERSION = "*"

_STRATEGIES: dict[str, Callable[[Storage], RateLimiter]] = {
    "moving-window": MovingWindowRateLimiter,
    "fixed-window": FixedWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
}


class SweptMemoryStorage(MemoryStorage):
    """``limits``' in-memory storage, sweeping expired entries at most once a second.

    ``limits`` sweeps on a timer thread of 10 ms that every hit restarts once the last one
    has ended: below about a hundred hits a second that is a new thread per hit, whose start
    and whose scan of every key take the GIL from the event loop (milliseconds of latency per
    request). Every read also checks expiry itself (``get`` for counters, the window's own
    times for the moving window), so sweeping less often only frees memory a little later."""

    SWEEP_EVERY = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._next_sweep = 0.0
        self.sweeps = 0  # timer threads started (for tests)

    def _MemoryStorage__schedule_expiry(self) -> None:  # limits' private hook, replaced
        now = time.monotonic()
        if now < self._next_sweep or self.timer.is_alive():
            return
        self._next_sweep = now + self.SWEEP_EVERY
        self.timer = threading.Timer(0.01, self._MemoryStorage__expire_events)  # type: ignore[attr-defined]
        self.timer.daemon = True  # never holds the interpreter open at exit
        self.timer.start()
        self.sweeps += 1

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._next_sweep = 0.0


class Hit(NamedTuple):
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until the window frees a slot


class Counters:
    """The base and throttled tiers of ``[limits]`` over one ``limits`` storage."""

    def __init__(self, storage: Storage, policy: LimitsPolicy) -> None:
        self.storage = storage
        self._limiter = _STRATEGIES[policy.strategy](storage)
        self._tiers = {False: limits.parse(policy.default), True: limits.parse(policy.throttled)}
        # The moving window on a storage that has it is driven through the storage's own two
        # primitives with the limit key built once per user: the same algorithm and data as
        # MovingWindowRateLimiter.hit + get_window_stats, without rebuilding the key twice.
        self._direct = policy.strategy == "moving-window" and isinstance(storage, MovingWindowSupport)
        self._keys: dict[tuple[bool, str], str] = {}

        # the token budget counts with a sliding window counter: a cost of thousands is one
        # increment there, where a moving window would store one entry per token
        self._tokens = limits.parse(policy.tokens) if policy.tokens else None
        self._token_limiter = SlidingWindowCounterRateLimiter(storage) if self._tokens else None

    def tokens_left(self, key: str) -> Hit | None:
        """The user's token budget now (None without ``[limits] tokens``); not allowed when spent."""
        if self._tokens is None or self._token_limiter is None:
            return None
        stats = self._token_limiter.get_window_stats(self._tokens, key)
        remaining = max(0, stats.remaining)
        return Hit(remaining > 0, self._tokens.amount, remaining, max(0.0, stats.reset_time - time.time()))

    def spend_tokens(self, key: str, tokens: int) -> None:
        """Count ``tokens`` against the budget; an answer that overruns it uses up the rest."""
        if self._tokens is None or self._token_limiter is None or tokens <= 0:
            return
        left = max(0, self._token_limiter.get_window_stats(self._tokens, key).remaining)
        if left:
            self._token_limiter.hit(self._tokens, key, cost=min(tokens, left))

    def hit(self, key: str, level: Level | None) -> Hit:
        throttled = level is Level.THROTTLED
        item = self._tiers[throttled]
        if self._direct:
            storage = cast(MovingWindowSupport, self.storage)
            limit_key = self._keys.get((throttled, key))
            if limit_key is None:
                if len(self._keys) >= _KEY_CACHE_LIMIT:
                    self._keys.clear()
                limit_key = self._keys[(throttled, key)] = item.key_for(key)
            expiry = item.get_expiry()
            allowed = storage.acquire_entry(limit_key, item.amount, expiry)
            start, count = storage.get_moving_window(limit_key, item.amount, expiry)
            return Hit(allowed, item.amount, max(0, item.amount - count), max(0.0, start + expiry - time.time()))
        allowed = self._limiter.hit(item, key)
        stats = self._limiter.get_window_stats(item, key)
        return Hit(allowed, item.amount, max(0, stats.remaining), max(0.0, stats.reset_time - time.time()))

    async def ahit(self, key: str, level: Level | None) -> Hit:
        """``hit`` for async code (memory counters never wait on I/O)."""
        return self.hit(key, level)

    #: whether ``hit_checked`` also checks the user's state version (Redis counters do)
    versioned = False

    def hit_checked(self, key: str, level: Level | None, version: str) -> Hit | str:
        """The hit, if the user's state version is ``version``; else the current version (a
        string) and nothing counted. Memory counters keep no versions: any version is current."""
        return self.hit(key, level)

    async def ahit_checked(self, key: str, level: Level | None, version: str) -> Hit | str:
        return self.hit(key, level)

    def version(self, key: str) -> str:
        """The user's state version (``"*"``, any, where no versions are kept)."""
        return ANY_VERSION

    async def aversion(self, key: str) -> str:
        return ANY_VERSION

    async def atokens_left(self, key: str) -> Hit | None:
        """``tokens_left`` for async code."""
        return self.tokens_left(key)

    async def aspend_tokens(self, key: str, tokens: int) -> None:
        """``spend_tokens`` for async code."""
        self.spend_tokens(key, tokens)

    def bump(self, key: str) -> None:
        """Mark a user's state changed for other processes (nothing to do in memory)."""

    def after_fork(self) -> None:
        """In a forked child (memory counters start over with the child's own state)."""

    def reset(self) -> None:
        self.storage.reset()

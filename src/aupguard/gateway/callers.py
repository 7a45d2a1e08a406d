"""Callers the gateway does not know: keyless and bad-key requests, refused before any body
is read, without letting them fill the audit log or hammer the key store.

- :class:`BadKeyThrottle`: wrong keys per client address in a moving window
  (``[gateway] bad_key_limit``, in this process); past it, the address gets 429 without
  its keys being looked up.
- :class:`RefusalSampler`: every such refusal is counted in the metrics, but at most one
  audit row per reason and second is written, its reasons saying how many refusals it
  stands for (``sampled:N``: itself and the N-1 unrecorded since the previous row).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import limits
from limits.strategies import MovingWindowRateLimiter

from ..counters.base import SweptMemoryStorage
from ..ids import new_id
from ..outcome import ERROR_STATUS, Decision

if TYPE_CHECKING:
    from ..engine.safeguards import Safeguards

__all__ = ["BadKeyThrottle", "RefusalSampler", "arefuse_sampled"]


class BadKeyThrottle:
    """Wrong gateway keys from one client address (memory only: each process counts its own)."""

    def __init__(self, rate: str) -> None:
        self._item = limits.parse(rate)
        self._limiter = MovingWindowRateLimiter(SweptMemoryStorage())

    def blocked_for(self, address: str) -> float | None:
        """Seconds until ``address`` may try a key again, or None when it may now."""
        if self._limiter.test(self._item, address):
            return None
        stats = self._limiter.get_window_stats(self._item, address)
        return max(0.0, stats.reset_time - time.time())

    def failed(self, address: str) -> None:
        self._limiter.hit(self._item, address)


class RefusalSampler:
    """Which refusals get an audit row: the first per reason in each ``every`` seconds."""

    def __init__(self, every: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._next: dict[str, float] = {}
        self._unrecorded: Counter[str] = Counter()

    def take(self, reason: str) -> int | None:
        """None: count this refusal but write no row; else the refusals the row stands for."""
        now = self._clock()
        if now < self._next.get(reason, 0.0):
            self._unrecorded[reason] += 1
            return None
        self._next[reason] = now + self._every
        return 1 + self._unrecorded.pop(reason, 0)


async def arefuse_sampled(
    guard: Safeguards, sampler: RefusalSampler, surface: str, error: str, message: str, reason: str
) -> Decision:
    """The refusal, recorded when the sampler says so and counted in the metrics always."""
    stands_for = sampler.take(reason)
    if stands_for is None:
        guard.metrics.decisions[error] += 1  # what recording it would have counted
        return Decision(new_id(), False, ERROR_STATUS[error], error, message)
    return await guard.arefusal(None, surface, error, message, reasons=(reason, f"sampled:{stands_for}"))

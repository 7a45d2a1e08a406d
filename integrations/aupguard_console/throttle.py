"""Login throttling: password tries per reviewer name and per client address, and login
forms per client address, counted in the engine's counter store (shared by every worker
when it is Redis). Checked before the password is hashed, so scrypt is no lever for a flood."""

from __future__ import annotations

import asyncio
import logging

import limits
from limits.strategies import MovingWindowRateLimiter

from aupguard import Safeguards

__all__ = ["LoginThrottle"]

log = logging.getLogger("aupguard.console")


class LoginThrottle:
    def __init__(self, guard: Safeguards) -> None:
        self._limiter = MovingWindowRateLimiter(guard.counters.storage)
        per_name = limits.parse(guard.policy.review.login_attempts)
        self._per_name = per_name
        # an address may try several names (a shared office), but not without bound
        self._per_address = type(per_name)(per_name.amount * 6, per_name.multiples, per_name.namespace)
        self._remote = not guard.counters.storage.__class__.__name__.startswith("Memory")
        self._fail_closed = guard.policy.storage.fail == "closed"

    async def _hit(self, item: limits.RateLimitItem, *key: str) -> bool:
        try:
            if self._remote:  # a network round trip: off the event loop
                return await asyncio.to_thread(self._limiter.hit, item, "aupguard-console", *key)
            return self._limiter.hit(item, "aupguard-console", *key)
        except Exception as exc:  # the counter store is down: [storage] fail decides, as for guarded calls
            log.warning("login throttle unavailable (%s)", exc.__class__.__name__)
            return not self._fail_closed

    async def form_allowed(self, address: str) -> bool:
        """A new login form (a pre-login session row) for this address."""
        return await self._hit(self._per_address, "form", address)

    async def attempt_allowed(self, address: str, name: str) -> bool:
        """One password try: within both the address's and the name's budget."""
        return await self._hit(self._per_address, "address", address) and await self._hit(self._per_name, "name", name)

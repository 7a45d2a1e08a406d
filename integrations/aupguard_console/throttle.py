"""Login throttling: password tries per reviewer name *and* client address, password tries
per client address, and login forms per client address, counted in the engine's counter
store (shared by every worker when it is Redis). Checked before the password is hashed, so
scrypt is no lever for a flood.

Why name and address together: counted per name alone, anyone could lock a reviewer out by
failing their name five times a minute from anywhere. The address is the socket peer's, or
with ``[review] trusted_proxy_header`` the last one the proxy wrote in that header
(:func:`client_address`): a header the client sets itself is never believed."""

from __future__ import annotations

import asyncio
import logging

import limits
from limits.strategies import MovingWindowRateLimiter

from aupguard import Safeguards

__all__ = ["LoginThrottle", "client_address"]

log = logging.getLogger("aupguard.console")


def client_address(peer: str | None, headers: list[str], trusted_header: str | None) -> str:
    """The client address to count login tries against. ``headers`` are the values of
    ``trusted_header`` in the request; a proxy appends the address it saw, so the last entry
    is the one it wrote (the client may have sent any before it). Without a trusted header,
    or when the request did not carry it, the socket peer."""
    if trusted_header is not None:
        entries = [entry.strip() for value in headers for entry in value.split(",")]
        if entries and entries[-1]:
            return entries[-1]
    return peer or "-"


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
        """One password try: within the address's budget and that of the name from this
        address (the address first in the key, so no name can spell another address's key)."""
        return await self._hit(self._per_address, "address", address) and await self._hit(
            self._per_name, "name", address, name
        )

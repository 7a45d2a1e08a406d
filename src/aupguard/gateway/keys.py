"""Per-user gateway keys: ``agk_<key id>_<secret>``, stored as the SHA-256 of the whole key.

A key carries 256 random bits, so a plain SHA-256 is enough to store it (no slow hash
needed, unlike a password); the key id in it finds the row and the hashes are compared in
constant time. The raw key is returned once, by :meth:`GatewayKeys.create`; the store never
sees it. A key names its user by the user's hash (the raw id is not kept anywhere), so it
stays valid only while that hash is current: after the hash key rotates, re-issue keys
(a key under a retired hash key is refused rather than let its user escape their standing).

Looking a key up is the gateway's ``identify`` step, on every request: results are kept in
process memory for ``[gateway] key_cache`` (default 1 s), so a revocation made by another
process takes effect within that time, and at once in the process that made it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import AupguardError
from ..identity import HashedUser
from ..ids import new_id
from ..stores.records import AuditEvent

if TYPE_CHECKING:
    from ..engine.safeguards import Safeguards

__all__ = ["GatewayKeys", "IssuedKey", "KeyInfo"]

PREFIX = "agk_"
_KEY = re.compile(r"agk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
_CACHE_LIMIT = 65_536


@dataclass(frozen=True, slots=True, repr=False)
class IssuedKey:
    key_id: str
    key: str  # shown once; never stored
    user_hash: str

    def __repr__(self) -> str:  # never show the key
        return f"IssuedKey(key_id={self.key_id!r}, user_hash={self.user_hash!r})"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    user_hash: str
    created_at: float
    revoked_at: float | None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


class GatewayKeys:
    """The gateway keys of one engine's store."""

    def __init__(
        self, guard: Safeguards, *, cache_for: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.guard = guard
        self._cache_for = guard.policy.gateway.key_cache if cache_for is None else cache_for
        self._clock = clock
        self._cache: dict[str, tuple[HashedUser | None, float]] = {}  # key hash -> (user, expires)

    def create(self, user_id: str, *, actor: str = "system") -> IssuedKey:
        """A new key for ``user_id``; the audit trail gets a ``gateway_key_created`` event."""
        user_hash = self.guard.hash_user(user_id)
        key_id = secrets.token_hex(6)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = time.time()
        event = AuditEvent(
            new_id(), now, user_hash, "gateway_key_created", actor, "gateway key issued", {"key_id": key_id}
        )
        self.guard.store.put_gateway_key(key_id, _digest(key), user_hash, now, event)
        return IssuedKey(key_id, key, user_hash)

    def revoke(self, key_id: str, *, actor: str = "system", reason: str = "revoked") -> None:
        """Revoke a key; the audit trail gets a ``gateway_key_revoked`` event for its user."""
        now = time.time()

        def event(user_hash: str) -> AuditEvent:
            return AuditEvent(new_id(), now, user_hash, "gateway_key_revoked", actor, reason, {"key_id": key_id})

        if not self.guard.store.revoke_gateway_key(key_id, now, event):
            raise AupguardError(f"no active gateway key {key_id!r}")
        self._cache.clear()  # this process stops accepting it at once

    def list(self, user_id: str | None = None) -> list[KeyInfo]:
        user_hash = None if user_id is None else self.guard.hash_user(user_id)
        return [KeyInfo(r[0], r[2], r[3], r[4]) for r in self.guard.store.gateway_keys(user_hash=user_hash)]

    def user_for(self, key: str | None) -> HashedUser | None:
        """The user a key stands for, or None (no key, a wrong, revoked or stale one)."""
        if not key:
            return None
        digest, cached = self._cached(key)
        if cached is not None:
            return cached[0]
        return self._remember(digest, self._look_up(key, digest))

    async def auser_for(self, key: str | None) -> HashedUser | None:
        """``user_for`` for the event loop: a cached key inline, a store read in a thread."""
        if not key:
            return None
        digest, cached = self._cached(key)
        if cached is not None:
            return cached[0]
        if _KEY.fullmatch(key) is None:  # not even the shape of a key: no store read, no thread
            return None
        return self._remember(digest, await asyncio.to_thread(self._look_up, key, digest))

    def _cached(self, key: str) -> tuple[str, tuple[HashedUser | None] | None]:
        """The key's digest, and what the cache still knows of it (None: ask the store)."""
        digest = _digest(key) if key.isascii() else ""
        cached = self._cache.get(digest)
        return digest, (cached[0],) if cached is not None and cached[1] > self._clock() else None

    def _look_up(self, key: str, digest: str) -> HashedUser | None:
        match = _KEY.fullmatch(key)
        if match is None:
            return None
        row = self.guard.store.gateway_key(match.group(1))
        if row is None or row[4] is not None or not hmac.compare_digest(row[1], digest):
            return None
        if not row[2].startswith(self.guard.hasher.keyring.current.kid + "_"):
            return None  # issued under a retired hash key: the user's standing lives under the new hash
        return HashedUser(row[2])

    def _remember(self, digest: str, user: HashedUser | None) -> HashedUser | None:
        if digest:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[digest] = (user, self._clock() + self._cache_for)
        return user

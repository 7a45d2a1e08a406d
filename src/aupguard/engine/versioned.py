"""The guarded call against Redis counters: the user's standing checked against the state
version kept in Redis, in the same round trip as the rate-limit hit.

Every change to a user (strike, suspension, reinstatement, terms, void) bumps a version
counter in Redis once the store has committed it. The hit script returns nothing counted and
the current version when the version this process's cached state was loaded at is older; the
process then reloads the user from the store and decides again. So a suspension made by any
worker, host or the CLI refuses the user's very next request everywhere, while a guarded call
for an unchanged user still costs one Redis command and no SQL. A user refused by their
standing (suspended, terms) costs one version read, so a reinstatement is seen at once too.
The store's change feed stays as the backstop when Redis is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ..counters.base import Counters, Hit
from ..counters.redis import ANY_VERSION, RedisCounters
from ..ladder import UserState
from ..outcome import Decision

if TYPE_CHECKING:
    from .safeguards import Ready
    from .state_cache import StateCache

__all__ = ["VersionedDecisions"]

_BY_STANDING = frozenset({"user_suspended", "terms_not_accepted"})
_MAX_VERSIONS = 65_536


class VersionedDecisions:
    """Mixed into :class:`~aupguard.engine.safeguards.Safeguards`, which provides these attributes."""

    counters: Counters  # Redis's when these methods run (``counters.versioned``)
    _cache: StateCache
    _token_budget: bool
    _versions: dict[str, str]
    _standing: Callable[[str, UserState | None, float], Decision | Ready]
    _throttled: Callable[[Ready, Hit | None, Callable[..., Hit]], Decision]
    _fresh_state: Callable[[str, str], UserState]
    _load_state: Callable[[str], UserState]

    def _note_version(self, user_hash: str, version: str) -> None:
        if len(self._versions) >= _MAX_VERSIONS:
            self._versions.clear()
        self._versions[user_hash] = version

    def _refresh(self, user_hash: str) -> UserState:
        state = self._load_state(user_hash)
        self._cache.put(state)
        return state

    def _decide_versioned(self, user_id: str, user_hash: str, state: UserState | None, now: float) -> Decision:
        counters = cast(RedisCounters, self.counters)
        if state is None:  # the version first: a change committed meanwhile then reads as stale
            self._note_version(user_hash, counters.version(user_hash))
            state = self._fresh_state(user_id, user_hash)
        for attempt in (0, 1):  # a second pass decides on what it loaded, whatever happens meanwhile
            expected = self._versions.get(user_hash, "") if attempt == 0 else ANY_VERSION
            ready = self._standing(user_hash, state, now)
            if isinstance(ready, Decision):
                if attempt == 0 and ready.error in _BY_STANDING:
                    current = counters.version(user_hash)
                    if current not in (expected, ANY_VERSION):
                        self._note_version(user_hash, current)
                        state = self._refresh(user_hash)
                        continue
                return ready
            budget = counters.tokens_left(user_hash) if self._token_budget else None
            hit = counters.hit_checked(user_hash, ready[3], expected)
            if isinstance(hit, str):
                self._note_version(user_hash, hit)
                state = self._refresh(user_hash)
                continue
            return self._throttled(ready, budget, lambda level, got=hit: got)
        raise AssertionError("unreachable: the second pass accepts any version")

    async def _adecide_versioned(self, user_id: str, user_hash: str, state: UserState | None, now: float) -> Decision:
        counters = cast(RedisCounters, self.counters)
        if state is None:
            self._note_version(user_hash, await counters.aversion(user_hash))
            state = await asyncio.to_thread(self._fresh_state, user_id, user_hash)
        for attempt in (0, 1):
            expected = self._versions.get(user_hash, "") if attempt == 0 else ANY_VERSION
            ready = self._standing(user_hash, state, now)
            if isinstance(ready, Decision):
                if attempt == 0 and ready.error in _BY_STANDING:
                    current = await counters.aversion(user_hash)
                    if current not in (expected, ANY_VERSION):
                        self._note_version(user_hash, current)
                        state = await asyncio.to_thread(self._refresh, user_hash)
                        continue
                return ready
            budget = await asyncio.to_thread(counters.tokens_left, user_hash) if self._token_budget else None
            hit = await counters.ahit_checked(user_hash, ready[3], expected)
            if isinstance(hit, str):
                self._note_version(user_hash, hit)
                state = await asyncio.to_thread(self._refresh, user_hash)
                continue
            return self._throttled(ready, budget, lambda level, got=hit: got)
        raise AssertionError("unreachable: the second pass accepts any version")

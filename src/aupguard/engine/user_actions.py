"""The user actions of the engine (strike, void, suspend, reinstate, accept terms, status),
and how each is described in the audit trail. Each is one store transaction that also
writes its audit events; the async twins run the store work in a worker thread."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import UnknownStrike
from ..ids import new_id
from ..ladder import (
    UserState,
    UserStatus,
    derive_status,
    lift_after_void,
    strikes_to_keep,
    suspension_after_strike,
)
from ..policy.config import LadderPolicy, Policy
from ..stores import AuditEvent, SQLStore, StrikeRecord
from ..stores.records import Describe
from ..timestamps import LATEST
from .changes import StrikeResult, describe_change
from .state_cache import StateCache

if TYPE_CHECKING:
    from ..counters.base import Counters
    from ..identity import UserHasher

__all__ = ["StrikeResult", "UserActions", "describe_change"]


class UserActions:
    """The user actions over the store, the state cache and the counters (a part of
    :class:`~aupguard.engine.safeguards.Safeguards`, which exposes them)."""

    def __init__(
        self,
        policy: Policy,
        hasher: UserHasher,
        store: SQLStore,
        counters: Counters,
        clock: Callable[[], float],
        versions: dict[str, str],
    ) -> None:
        self.policy = policy
        self.hasher = hasher
        self.store = store
        self.counters = counters
        self._clock = clock
        self.versions = versions  # shared with the pipeline: the state versions it has seen
        self._keep = strikes_to_keep(policy.ladder)
        self.cache = StateCache(store, self.load_state, sync_interval=policy.storage.sync_interval)

    def changed(self, user_hash: str) -> None:
        """After a change is committed: tell the other processes (Redis counters bump the
        user's state version), and let this one reload at its next call rather than trust a
        version another process may have bumped meanwhile."""
        self.counters.bump(user_hash)
        self.versions.pop(user_hash, None)

    def load_state(self, user_hash: str) -> UserState:
        return self.store.load_user(user_hash, window_start=self._clock() - self.policy.ladder.window, keep=self._keep)

    def fresh_state(self, user_id: str, user_hash: str) -> UserState:
        """Load from the store (and cache); a user known only under a previous key is
        carried over."""
        return self.cache.fetch(user_hash, lambda: self._load_carrying_over(user_id, user_hash))

    def _load_carrying_over(self, user_id: str, user_hash: str) -> UserState:
        state = self.load_state(user_hash)
        if state.is_new:
            for old in self.hasher.previous_hashes(user_id):
                if self.store.has_user(old):
                    kid = old.split("_")[0]
                    event = AuditEvent(
                        new_id(), self._clock(), user_hash, "rekey", "system", "hash key rotated", {"from_key": kid}
                    )
                    self.store.rekey_user(old, user_hash, event=event)
                    self.changed(user_hash)
                    return self.load_state(user_hash)
        return state

    def status(self, user_id: str) -> UserStatus:
        """The user's standing now, read from the store (exact strike count)."""
        user_hash = self.hasher.hash(user_id)
        state = self.fresh_state(user_id, user_hash)
        now = self._clock()
        count = self.store.count_strikes(user_hash, since=now - self.policy.ladder.window)
        return derive_status(state, self.policy.ladder, now, count)

    def status_by_hash(self, user_hash: str) -> UserStatus:
        """``status`` for a user known only by hash (the review console and report)."""
        state = self.cache.fetch(user_hash, lambda: self.load_state(user_hash))
        now = self._clock()
        count = self.store.count_strikes(user_hash, since=now - self.policy.ladder.window)
        return derive_status(state, self.policy.ladder, now, count)

    def strikes(self, user_id: str, *, limit: int = 100) -> list[StrikeRecord]:
        """The user's strike ledger, newest first, voided strikes included."""
        return self.store.strikes(self.hasher.hash(user_id), limit=limit)

    def _known_hash(self, user_id: str) -> str:
        """The user's hash, after carrying their records over from a previous key if needed
        (every action goes through here, so no action can write under the new hash first)."""
        user_hash = self.hasher.hash(user_id)
        if self.cache.get(user_hash) is None:
            self.fresh_state(user_id, user_hash)
        return user_hash

    def mutate(
        self,
        user_hash: str,
        describe: Describe,
        consequence: Callable[[UserState, LadderPolicy, float], Mapping[str, object] | None] | None = None,
        **change: Any,
    ) -> UserStatus:
        now = self._clock()
        ladder = self.policy.ladder
        after = self.store.mutate(
            user_hash,
            window_start=now - ladder.window,
            keep=self._keep,
            describe=describe,
            at=now,
            follow_up=None if consequence is None else (lambda state: consequence(state, ladder, now)),
            **change,
        )
        self.cache.put(after)
        self.changed(user_hash)
        count = self.store.count_strikes(user_hash, since=now - self.policy.ladder.window)
        return derive_status(after, self.policy.ladder, now, count)

    def strike(
        self,
        user_id: str,
        *,
        reason: str,
        category: str = "unspecified",
        source: str = "manual",
        actor: str = "system",
    ) -> StrikeResult:
        """Record a violation. The level follows from the strikes inside the window."""
        user_hash = self._known_hash(user_id)
        record = StrikeRecord(new_id(), user_hash, self._clock(), reason, category, source, actor)
        describe = describe_change(
            self.policy.ladder,
            self._clock(),
            "strike",
            actor,
            reason,
            {"strike_id": record.id, "category": category, "source": source},
        )
        return StrikeResult(record, self.mutate(user_hash, describe, suspension_after_strike, strike=record))

    def void_strike(self, strike_id: str, *, reason: str, actor: str = "system") -> UserStatus:
        """Void a strike (an upheld appeal, a false positive): the user de-escalates at once."""
        record = self.store.find_strike(strike_id)
        if record is None:
            raise UnknownStrike(f"no strike has id {strike_id!r}")
        if record.voided_at is not None:  # already voided: nothing changes, nothing to record
            now = self._clock()
            count = self.store.count_strikes(record.user_hash, since=now - self.policy.ladder.window)
            state = self.cache.get(record.user_hash) or self.load_state(record.user_hash)
            return derive_status(state, self.policy.ladder, now, count)
        describe = describe_change(
            self.policy.ladder,
            self._clock(),
            "void_strike",
            actor,
            reason,
            {"strike_id": strike_id},
        )
        return self.mutate(record.user_hash, describe, lift_after_void, void=(strike_id, reason))

    def suspend(
        self,
        user_id: str,
        *,
        reason: str,
        until: dt.datetime | float | None = None,
        actor: str = "system",
    ) -> UserStatus:
        """Suspend now, until ``until`` (an aware datetime or epoch seconds, in the future and
        before year 9999) or until reinstated. The ladder never lifts or shortens it."""
        end = _suspension_end(until, self._clock())
        return self.suspend_by_hash(self._known_hash(user_id), reason=reason, until=end, actor=actor)

    def suspend_by_hash(
        self, user_hash: str, *, reason: str, until: dt.datetime | float | None = None, actor: str = "system"
    ) -> UserStatus:
        """``suspend`` for a user known only by hash (the review console and report)."""
        end = _suspension_end(until, self._clock())
        fields = {"suspended": 1, "suspended_until": end, "suspend_reason": reason, "suspend_auto": 0}
        describe = describe_change(self.policy.ladder, self._clock(), "suspend", actor, reason, {"until": end})
        return self.mutate(user_hash, describe, user_fields=fields)

    def reinstate(self, user_id: str, *, reason: str = "reinstated", actor: str = "system") -> UserStatus:
        """Lift any suspension and start the ladder afresh: earlier strikes stay in the
        ledger but no longer count."""
        return self.reinstate_by_hash(self._known_hash(user_id), reason=reason, actor=actor)

    def reinstate_by_hash(self, user_hash: str, *, reason: str = "reinstated", actor: str = "system") -> UserStatus:
        """``reinstate`` for a user known only by hash (the review console and report)."""
        fields = {
            "suspended": 0,
            "suspended_until": None,
            "suspend_reason": None,
            "suspend_auto": 0,
            "reset_at": self._clock(),
        }
        describe = describe_change(self.policy.ladder, self._clock(), "reinstate", actor, reason, {})
        return self.mutate(user_hash, describe, user_fields=fields)

    def accept_terms(self, user_id: str, version: str, *, actor: str = "user") -> UserStatus:
        """Record that the user accepted the usage policy ``version``."""
        if not isinstance(version, str) or not version.strip():
            raise ValueError("terms version must be a non-empty string")
        fields = {"terms_version": version, "terms_at": self._clock()}
        describe = describe_change(
            self.policy.ladder,
            self._clock(),
            "accept_terms",
            actor,
            f"accepted terms {version}",
            {"version": version},
        )
        return self.mutate(self._known_hash(user_id), describe, user_fields=fields)

    # async flavours of the user actions: the store work runs in a worker thread
    async def astatus(self, user_id: str) -> UserStatus:
        return await asyncio.to_thread(self.status, user_id)

    async def astrike(self, /, user_id: str, **kwargs: Any) -> StrikeResult:
        return await asyncio.to_thread(lambda: self.strike(user_id, **kwargs))

    async def avoid_strike(self, /, strike_id: str, **kwargs: Any) -> UserStatus:
        return await asyncio.to_thread(lambda: self.void_strike(strike_id, **kwargs))

    async def asuspend(self, /, user_id: str, **kwargs: Any) -> UserStatus:
        return await asyncio.to_thread(lambda: self.suspend(user_id, **kwargs))

    async def areinstate(self, /, user_id: str, **kwargs: Any) -> UserStatus:
        return await asyncio.to_thread(lambda: self.reinstate(user_id, **kwargs))

    async def aaccept_terms(self, /, user_id: str, version: str, **kwargs: Any) -> UserStatus:
        return await asyncio.to_thread(lambda: self.accept_terms(user_id, version, **kwargs))


def _suspension_end(until: object, now: float) -> float | None:
    if until is None:
        return None
    if isinstance(until, dt.datetime):
        if until.tzinfo is None:
            raise ValueError("suspend(until=...) needs a timezone-aware datetime")
        end = until.timestamp()
    elif isinstance(until, int | float) and not isinstance(until, bool):
        end = float(until)
    else:
        raise TypeError("suspend(until=...) takes a datetime, epoch seconds or None")
    if not now < end < LATEST:  # also refuses NaN
        raise ValueError("a suspension must end in the future and before the year 9999")
    return end

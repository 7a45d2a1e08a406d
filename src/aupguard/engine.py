"""``Safeguards``: the engine every adapter drives.

``check`` / ``acheck`` decide one guarded call from in-memory state (no SQL for a known user)
and queue its audit record. The user actions (strike, suspend, ...) write through to the
store in one transaction each, update this process's cache at once, and reach other
processes through the store's change feed.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from .audit import AuditLog, AuditRow
from .decision import ERROR_STATUS, Decision
from .errors import InvalidUserId, UnknownStrike
from .gates import Refusal, account_gate, standing_gate, throttle_gate, warning_for
from .identity import Keyring, UserHasher
from .ids import new_id
from .ladder import (
    Level,
    UserState,
    UserStatus,
    derive_status,
    lift_after_void,
    status_expires,
    strikes_to_keep,
    suspension_after_strike,
)
from .policy import LadderPolicy, Policy
from .state_cache import StateCache
from .stores import AuditEvent, StrikeRecord, store_from_uri
from .stores.records import Describe
from .throttle import counters_from_uri
from .user_actions import StrikeResult, describe_change

__all__ = ["Safeguards", "StrikeResult"]

ANONYMOUS = "anonymous"


class Safeguards:
    """The policy engine. ``store`` and ``counters`` override ``[storage]`` in the policy;
    ``keyring`` overrides the key ring named by ``[identity]``; ``clock`` is for simulations."""

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        store: str | None = None,
        counters: str | None = None,
        keyring: Keyring | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy or Policy()
        self._clock = clock
        self.hasher = UserHasher(keyring or Keyring.from_policy(self.policy.identity))
        self.store = store_from_uri(store or self.policy.storage.store)
        self.counters = counters_from_uri(counters or self.policy.storage.counters, self.policy.limits)
        self.audit = AuditLog(self.store, self.hasher, max_queue=self.policy.storage.audit_queue)
        self._keep = strikes_to_keep(self.policy.ladder)
        self._cache = StateCache(self.store, self._load_state, sync_interval=self.policy.storage.sync_interval)
        self._statuses: dict[str, tuple[UserState, float, float, UserStatus]] = {}
        self._closed = False
        self._atexit = _closer(weakref.ref(self))
        atexit.register(self._atexit)

    # -- identity ----------------------------------------------------------------------

    def hash_user(self, user_id: str) -> str:
        """The keyed hash of ``user_id`` that aupguard stores and sends to Anthropic."""
        return self.hasher.hash(user_id)

    # -- the guarded call ----------------------------------------------------------------

    def check(self, user_id: str | None, *, surface: str = "default") -> Decision:
        """Decide whether ``user_id`` may make a call now; record the decision."""
        now = self._clock()
        early = self._identify(user_id, surface, now)
        if isinstance(early, Decision):
            self.audit.record(self._record(early, surface, now))
            return early
        state = self._cache.get(early) if early != ANONYMOUS else None
        if state is None and early != ANONYMOUS:
            state = self._fresh_state(user_id, early)  # type: ignore[arg-type]
        decision = self._decide(early, state, now)
        self.audit.record(self._record(decision, surface, now))
        return decision

    async def acheck(self, user_id: str | None, *, surface: str = "default") -> Decision:
        """``check`` for async code: a store read (a user's first call) runs off the loop."""
        now = self._clock()
        early = self._identify(user_id, surface, now)
        if isinstance(early, Decision):
            await self.audit.arecord(self._record(early, surface, now))
            return early
        state = self._cache.get(early) if early != ANONYMOUS else None
        if state is None and early != ANONYMOUS:
            state = await asyncio.to_thread(self._fresh_state, user_id, early)  # type: ignore[arg-type]
        decision = self._decide(early, state, now)
        await self.audit.arecord(self._record(decision, surface, now))
        return decision

    def _identify(self, user_id: object, surface: str, now: float) -> str | Decision:
        """The user hash (or ANONYMOUS), or a refusal that needs no user state."""
        refusal = account_gate(user_id is not None, self.policy)
        if refusal is not None:
            return self._refuse(new_id(), refusal, None, None)
        if user_id is None:
            return ANONYMOUS
        try:
            return self.hasher.hash(user_id)
        except InvalidUserId as exc:
            return self._refuse(new_id(), Refusal("invalid_request_error", f"Invalid user id: {exc}"), None, None)

    def _decide(self, user_hash: str, state: UserState | None, now: float) -> Decision:
        request_id = new_id()
        status = None if state is None else self._status_at(state, now)
        if status is not None:
            refusal = standing_gate(status, self.policy, now)
            if refusal is not None:
                return self._refuse(request_id, refusal, user_hash, status.level)
        level = None if status is None else status.level
        hit = self.counters.hit(user_hash, level)
        reset_after = int(hit.reset_after + 0.999)
        refusal = throttle_gate(hit, level)
        if refusal is not None:
            return Decision(
                request_id,
                False,
                429,
                refusal.error,
                refusal.message,
                user_hash,
                level,
                hit.limit,
                0,
                reset_after,
                refusal.retry_after,
            )
        return Decision(
            request_id,
            True,
            200,
            None,
            "",
            user_hash,
            level,
            hit.limit,
            hit.remaining,
            reset_after,
            None,
            warning_for(status, self.policy),
        )

    def _status_at(self, state: UserState, now: float) -> UserStatus:
        """``derive_status``, memoised per cached state until time alone could change it."""
        memo = self._statuses.get(state.user_hash)
        if memo is not None and memo[0] is state and memo[1] <= now < memo[2]:
            return memo[3]
        status = derive_status(state, self.policy.ladder, now)
        if len(self._statuses) >= 65_536:
            self._statuses.clear()
        self._statuses[state.user_hash] = (state, now, status_expires(state, self.policy.ladder, now), status)
        return status

    @staticmethod
    def _refuse(request_id: str, refusal: Refusal, user_hash: str | None, level: Level | None) -> Decision:
        return Decision(
            request_id,
            False,
            ERROR_STATUS[refusal.error],
            refusal.error,
            refusal.message,
            user_hash,
            level,
            retry_after=refusal.retry_after,
        )

    @staticmethod
    def _record(decision: Decision, surface: str, now: float) -> AuditRow:
        level = decision.level
        return (
            decision.request_id,
            now,
            decision.user_hash,
            surface,
            "allowed" if decision.allowed else decision.error or "refused",
            decision.status,
            None if level is None else level.value,
            '["warned"]' if decision.warning is not None else "[]",
            None,
            None,
        )

    # -- user state --------------------------------------------------------------------

    def _load_state(self, user_hash: str) -> UserState:
        return self.store.load_user(user_hash, window_start=self._clock() - self.policy.ladder.window, keep=self._keep)

    def _fresh_state(self, user_id: str, user_hash: str) -> UserState:
        """Load from the store; a user known only under a previous key is carried over."""
        state = self._load_state(user_hash)
        if state.is_new:
            for old in self.hasher.previous_hashes(user_id):
                if self.store.has_user(old):
                    event = AuditEvent(
                        new_id(),
                        self._clock(),
                        user_hash,
                        "rekey",
                        "system",
                        "hash key rotated",
                        {"from_key": old.split("_")[0]},
                    )
                    self.store.rekey_user(old, user_hash, event=event)
                    state = self._load_state(user_hash)
                    break
        self._cache.put(state)
        return state

    def status(self, user_id: str) -> UserStatus:
        """The user's standing now, read from the store (exact strike count)."""
        user_hash = self.hasher.hash(user_id)
        state = self._fresh_state(user_id, user_hash)
        now = self._clock()
        count = self.store.count_strikes(user_hash, since=now - self.policy.ladder.window)
        return derive_status(state, self.policy.ladder, now, count)

    def strikes(self, user_id: str, *, limit: int = 100) -> list[StrikeRecord]:
        """The user's strike ledger, newest first, voided strikes included."""
        return self.store.strikes(self.hasher.hash(user_id), limit=limit)

    def _mutate(
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
        self._cache.put(after)
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
        user_hash = self.hasher.hash(user_id)
        if self._cache.get(user_hash) is None:  # carries a user over from a previous key
            self._fresh_state(user_id, user_hash)
        record = StrikeRecord(new_id(), user_hash, self._clock(), reason, category, source, actor)
        describe = describe_change(
            self.policy.ladder,
            self._clock(),
            "strike",
            actor,
            reason,
            {"strike_id": record.id, "category": category, "source": source},
        )
        return StrikeResult(record, self._mutate(user_hash, describe, suspension_after_strike, strike=record))

    def void_strike(self, strike_id: str, *, reason: str, actor: str = "system") -> UserStatus:
        """Void a strike (an upheld appeal, a false positive): the user de-escalates at once."""
        record = self.store.find_strike(strike_id)
        if record is None:
            raise UnknownStrike(f"no strike has id {strike_id!r}")
        describe = describe_change(
            self.policy.ladder,
            self._clock(),
            "void_strike",
            actor,
            reason,
            {"strike_id": strike_id},
        )
        return self._mutate(record.user_hash, describe, lift_after_void, void=(strike_id, reason))

    def suspend(
        self,
        user_id: str,
        *,
        reason: str,
        until: dt.datetime | float | None = None,
        actor: str = "system",
    ) -> UserStatus:
        """Suspend now, until ``until`` (a datetime or epoch seconds) or until reinstated."""
        end = until.timestamp() if isinstance(until, dt.datetime) else until
        fields = {"suspended": 1, "suspended_until": end, "suspend_reason": reason}
        describe = describe_change(self.policy.ladder, self._clock(), "suspend", actor, reason, {"until": end})
        return self._mutate(self.hasher.hash(user_id), describe, user_fields=fields)

    def reinstate(self, user_id: str, *, reason: str = "reinstated", actor: str = "system") -> UserStatus:
        """Lift any suspension and start the ladder afresh: earlier strikes stay in the
        ledger but no longer count."""
        fields = {
            "suspended": 0,
            "suspended_until": None,
            "suspend_reason": None,
            "reset_at": self._clock(),
        }
        describe = describe_change(self.policy.ladder, self._clock(), "reinstate", actor, reason, {})
        return self._mutate(self.hasher.hash(user_id), describe, user_fields=fields)

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
        return self._mutate(self.hasher.hash(user_id), describe, user_fields=fields)

    # async flavours of the user actions: the store work runs in a worker thread
    async def astatus(self, user_id: str) -> UserStatus:
        return await asyncio.to_thread(self.status, user_id)

    async def astrike(self, user_id: str, **kwargs: Any) -> StrikeResult:
        return await asyncio.to_thread(lambda: self.strike(user_id, **kwargs))

    async def avoid_strike(self, strike_id: str, **kwargs: Any) -> UserStatus:
        return await asyncio.to_thread(lambda: self.void_strike(strike_id, **kwargs))

    async def asuspend(self, user_id: str, **kwargs: Any) -> UserStatus:
        return await asyncio.to_thread(lambda: self.suspend(user_id, **kwargs))

    async def areinstate(self, user_id: str, **kwargs: Any) -> UserStatus:
        return await asyncio.to_thread(lambda: self.reinstate(user_id, **kwargs))

    async def aaccept_terms(self, user_id: str, version: str, **kwargs: Any) -> UserStatus:
        return await asyncio.to_thread(lambda: self.accept_terms(user_id, version, **kwargs))

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Write every queued audit record, stop background threads, close the store."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit)
        self.audit.close()
        self._cache.close()
        self.store.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Safeguards:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _closer(ref: weakref.ref[Safeguards]) -> Callable[[], None]:
    """Flush and close at interpreter exit, without keeping the engine alive until then."""

    def close() -> None:
        guard = ref()
        if guard is not None:
            guard.close()

    return close

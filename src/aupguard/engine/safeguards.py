"""``Safeguards``: the engine every adapter drives.

``check`` / ``acheck`` decide one guarded call from in-memory state (no SQL for a known user)
and queue its audit record. The user actions (strike, suspend, ...) write through to the
store in one transaction each, update this process's cache at once, and reach other
processes through the store's change feed.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import logging
import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ..audit.spill import SpillFile
from ..audit.writer import AuditLog, AuditRow
from ..capture.recorder import Capture
from ..counters.base import counters_from_uri
from ..counters.redis import RedisCounters
from ..errors import InvalidUserId, StoreError
from ..identity import Keyring, UserHasher
from ..ids import new_id
from ..ladder import (
    strikes_to_keep,
)
from ..metrics import Metrics
from ..moderation.base import Moderator
from ..moderation.setup import build_chain
from ..outcome import Decision, Refusal
from ..policy.config import Policy
from ..stores import SQLStore, store_from_uri
from ..telemetry import traced, traced_async
from .gates import standing_gate
from .pipeline import Pipeline
from .prompt_policy import PromptPolicy, PromptRequest
from .screening import Screening
from .state_cache import StateCache
from .steps import reasons_json, refuse, surface_or_default
from .user_actions import StrikeResult

if TYPE_CHECKING:
    import anthropic

__all__ = ["Safeguards", "StrikeResult"]

log = logging.getLogger("aupguard.engine")
ClientT = TypeVar("ClientT", "anthropic.Anthropic", "anthropic.AsyncAnthropic")


class Safeguards(Screening):
    """The policy engine. ``store`` and ``counters`` override ``[storage]`` in the policy;
    ``keyring`` overrides the key ring named by ``[identity]``; ``moderators`` replaces the
    moderators ``[moderation]`` describes (in the order given); ``clock`` is for simulations."""

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        store: str | None = None,
        counters: str | None = None,
        keyring: Keyring | None = None,
        moderators: Sequence[Moderator] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy or Policy()
        self._clock = clock
        self.hasher = UserHasher(keyring or Keyring.from_policy(self.policy.identity))
        self.prompts = PromptPolicy(self.policy.prompts)
        self.moderation = build_chain(self.policy.moderation, moderators, self.hasher.keyring.current.secret)
        self.store = store_from_uri(
            store or self.policy.storage.store,
            migrate=self.policy.storage.migrate == "on-start",
            pool_size=self.policy.storage.pool_size,
            timeout=self.policy.storage.store_timeout,
        )
        self.counters = counters_from_uri(
            counters or self.policy.storage.counters, self.policy.limits, self.policy.storage
        )
        self.unavailable = 0  # calls answered 503 because a store could not be reached
        self._versions: dict[str, str] = {}  # user hash -> the state version its cached state has
        self.audit = AuditLog(
            self.store, self.hasher, max_queue=self.policy.storage.audit_queue, spill=spill_for(self.store, self.policy)
        )
        self.capture = Capture(self.policy.capture, self.store, self.audit, self.hasher, self._clock)
        self._keep = strikes_to_keep(self.policy.ladder)
        self._cache = StateCache(self.store, self._load_state, sync_interval=self.policy.storage.sync_interval)
        self.audit.on_flag = self.record_flag
        self.metrics = Metrics()
        self.pipeline = Pipeline(self)
        self.moderation.observe = self.metrics.moderation
        _register_figures(self)
        self._closed = False
        self._atexit = _weakly(self, lambda guard: guard.close())
        atexit.register(self._atexit)
        os.register_at_fork(after_in_child=_weakly(self, lambda guard: guard._after_fork()))

    # -- identity ----------------------------------------------------------------------

    def hash_user(self, user_id: str) -> str:
        """The keyed hash of ``user_id`` that aupguard stores and sends to Anthropic."""
        return self.hasher.hash(user_id)

    # -- the Anthropic client ------------------------------------------------------------

    def instrument(self, client: ClientT) -> ClientT:
        """A copy of an ``anthropic.Anthropic`` / ``AsyncAnthropic`` client whose Messages calls
        carry the current user's hashed id as ``metadata.user_id`` and are linked to the audit
        record (see :mod:`aupguard.engine.instrument`)."""
        from .instrument import instrument

        return instrument(self, client)

    def as_user(self, user_id: str, decision: Decision | None = None) -> contextlib.AbstractContextManager[None]:
        """``with guard.as_user("u-42"):`` makes that user current for instrumented calls;
        each call is then checked and recorded on its own. With the ``decision`` of a
        ``check`` already made, the calls are linked to that record instead (no second check)."""
        from .instrument import as_user

        if decision is not None and decision.user_hash != self.hasher.hash(user_id):
            raise ValueError("the decision was made for another user")
        self.hasher.hash(user_id)  # a bad id fails here, not inside the SDK
        return as_user(user_id, decision)

    # -- the guarded call ----------------------------------------------------------------

    @traced("aupguard.check")
    def check(
        self,
        user_id: str | None,
        *,
        surface: str = "default",
        prompt: str | PromptRequest | None = None,
        defer_moderation: bool = False,
        client_key: str | None = None,
    ) -> Decision:
        """Decide whether ``user_id`` may make a call now, and record the decision. With a
        ``prompt``, also apply the prompt policy and (``[moderation] mode = "before"``) the
        moderators; the decision then carries the resolved prompt to send to Claude.
        ``defer_moderation=True`` (with ``[moderation] mode = "parallel"``) leaves the verdict
        to the caller: the decision comes back with ``moderation_pending``, and the caller
        must run :meth:`screen` / :meth:`ascreen` before answering (``acall`` does).
        ``client_key`` (the client address, say) is what an anonymous call (``user_id`` None,
        ``[identity] require_account = false``) is rate-limited by; it is hashed like a user id."""
        steps = self.pipeline.steps(user_id, surface, prompt, defer_moderation, client_key)
        return self.pipeline.run(steps)

    @traced_async("aupguard.check")
    async def acheck(
        self,
        user_id: str | None,
        *,
        surface: str = "default",
        prompt: str | PromptRequest | None = None,
        defer_moderation: bool = False,
        client_key: str | None = None,
    ) -> Decision:
        """``check`` for async code: store reads, Redis and remote moderators never block the loop."""
        steps = self.pipeline.steps(user_id, surface, prompt, defer_moderation, client_key)
        return await self.pipeline.arun(steps)

    def standing(self, user_id: str, *, surface: str = "default") -> Decision | None:
        """The refusal a call by ``user_id`` gets for the user's standing alone (terms not
        accepted, suspended), recorded like any refusal; None when the standing allows calls.
        No rate limit is counted and an allowed call leaves no record: for requests that reach
        Anthropic's API without Claude answering (``count_tokens`` through the gateway). The
        standing is read from the store (strikes counted exactly); a store that cannot be read
        gives 503 ``safeguards_unavailable``. ``user_id`` is a raw id or a ``HashedUser``."""
        now = self._clock()
        user_hash = self.hasher.hash(user_id)
        try:
            status = self.status_by_hash(user_hash)
        except StoreError as exc:  # 503, recorded, as a guarded call gets
            decision = self.unavailable_decision(user_hash, exc)
        else:
            refusal = standing_gate(status, self.policy, now)
            if refusal is None:
                return None
            decision = refuse(new_id(), refusal, user_hash, status.level)
        self.audit.record(self.record_row(decision, surface_or_default(surface), now))
        return decision

    async def astanding(self, user_id: str, *, surface: str = "default") -> Decision | None:
        """``standing`` for async code (the store read runs off the loop)."""
        return await asyncio.to_thread(self.standing, user_id, surface=surface)

    def spend_tokens(self, decision: Decision, tokens: int) -> None:
        """Count an answer's tokens (``usage``) against the user's ``[limits] tokens`` budget;
        instrumented clients do it themselves for answers that are not streamed."""
        key = decision.user_hash or decision.anonymous_key
        if key is not None:
            self.counters.spend_tokens(key, tokens)

    def capture_completion(self, decision: Decision, text: str) -> None:
        """Capture Claude's answer to a guarded call (``[capture]``; instrumented clients do
        it themselves for answers that are not streamed)."""
        self.capture.record(decision, "completion", text)

    async def acapture(self, decision: Decision, kind: str, text: str) -> None:
        """Capture from async code: a user's first capture reads their key off the loop."""
        if decision.user_hash is not None and not self.capture.has_key(decision.user_hash):
            await asyncio.to_thread(self.capture.record, decision, kind, text)
        else:
            self.capture.record(decision, kind, text)

    @traced("aupguard.check", surface_at=1)
    def refusal(
        self, user_id: str | None, surface: str, error: str, message: str, *, reasons: tuple[str, ...] = ()
    ) -> Decision:
        """Record and return a refusal an adapter decided before the engine could (a body
        too large or malformed): every refused request has its audit record too.
        ``reasons``: text-free reasons for the record."""
        decision, row = self._adapter_refusal(user_id, surface, error, message, reasons)
        self.audit.record(row)
        return decision

    @traced_async("aupguard.check", surface_at=1)
    async def arefusal(
        self, user_id: str | None, surface: str, error: str, message: str, *, reasons: tuple[str, ...] = ()
    ) -> Decision:
        decision, row = self._adapter_refusal(user_id, surface, error, message, reasons)
        await self.audit.arecord(row)
        return decision

    def _adapter_refusal(
        self, user_id: str | None, surface: str, error: str, message: str, reasons: tuple[str, ...] = ()
    ) -> tuple[Decision, AuditRow]:
        try:
            user_hash = None if user_id is None else self.hasher.hash(user_id)
        except InvalidUserId:
            user_hash = None
        decision = refuse(new_id(), Refusal(error, message), user_hash, None)
        if reasons:
            decision = decision._replace(reasons=reasons)
        return decision, self.record_row(decision, surface_or_default(surface), self._clock())

    def unavailable_decision(self, user_hash: str | None, exc: Exception) -> Decision:
        """The store (loading a user not cached yet) or, with ``fail = "closed"``, the counter
        store cannot be reached: 503, recorded like any other refusal."""
        self.unavailable += 1
        log.warning("answering 503: %s", exc.__class__.__name__)
        message = "Safeguards are temporarily unavailable. Retry shortly."
        return refuse(new_id(), Refusal("safeguards_unavailable", message, 1), user_hash, None)

    def record_row(self, decision: Decision, surface: str, now: float) -> AuditRow:
        """The audit row of ``decision`` (and its count in the metrics)."""
        level = decision.level
        outcome = "allowed" if decision.allowed else decision.error or "refused"
        self.metrics.decisions[outcome] += 1
        return (
            decision.request_id,
            now,
            decision.user_hash,
            surface,
            outcome,
            decision.status,
            None if level is None else level.value,
            reasons_json(decision),
            None,
            None,
        )

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
        for moderator in self.moderation.moderators:  # remote moderators' connections
            close = getattr(moderator, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()

    def _after_fork(self) -> None:
        """Make an engine created before ``fork()`` work in the child (gunicorn --preload,
        multiprocessing): new store connections, its own audit writer and change watcher."""
        if self._closed:
            return
        self.store.after_fork()
        self.counters.after_fork()
        self.audit.after_fork()
        self._cache.after_fork()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Safeguards:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _register_figures(guard: Safeguards) -> None:
    """The figures read when metrics are scraped."""
    audit, counters, add = guard.audit, guard.counters, guard.metrics.read_at_scrape
    spill = audit._spill
    add(
        "aupguard_audit_queue_depth",
        "Audit operations waiting to be written.",
        "gauge",
        lambda: [("", audit.pending())],
    )
    add(
        "aupguard_store_errors_total",
        "Failed writes and reads of the durable store, by who saw them.",
        "counter",
        lambda: [
            ('source="audit"', audit.failures),
            ('source="state_sync"', guard._cache.failures),
            ('source="flags"', guard.flag_failures),
        ],
    )
    add(
        "aupguard_unavailable_total",
        "Guarded calls answered 503 safeguards_unavailable.",
        "counter",
        lambda: [("", guard.unavailable)],
    )
    add(
        "aupguard_audit_spilled_total",
        "Audit operations written to the spill file (store down).",
        "counter",
        lambda: [("", 0 if spill is None else spill.spilled)],
    )
    add(
        "aupguard_audit_spill_bytes",
        "Bytes waiting in this process's spill file.",
        "gauge",
        lambda: [("", 0 if spill is None else spill.bytes)],
    )
    add(
        "aupguard_audit_spill_full",
        "1 while the spill file is at its bound (writers wait).",
        "gauge",
        lambda: [("", int(spill is not None and spill.full))],
    )
    if isinstance(counters, RedisCounters):
        add(
            "aupguard_counter_store_errors_total",
            "Failed Redis operations.",
            "counter",
            lambda: [("", counters.errors)],
        )
        add("aupguard_counter_store_up", "1 when Redis answers, 0 while serving from the fallback.", "gauge",
            lambda: [("", int(counters.available))])  # fmt: skip


def spill_for(store: SQLStore, policy: Policy) -> SpillFile | None:
    """The spill file of a store that can be down (not ``memory://``): one folder per store,
    so records are only ever replayed into the store they were meant for."""
    if not store.shared:
        return None
    folder = hashlib.sha256(store.uri.encode()).hexdigest()[:16]
    return SpillFile(os.path.join(os.path.abspath(policy.storage.spill), folder), policy.storage.spill_max)


def _weakly(guard: Safeguards, act: Callable[[Safeguards], None]) -> Callable[[], None]:
    """``act(guard)`` for a hook that runs later (at exit, in a forked child), without keeping
    the engine alive until then."""
    ref = weakref.ref(guard)

    def call() -> None:
        alive = ref()
        if alive is not None:
            act(alive)

    return call

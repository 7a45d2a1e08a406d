"""``Safeguards``: the engine every adapter drives, a facade over its parts.

The parts: the users (:mod:`~aupguard.engine.user_actions`: standing, strikes, suspensions,
written through to the store in one transaction each), the screening
(:mod:`~aupguard.engine.screening`: prompt policy and moderators, and what a verdict costs),
the pipeline (:mod:`~aupguard.engine.pipeline`: the guarded call, written once, with a sync
and an async driver), the records (:mod:`~aupguard.engine.records`), the capture and the
audit log. The facade builds them from the policy and exposes their public methods.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ..audit.writer import AuditLog
from ..capture.recorder import Capture
from ..counters.registry import counters_from_uri
from ..identity import Keyring, UserHasher
from ..metrics import Metrics
from ..moderation.base import Moderator
from ..moderation.setup import build_chain
from ..outcome import Decision
from ..policy.config import Policy
from ..prompts import PromptRequest, ResolvedPrompt
from ..review.appeals import AppealDesk
from ..review.delivery import Notifier
from ..stores import store_from_uri
from ..telemetry.checks import arun_traced, run_traced
from ..telemetry.tracer import quiet
from .calls import aguarded_call, guarded_call
from .delegate import delegate
from .lifecycle import register_figures, spill_for, weakly
from .output_stream import OutputStream
from .pipeline import Pipeline
from .prompt_policy import PromptPolicy
from .records import Records
from .screening import Screening
from .user_actions import StrikeResult, UserActions

if TYPE_CHECKING:
    import anthropic

__all__ = ["Safeguards", "StrikeResult"]

T = TypeVar("T")
ClientT = TypeVar(
    "ClientT",
    "anthropic.Anthropic",
    "anthropic.AsyncAnthropic",
    "anthropic.AnthropicBedrock",
    "anthropic.AsyncAnthropicBedrock",
    "anthropic.AnthropicVertex",
    "anthropic.AsyncAnthropicVertex",
)


class Safeguards:
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
        self.policy = policy = policy or Policy()
        self._clock = clock
        self.hasher = UserHasher(keyring or Keyring.from_policy(policy.identity))
        self.prompts = PromptPolicy(policy.prompts)
        self.moderation = build_chain(policy.moderation, moderators, self.hasher.keyring.current.secret)
        storage = policy.storage
        self.store = store_from_uri(
            store or storage.store,
            migrate=storage.migrate == "on-start",
            pool_size=storage.pool_size,
            timeout=storage.store_timeout,
        )
        self.counters = counters_from_uri(counters or storage.counters, policy.limits, storage)
        self.audit = AuditLog(
            self.store, self.hasher, max_queue=storage.audit_queue, spill=spill_for(self.store, policy)
        )
        self.capture = Capture(policy.capture, self.store, self.audit, self.hasher, clock)
        self.metrics = Metrics()
        self.users = UserActions(policy, self.hasher, self.store, self.counters, clock, {})
        self.screening = Screening(policy, self.prompts, self.moderation, self.audit, self.users, clock)
        self.records = Records(policy, self.hasher, self.audit, self.users, self.metrics, clock)
        self.pipeline = Pipeline(
            policy, clock, self.hasher, self.users, self.screening, self.counters, self.capture, self.audit,
            self.records,
        )  # fmt: skip
        self.audit.on_flag = self.screening.record_flag
        self.moderation.observe = self.metrics.moderation
        register_figures(self.metrics, self.audit, self.counters, self.users.cache, self.screening, self.records)
        self.appeals = AppealDesk(policy, self.hasher, self.store, self.users, self.audit, clock)
        self.notifier = Notifier(policy, self.store, self.metrics, clock) if policy.notify.webhooks else None
        self._closed = False
        self._atexit = weakly(self, lambda guard: guard.close())
        atexit.register(self._atexit)
        os.register_at_fork(after_in_child=weakly(self, lambda guard: guard._after_fork()))

    # -- the guarded call ----------------------------------------------------------------

    def check(
        self,
        user_id: str | None,
        *,
        surface: str = "default",
        prompt: str | PromptRequest | None = None,
        defer_moderation: bool = False,
        client_key: str | None = None,
        enforcement: str | None = None,
    ) -> Decision:
        """Decide whether ``user_id`` may make a call now, and record the decision. With a
        ``prompt``, also apply the prompt policy and (``[moderation] mode = "before"``) the
        moderators; the decision then carries the resolved prompt to send to Claude.
        ``defer_moderation=True`` (with ``[moderation] mode = "parallel"``) leaves the verdict
        to the caller: the decision comes back with ``moderation_pending``, and the caller
        must run :meth:`screen` / :meth:`ascreen` before answering (``acall`` does).
        ``client_key`` (the client address, say) is what an anonymous call (``user_id`` None,
        ``[identity] require_account = false``) is rate-limited by; it is hashed like a user id.
        ``enforcement`` (``"enforce"`` / ``"monitor"``) overrides ``[enforcement] mode`` for this
        call (an adapter's ``enforcement`` option passes it)."""
        if enforcement is not None and enforcement not in _MODES:
            raise ValueError("enforcement must be 'enforce' or 'monitor' (or None for [enforcement] mode)")
        steps = self.pipeline.steps(user_id, surface, prompt, defer_moderation, client_key, enforcement)
        if quiet():  # no span can be recorded: nothing more on the hot path
            return self.pipeline.run(steps)
        return run_traced("aupguard.check", self, surface, lambda: self.pipeline.run(steps))

    async def acheck(
        self,
        user_id: str | None,
        *,
        surface: str = "default",
        prompt: str | PromptRequest | None = None,
        defer_moderation: bool = False,
        client_key: str | None = None,
        enforcement: str | None = None,
    ) -> Decision:
        """``check`` for async code: store reads, Redis and remote moderators never block the loop."""
        if enforcement is not None and enforcement not in _MODES:
            raise ValueError("enforcement must be 'enforce' or 'monitor' (or None for [enforcement] mode)")
        steps = self.pipeline.steps(user_id, surface, prompt, defer_moderation, client_key, enforcement)
        if quiet():
            return await self.pipeline.arun(steps)
        return await arun_traced("aupguard.check", self, surface, lambda: self.pipeline.arun(steps))

    async def acall(
        self,
        user_id: str | None,
        prompt: str | PromptRequest,
        call: Callable[[ResolvedPrompt], Awaitable[T]],
        *,
        surface: str = "default",
    ) -> T:
        """Guard one call: check, screen the prompt (before, or in parallel with ``call``,
        whose result is held until the verdict and discarded on a flag), run ``call``.
        Raises :class:`Refused` with the decision when the call may not proceed."""
        return await aguarded_call(self, user_id, prompt, call, surface)

    def call(
        self,
        user_id: str | None,
        prompt: str | PromptRequest,
        call: Callable[[ResolvedPrompt], T],
        *,
        surface: str = "default",
    ) -> T:
        """``acall`` for sync code; in parallel mode ``call`` runs in a worker thread while
        this thread moderates."""
        return guarded_call(self, user_id, prompt, call, surface)

    standing = delegate("records", Records.standing)
    astanding = delegate("records", Records.astanding)
    refusal = delegate("records", Records.refusal)
    arefusal = delegate("records", Records.arefusal)

    # -- screening (the parts of a call an adapter runs itself) ----------------------------

    screen = delegate("screening", Screening.screen)
    ascreen = delegate("screening", Screening.ascreen)
    screen_output = delegate("screening", Screening.screen_output)
    ascreen_output = delegate("screening", Screening.ascreen_output)
    record_flag = delegate("screening", Screening.record_flag)

    def output_stream(self, decision: Decision) -> OutputStream:
        """Moderate a streamed answer as it arrives: ``feed`` each text chunk, then ``finish``.
        Windows of ``OutputStream.WINDOW`` characters (overlapping, so a phrase split across
        chunks is still seen) are moderated as they fill. A no-op unless ``[moderation] output``."""
        return OutputStream(self.screening, decision)

    # -- the users -------------------------------------------------------------------------

    status = delegate("users", UserActions.status)
    status_by_hash = delegate("users", UserActions.status_by_hash)
    strikes = delegate("users", UserActions.strikes)
    strike = delegate("users", UserActions.strike)
    void_strike = delegate("users", UserActions.void_strike)
    suspend = delegate("users", UserActions.suspend)
    suspend_by_hash = delegate("users", UserActions.suspend_by_hash)
    reinstate = delegate("users", UserActions.reinstate)
    reinstate_by_hash = delegate("users", UserActions.reinstate_by_hash)
    accept_terms = delegate("users", UserActions.accept_terms)
    astatus = delegate("users", UserActions.astatus)
    astrike = delegate("users", UserActions.astrike)
    avoid_strike = delegate("users", UserActions.avoid_strike)
    asuspend = delegate("users", UserActions.asuspend)
    areinstate = delegate("users", UserActions.areinstate)
    aaccept_terms = delegate("users", UserActions.aaccept_terms)

    # -- appeals and the user's notices (aupguard.review.appeals) ------------------------

    appeal = delegate("appeals", AppealDesk.appeal)
    aappeal = delegate("appeals", AppealDesk.aappeal)
    decide_appeal = delegate("appeals", AppealDesk.decide_appeal)
    notices = delegate("appeals", AppealDesk.notices)

    @property
    def unavailable(self) -> int:
        """Calls answered 503 because a store could not be reached."""
        return self.records.unavailable

    @property
    def flag_failures(self) -> int:
        """Strikes / review items the store could not take (logged)."""
        return self.screening.flag_failures

    # -- identity ----------------------------------------------------------------------

    def hash_user(self, user_id: str) -> str:
        """The keyed hash of ``user_id`` that aupguard stores and sends to Anthropic."""
        return self.hasher.hash(user_id)

    # -- the Anthropic client ------------------------------------------------------------

    def instrument(self, client: ClientT) -> ClientT:
        """A copy of an ``anthropic.Anthropic`` / ``AsyncAnthropic`` client (or of their Bedrock
        and Vertex AI twins) whose Messages calls
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

    def spend_tokens(self, decision: Decision, tokens: int) -> None:
        """Count tokens used elsewhere against the user's ``[limits] tokens`` budget (the answer
        recorder, :mod:`aupguard.engine.answers`, counts every answer it sees)."""
        key = decision.user_hash or decision.anonymous_key
        if key is not None:
            self.counters.spend_tokens(key, tokens)

    def capture_completion(self, decision: Decision, text: str) -> None:
        """Capture an answer got elsewhere (``[capture]``; the answer recorder,
        :mod:`aupguard.engine.answers`, captures every answer it sees)."""
        self.capture.record(decision, "completion", text)

    acapture = delegate("capture", Capture.arecord)

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Write every queued audit record, stop background threads, close the store."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit)
        self.audit.close()
        self.users.cache.close()
        if self.notifier is not None:  # undelivered notifications wait in the store's outbox
            self.notifier.close()
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
        self.users.cache.after_fork()
        if self.notifier is not None:
            self.notifier.after_fork()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Safeguards:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_MODES = frozenset({"enforce", "monitor"})

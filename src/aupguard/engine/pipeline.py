"""The guarded call, written once.

:meth:`Pipeline.steps` is a generator: identify → account → standing (terms, suspension) →
token budget → rate limit → prompt policy → moderation → decision → audit record. Where a
step needs I/O it yields an :data:`Op` with its arguments and is sent the result (or has the
exception thrown into it). Two drivers of a few lines each answer the ops: :meth:`Pipeline.run`
with blocking calls, :meth:`Pipeline.arun` with awaitables that never block the event loop.
So sync and async, memory and Redis counters, take the same steps in the same order and
leave the same counts.

With Redis counters the user's standing is checked against the state version kept in Redis,
in the same round trip as the rate-limit hit: every change to a user (strike, suspension,
reinstatement, terms, void) bumps that version once the store has committed it, and a hit
made with an older version counts nothing and returns the current one; the pipeline then
reloads the user and decides again (once). A user refused by their standing costs one version
read, so a reinstatement made anywhere is seen at once too. Memory counters accept any version.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

from ..counters.base import ANY_VERSION
from ..errors import CountersUnavailable, InvalidUserId, StoreError
from ..ids import new_id
from ..ladder import UserState, UserStatus, derive_status, status_expires
from ..outcome import Decision, Refusal
from ..review.sampling import sample_item, should_sample
from .drive import advance
from .gates import account_gate, standing_gate
from .monitor import MONITORED_KINDS, allowed_instead, as_app, with_would
from .prompt_policy import PromptRequest
from .steps import budget_refusal, check_surface, refuse, throttled

if TYPE_CHECKING:
    from ..audit.writer import AuditLog
    from ..capture.recorder import Capture
    from ..counters.base import Counters
    from ..identity import UserHasher
    from ..policy.config import Policy
    from .records import Records
    from .screening import Screening
    from .user_actions import UserActions

__all__ = ["Op", "Pipeline"]

#: The I/O a step asks for; the drivers map each to a blocking or an awaitable call.
Op = str
LOAD, VERSION, REFRESH, TOKENS, HIT, SCREEN, CAPTURE, RECORD = (
    "load", "version", "refresh", "tokens", "hit", "screen", "capture", "record",
)  # fmt: skip
Steps = Generator[tuple[Op, tuple[Any, ...]], Any, Decision]

_BY_STANDING = frozenset({"user_suspended", "terms_not_accepted"})
_BOUND = 65_536  # entries kept per memo before it starts over
_ANONYMOUS_PREFIX = "anonymous:"


class Pipeline:
    """The steps of a guarded call and their two drivers, over the engine's parts."""

    def __init__(
        self,
        policy: Policy,
        clock: Callable[[], float],
        hasher: UserHasher,
        users: UserActions,
        screening: Screening,
        counters: Counters,
        capture: Capture,
        audit: AuditLog,
        records: Records,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._hasher = hasher
        self._users = users
        self._screening = screening
        self._capture = capture
        self._audit = audit
        self._records = records
        self._cache = users.cache
        self._versioned = counters.versioned
        self._token_budget = policy.limits.tokens is not None
        self._versions = users.versions  # user hash -> the version its cached state was loaded at
        self._statuses: dict[str, tuple[UserState, float, float, UserStatus]] = {}
        self._surfaces: set[str] = set()
        self._sync: dict[Op, Callable[..., Any]] = {
            LOAD: users.fresh_state,
            VERSION: counters.version,
            REFRESH: self._refresh,
            TOKENS: counters.tokens_left,
            HIT: counters.hit_checked,
            SCREEN: screening.screen,
            CAPTURE: capture.record,
            RECORD: audit.record,
        }
        self._async: dict[Op, Callable[..., Awaitable[Any]]] = {
            LOAD: lambda *args: asyncio.to_thread(users.fresh_state, *args),
            VERSION: counters.aversion,
            REFRESH: lambda user_hash: asyncio.to_thread(self._refresh, user_hash),
            TOKENS: counters.atokens_left,
            HIT: counters.ahit_checked,
            SCREEN: screening.ascreen,
            CAPTURE: capture.arecord,
            RECORD: audit.arecord,
        }

    # -- the drivers ---------------------------------------------------------------------

    def run(self, steps: Steps) -> Decision:
        """Drive ``steps`` with blocking I/O."""
        call, send = self._sync, steps.send  # the hot path: no helper calls between the steps
        try:
            op, args = next(steps)
            while True:
                try:
                    result = call[op](*args)
                except Exception as exc:  # the step that asked decides what a failure means
                    op, args = steps.throw(exc)
                else:
                    op, args = send(result)
        except StopIteration as done:
            decision: Decision = done.value
            return decision

    async def arun(self, steps: Steps) -> Decision:
        """Drive ``steps`` with awaitable I/O, never blocking the event loop."""
        out, call = advance(steps), self._async
        while not isinstance(out, Decision):
            op, args = out
            try:
                result, failure = await call[op](*args), None
            except Exception as exc:  # the step that asked decides what a failure means
                result, failure = None, exc
            out = advance(steps, result, failure)
        return out

    # -- the steps -----------------------------------------------------------------------

    def steps(
        self,
        user_id: str | None,
        surface: str,
        prompt: str | PromptRequest | None,
        defer_moderation: bool,
        client_key: str | None,
        enforcement: str | None = None,
    ) -> Steps:
        """One guarded call, yielding its I/O. ``enforcement`` (``"enforce"`` or ``"monitor"``)
        overrides ``[enforcement] mode`` for this call."""
        now = self._clock()
        mode = self.policy.enforcement.mode if enforcement is None else enforcement
        would: list[Decision] | None = [] if mode == "monitor" else None
        who = self._identify(user_id, surface, client_key)
        if isinstance(who, Decision):
            if would is None or who.error != "authentication_required":
                yield RECORD, (self._records.row(who, surface, now),)
                return who
            would.append(who)  # monitor mode: served as an anonymous call, counted by its client key
            try:
                key = self._counted_as(client_key)
            except InvalidUserId:  # a client key no hash can be made of: the shared bucket
                key = _ANONYMOUS_PREFIX
            user_id, who = None, (None, key)
        user_hash, key = who
        try:  # standing, token budget, rate limit: one loop here, not a generator of its own (hot)
            state = None
            versioned = self._versioned and user_hash is not None
            if user_hash is not None:
                state = self._cache.get(user_hash)
                if state is None:
                    if versioned:  # the version first: a change committed meanwhile then reads as stale
                        self._note_version(user_hash, (yield VERSION, (user_hash,)))
                    state = yield LOAD, (user_id, user_hash)
            for attempt in (0, 1):  # a second pass decides on what it loaded, whatever happens meanwhile
                expected = self._versions.get(user_hash or "", "") if versioned and attempt == 0 else ANY_VERSION
                request_id = new_id()
                status = None if state is None else self._status_at(state, now)
                level = None if status is None else status.level
                refusal = None if status is None else standing_gate(status, self.policy, now)
                if refusal is not None:
                    if versioned and attempt == 0 and refusal.error in _BY_STANDING:
                        current = yield VERSION, (user_hash,)
                        if current not in (expected, ANY_VERSION):
                            state = yield from self._reload(user_hash, current)
                            continue
                    decision = refuse(request_id, refusal, user_hash, level)
                    if would is None:
                        break
                    would.append(decision)  # monitor mode: noted, and the checks after it still run
                if self._token_budget:  # before the rate limit: a spent budget counts no request slot
                    budget = yield TOKENS, (key,)
                    if budget is not None and not budget.allowed:
                        decision = budget_refusal(request_id, budget, user_hash, level)
                        if would is None:
                            break
                        would.append(decision)
                hit = yield HIT, (key, level, expected)
                if isinstance(hit, str):  # the cached state is older than the user's version
                    state = yield from self._reload(user_hash, hit)
                    continue
                decision = throttled(request_id, user_hash, status, hit, self.policy)
                break
            else:
                raise AssertionError("unreachable: the second pass accepts any version")
        except (StoreError, CountersUnavailable) as exc:
            decision = self._records.unavailable_decision(user_hash, exc)
        if key != user_hash:
            decision = decision._replace(anonymous_key=key)
        if would is not None:  # what follows (screening, output moderation) records, not refuses
            decision = decision._replace(monitor=True)
            if not decision.allowed and decision.error in MONITORED_KINDS:
                would.append(decision)  # a 429, a 503: the call goes on, its figures kept
                decision = allowed_instead(decision)
        if prompt is not None and decision.allowed:
            screening = self._screening
            resolved = screening.resolve(decision, prompt, defer_moderation)
            if would is not None and resolved.error == "prompt_not_allowed":  # screened as the app's own call
                would.append(resolved)
                resolved = screening.resolve(decision, as_app(prompt), defer_moderation)
            decision = resolved
            if screening.needs_moderation(decision):
                decision = yield SCREEN, (decision,)
            if self._capture.enabled and decision.prompt is not None:
                yield CAPTURE, (decision, "prompt", decision.prompt.text)
            if should_sample(decision, self.policy.review.sample_rate, random.random()):
                self._audit.review(sample_item(decision, now))
        if would:
            decision = with_would(decision, would)
        yield RECORD, (self._records.row(decision, surface, now),)
        return decision

    def _identify(self, user_id: object, surface: str, client_key: str | None) -> tuple[str | None, str] | Decision:
        """(user hash or None, the key the call is counted under), or a refusal that needs no
        user state. An anonymous call has no user hash: it is counted under the keyed hash of
        its client key (the client address, say), so anonymous callers do not share one bucket."""
        if surface not in self._surfaces:
            check_surface(surface)
            if len(self._surfaces) >= 4096:  # surfaces are meant to be few; stay bounded anyway
                self._surfaces.clear()
            self._surfaces.add(surface)
        refusal = account_gate(user_id is not None, self.policy)
        if refusal is not None:
            return refuse(new_id(), refusal, None, None)
        try:
            if user_id is None:
                return None, self._counted_as(client_key)
            user_hash = self._hasher.hash(user_id)
        except InvalidUserId as exc:
            what = "client key" if user_id is None else "user id"
            return refuse(new_id(), Refusal("invalid_request_error", f"Invalid {what}: {exc}"), None, None)
        return user_hash, user_hash

    def _counted_as(self, client_key: str | None) -> str:
        """The counter key of an anonymous call: the keyed hash of its client key, never equal
        to a user's (the bare hash); without a client key, every such call shares one bucket.
        Raises ``InvalidUserId`` for a client key no hash can be made of."""
        return _ANONYMOUS_PREFIX + (self._hasher.hash(client_key) if client_key else "")

    def _reload(self, user_hash: str | None, version: str) -> Generator[tuple[Op, tuple[Any, ...]], Any, UserState]:
        assert user_hash is not None
        self._note_version(user_hash, version)
        state: UserState = yield REFRESH, (user_hash,)
        return state

    # -- state ---------------------------------------------------------------------------

    def _refresh(self, user_hash: str) -> UserState:
        state = self._users.load_state(user_hash)
        self._cache.put(state)
        return state

    def _note_version(self, user_hash: str, version: str) -> None:
        if len(self._versions) >= _BOUND:
            self._versions.clear()
        self._versions[user_hash] = version

    def _status_at(self, state: UserState, now: float) -> UserStatus:
        """``derive_status``, memoised per cached state until time alone could change it."""
        memo = self._statuses.get(state.user_hash)
        if memo is not None and memo[0] is state and memo[1] <= now < memo[2]:
            return memo[3]
        ladder = self.policy.ladder
        status = derive_status(state, ladder, now)
        if len(self._statuses) >= _BOUND:
            self._statuses.clear()
        self._statuses[state.user_hash] = (state, now, status_expires(state, ladder, now), status)
        return status

"""The moderator chain: cheap moderators first, stop at a decisive verdict, cache by text.

A verdict is *decisive* when its action is ``block``: nothing later can make the outcome
worse, so the remaining (slower, paid) moderators are skipped. Otherwise every moderator
runs and the most severe action wins. A moderator that fails follows ``[moderation] fail``:
``open`` goes on without it (logged), ``closed`` makes the outcome *unavailable*.

A request is screened unit by unit (:meth:`ModerationChain.run_pieces`; the units are
neighbouring pieces of end-user text with the end of the text before them, see
:mod:`aupguard.moderation.units`), so a phrase split across two blocks or two turns is still
seen whole. Outcomes are cached by a keyed digest of the exact text judged for
``cache_ttl``, so a repeated prompt costs one dictionary lookup and a new turn of a
conversation costs the unit it lands in, not the whole conversation; failures are never cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..engine.pieces import Piece
from ..policy.moderation import ACTIONS, ModerationPolicy
from .base import Moderator, ModeratorError, Verdict
from .units import Unit, screening_units

__all__ = ["ModerationChain", "ModerationResult"]

log = logging.getLogger("aupguard.moderation")
_CACHE_LIMIT = 10_000
#: Remote moderator calls in flight at once for one request's new units.
_CONCURRENCY = 8
#: A unit's outcome and the places in the request it names.
Located = tuple[tuple[str, ...], "ModerationResult"]


@dataclass(frozen=True, slots=True)
class ModerationResult:
    """The chain's outcome. ``action`` is None when nothing was flagged."""

    action: str | None
    categories: tuple[str, ...] = ()
    verdicts: tuple[Verdict, ...] = ()
    unavailable: bool = False  # a moderator failed and the policy says fail closed
    errors: tuple[str, ...] = ()  # "moderator: kind" of each failure
    cached: bool = False
    where: tuple[str, ...] = ()  # the flagged pieces' places in the request ("messages[2].content[0]")

    @property
    def flagged(self) -> bool:
        return self.action is not None

    @property
    def moderators(self) -> tuple[str, ...]:
        return tuple(v.moderator for v in self.verdicts if v.flagged)

    def reasons(self) -> list[str]:
        """Short, text-free reasons for the audit record."""
        out = [f"flagged:{c}" for c in self.categories] + [f"moderator:{m}" for m in self.moderators]
        if self.action:
            out.append(f"action:{self.action}")
        out += [f"at:{w}" for w in self.where[:5]]
        out += [f"moderator_failed:{e}" for e in self.errors]
        return out


class ModerationChain:
    def __init__(
        self,
        moderators: Sequence[Moderator],
        policy: ModerationPolicy,
        *,
        category_actions: Mapping[str, Mapping[str, str]] | None = None,
        cache_key: bytes = b"",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``category_actions`` maps a moderator name to its own category → action table
        (the rules carry their actions); other moderators use ``[moderation] actions``."""
        self.moderators = tuple(moderators)
        self.policy = policy
        self._category_actions = dict(category_actions or {})
        self._key = hashlib.blake2b(cache_key or b"aupguard", digest_size=32).digest()
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[float, ModerationResult]] = OrderedDict()
        self._lock = threading.Lock()
        self._all_local = all(getattr(m, "local", False) for m in self.moderators)
        self._local = tuple(m for m in self.moderators if getattr(m, "local", False))
        #: a local moderator may run a pattern on the backtracking engine (each search is
        #: time-bounded, but a long request is then best screened off the event loop)
        self.backtracks = any(getattr(m, "backtracks", False) for m in self._local)
        # what a text every moderator found clean comes to (the common case): made once
        self._clean = ModerationResult(None, (), tuple(Verdict.clean(m.name) for m in self.moderators))
        #: called with (moderator name, seconds, failed) after each moderator ran (metrics)
        self.observe: Callable[[str, float, bool], None] | None = None

    def __bool__(self) -> bool:
        return bool(self.moderators)

    @property
    def remote(self) -> bool:
        """Whether a moderator of the chain does I/O (each unit of text may cost a call)."""
        return not self._all_local

    def action_of(self, verdict: Verdict) -> str | None:
        if not verdict.flagged:
            return None
        if verdict.risk_level is not None:  # a graded verdict: its level's action, when the policy names one
            by_level = self.policy.actions.get(f"risk_{verdict.risk_level}")
            if by_level is not None:
                return by_level
        own = self._category_actions.get(verdict.moderator)
        if own is not None:
            found = [own.get(c, self.policy.default_action) for c in verdict.categories] or [self.policy.default_action]
            return min(found, key=ACTIONS.index)
        return self.policy.action_for(verdict.categories)

    # -- a whole request --------------------------------------------------------------

    def run_pieces(self, pieces: Sequence[Piece]) -> ModerationResult:
        """Moderate every piece of a request, unit by unit (:mod:`aupguard.moderation.units`);
        the outcome is the most severe one, naming where the flagged pieces are."""
        if len(pieces) == 1:  # the common case: one prompt, no context
            return self._located([((pieces[0].where,), self.run(pieces[0].text))])
        results: list[Located] = []
        units = screening_units(pieces)
        for unit in units:  # a conversation's units come back every turn: cached, local verdicts too
            result = self.run(unit.text, cache=len(units) > 1)
            results.append((self._places(unit, result), result))
            if result.unavailable or result.action == "block":  # nothing later can change the outcome
                break
        else:
            results += self._user_side(pieces)
        return self._located(results)

    async def arun_pieces(self, pieces: Sequence[Piece]) -> ModerationResult:
        if self._all_local:  # no I/O: the sync path, inline
            return self.run_pieces(pieces)
        units = screening_units(pieces)
        results: list[Located | None] = [None] * len(units)
        todo = []
        for i, unit in enumerate(units):
            hit = self._cached(self._digest(unit.text))
            if hit is None:
                todo.append(i)
            else:
                results[i] = (self._places(unit, hit), hit)
        gate, stop = asyncio.Semaphore(_CONCURRENCY), asyncio.Event()

        async def judge(i: int) -> None:
            async with gate:
                if stop.is_set():  # a unit already blocked, or a moderator is down: no more calls
                    return
                result = await self.arun(units[i].text)
                results[i] = (self._places(units[i], result), result)
                if result.unavailable or result.action == "block":
                    stop.set()

        if not any(r is not None and (r[1].unavailable or r[1].action == "block") for r in results):
            await asyncio.gather(*(judge(i) for i in todo))
        return self._located([*(r for r in results if r is not None), *self._user_side(pieces)])

    def _places(self, unit: Unit, result: ModerationResult) -> tuple[str, ...]:
        """Where a flagged unit's text is: the pieces the local moderators flag on their own,
        or every piece of the unit (a remote verdict, or a phrase split between pieces)."""
        if not result.flagged or len(unit.pieces) == 1:
            return unit.places
        if self._local:
            alone = tuple(p.where for p in unit.pieces if self._flags_locally(p.text))
            if alone:
                return alone
        return unit.places

    def _flags_locally(self, text: str) -> bool:
        for moderator in self._local:
            try:
                if moderator.moderate(text).flagged:
                    return True
            except Exception:  # noqa: S112 - a failing local moderator locates nothing; its failure is counted elsewhere
                continue
        return False

    def _user_side(self, pieces: Sequence[Piece]) -> list[Located]:
        """The end user's own turns read together, by the local moderators (free, and not
        cached: the text grows every turn): a phrase split across two user turns with long
        answers between them is seen whole."""
        if not self._local:
            return []
        turns = sorted({p.turn for p in pieces if p.role == "user" and p.turn >= 0})
        if len(turns) < 2:
            return []
        result = self._judge("\n".join(p.text for p in pieces if p.role == "user"), self._local, None)
        if result.unavailable:
            return [((), result)]
        if not result.flagged:
            return []
        return [((f"messages[{turns[0]}..{turns[-1]}] (user turns together)",), result)]

    def _located(self, results: Sequence[Located]) -> ModerationResult:
        """One outcome for a request's units: an unavailable moderator (fail closed) wins,
        then the most severe action; ``where`` names the flagged pieces."""
        for i, (_, result) in enumerate(results):
            if result.unavailable:
                return result
            if result.action == "block":  # as the sync path stops here, so do the async one's results
                results = results[: i + 1]
                break
        flagged = [(w, r) for w, r in results if r.flagged]
        errors = tuple(dict.fromkeys(e for _, r in results for e in r.errors))
        if not flagged:
            if not errors:
                return results[0][1] if len(results) == 1 else self._clean
            return ModerationResult(None, (), (), False, errors)
        if len(results) == 1:
            where, result = results[0]
            return ModerationResult(result.action, result.categories, result.verdicts, False, errors, False, where)
        action = min((r.action for _, r in flagged if r.action is not None), key=ACTIONS.index)
        categories = tuple(dict.fromkeys(c for _, r in flagged for c in r.categories))
        verdicts = tuple(dict.fromkeys(v for _, r in flagged for v in r.verdicts if v.flagged))
        where = tuple(dict.fromkeys(w for places, _ in flagged for w in places))
        return ModerationResult(action, categories, verdicts, False, errors, False, where)

    # -- running -----------------------------------------------------------------------

    def run(self, text: str, *, cache: bool = False) -> ModerationResult:
        """The chain's outcome for one text. Local moderators' verdicts are cached only with
        ``cache`` (a unit of a conversation, judged again on every turn); remote ones always."""
        key = self._digest(text, cache)
        hit = self._cached(key)
        return hit if hit is not None else self._judge(text, self.moderators, key)

    def _judge(self, text: str, moderators: Sequence[Moderator], key: bytes | None) -> ModerationResult:
        """``moderators`` on ``text``, in order, until one blocks or fails closed."""
        verdicts: list[Verdict] = []
        errors: list[str] = []
        for moderator in moderators:
            started = time.perf_counter()
            outcome: Verdict | Exception
            try:
                outcome = moderator.moderate(text)
            except Exception as exc:
                outcome = exc
            step = self._take(moderator, started, outcome, verdicts, errors)
            if isinstance(step, ModerationResult):
                return step
            if step:
                break
        return self._finish(key, verdicts, errors)

    def _take(
        self,
        moderator: Moderator,
        started: float,
        outcome: Verdict | Exception,
        verdicts: list[Verdict],
        errors: list[str],
    ) -> ModerationResult | bool:
        """One moderator's outcome, timed and kept: a result to answer at once (a failure with
        ``fail = "closed"``), else whether the chain stops here (a block)."""
        failed = isinstance(outcome, Exception)
        if self.observe is not None:
            self.observe(moderator.name, time.perf_counter() - started, failed)
        if isinstance(outcome, Exception):
            errors.append(_failure(moderator, outcome))
            if self.policy.fail == "closed":
                return ModerationResult(None, (), tuple(verdicts), True, tuple(errors))
            return False
        verdicts.append(outcome)
        return self.action_of(outcome) == "block"

    async def arun(self, text: str) -> ModerationResult:
        key = self._digest(text)
        hit = self._cached(key)
        if hit is not None:
            return hit
        verdicts: list[Verdict] = []
        errors: list[str] = []
        # each moderator's own timeout (per attempt) comes first; this deadline bounds the
        # whole chain, however many remote moderators it has
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.timeout * (self.policy.retries + 1) + 0.5
        for moderator in self.moderators:
            started = time.perf_counter()
            outcome: Verdict | Exception
            try:
                if getattr(moderator, "local", False):  # no I/O: no task, timer or loop turn
                    outcome = moderator.moderate(text)
                else:
                    outcome = await asyncio.wait_for(moderator.amoderate(text), max(0.0, deadline - loop.time()))
            except Exception as exc:
                outcome = exc
            step = self._take(moderator, started, outcome, verdicts, errors)
            if isinstance(step, ModerationResult):
                return step
            if step:
                break
        return self._finish(key, verdicts, errors)

    def _finish(self, key: bytes | None, verdicts: list[Verdict], errors: list[str]) -> ModerationResult:
        if key is None and not errors and tuple(verdicts) == self._clean.verdicts:  # every one clean, as prebuilt
            return self._clean
        actions = [a for a in map(self.action_of, verdicts) if a is not None]
        categories = tuple(dict.fromkeys(c for v in verdicts if v.flagged for c in v.categories))
        action = min(actions, key=ACTIONS.index) if actions else None
        result = ModerationResult(action, categories, tuple(verdicts), False, tuple(errors))
        if not errors and key is not None:
            with self._lock:
                self._cache[key] = (
                    self._clock() + self.policy.cache_ttl,
                    ModerationResult(action, categories, tuple(verdicts), False, (), True),
                )
                if len(self._cache) > _CACHE_LIMIT:
                    self._cache.popitem(last=False)
        return result

    # -- cache -------------------------------------------------------------------------

    def _digest(self, text: str, cache: bool = False) -> bytes | None:
        if self._all_local and not cache:  # one local verdict costs less than the cache itself
            return None
        # the exact text judged: a text that merely normalises like a judged one is judged itself
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=self._key, digest_size=16).digest()

    def _cached(self, key: bytes | None) -> ModerationResult | None:
        if key is None:
            return None
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            with self._lock:
                self._cache.pop(key, None)
            return None
        return entry[1]


def _failure(moderator: Moderator, exc: BaseException) -> str:
    kind = (
        exc.kind
        if isinstance(exc, ModeratorError)
        else ("timeout" if isinstance(exc, TimeoutError) else exc.__class__.__name__)
    )
    log.warning("moderator %s failed: %s", moderator.name, kind)
    return f"{moderator.name}: {kind}"

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

The decisions (an action per verdict, how verdicts and units combine, when a request is
settled) are plain functions in :mod:`aupguard.moderation.results`; what one moderator's
outcome means for the chain is taken in one place (:meth:`ModerationChain._take`, then
``_finish``), so the sync and the async driver are a few lines of I/O each.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from ..engine.pieces import Piece
from ..policy.moderation import ModerationPolicy
from ..telemetry.tracer import moderator_ran
from .base import Moderator, Verdict
from .results import Located, ModerationResult, action_of, combine_units, combine_verdicts, decisive, failure_kind
from .units import Unit, screening_units

# ModerationResult lives in .results; it is imported from here too, where it has always been
__all__ = ["ModerationChain", "ModerationResult"]

log = logging.getLogger("aupguard.moderation")
_CACHE_LIMIT = 10_000
#: Remote moderator calls in flight at once for one request's new units.
_CONCURRENCY = 8


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
        return action_of(verdict, self.policy, self._category_actions)

    # -- a whole request --------------------------------------------------------------

    def run_pieces(self, pieces: Sequence[Piece]) -> ModerationResult:
        """Moderate every piece of a request, unit by unit (:mod:`aupguard.moderation.units`);
        the outcome is the most severe one, naming where the flagged pieces are."""
        if len(pieces) == 1:  # the common case: one prompt, no context
            return combine_units([((pieces[0].where,), self.run(pieces[0].text))], self._clean)
        results: list[Located] = []
        units = screening_units(pieces)
        for unit in units:  # a conversation's units come back every turn: cached, local verdicts too
            result = self.run(unit.text, cache=len(units) > 1)
            results.append((self._places(unit, result), result))
            if decisive(result):  # nothing later can change the outcome
                break
        else:
            results += self._user_side(pieces)
        return combine_units(results, self._clean)

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
                if decisive(result):
                    stop.set()

        if not any(r is not None and decisive(r[1]) for r in results):
            await asyncio.gather(*(judge(i) for i in todo))
        return combine_units([*(r for r in results if r is not None), *self._user_side(pieces)], self._clean)

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

    # -- running -----------------------------------------------------------------------

    def run(self, text: str, *, cache: bool = False) -> ModerationResult:
        """The chain's outcome for one text. Local moderators' verdicts are cached only with
        ``cache`` (a unit of a conversation, judged again on every turn); remote ones always."""
        key = self._digest(text, cache)
        hit = self._cached(key)
        return hit if hit is not None else self._judge(text, self.moderators, key)

    def _judge(self, text: str, moderators: Sequence[Moderator], key: bytes | None) -> ModerationResult:
        """``moderators`` on ``text``, in order, until one blocks or fails closed (the sync driver)."""
        verdicts: list[Verdict] = []
        errors: list[str] = []
        for moderator in moderators:
            started = time.perf_counter()
            if self._take(moderator, started, _outcome(moderator, text), verdicts, errors):
                break
        return self._finish(key, verdicts, errors)

    async def arun(self, text: str) -> ModerationResult:
        """``run`` for async code (the async driver): remote moderators are awaited, local ones run inline."""
        key = self._digest(text)
        hit = self._cached(key)
        if hit is not None:
            return hit
        # each moderator's own timeout (per attempt) comes first; this deadline bounds the
        # whole chain, however many remote moderators it has
        deadline = asyncio.get_running_loop().time() + self.policy.timeout * (self.policy.retries + 1) + 0.5
        verdicts: list[Verdict] = []
        errors: list[str] = []
        for moderator in self.moderators:
            started = time.perf_counter()
            if self._take(moderator, started, await _aoutcome(moderator, text, deadline), verdicts, errors):
                break
        return self._finish(key, verdicts, errors)

    def _take(
        self,
        moderator: Moderator,
        started: float,
        outcome: Verdict | Exception,
        verdicts: list[Verdict],
        errors: list[str],
    ) -> bool:
        """One moderator's outcome, timed and kept; whether the chain stops here (a block, or a
        failure with ``fail = "closed"``). Both drivers take each outcome here."""
        failed = isinstance(outcome, Exception)
        elapsed = time.perf_counter() - started
        if self.observe is not None:
            self.observe(moderator.name, elapsed, failed)
        moderator_ran(moderator.name, elapsed, failed)  # the traced call's span (a no-op without one)
        if isinstance(outcome, Exception):
            errors.append(_failure(moderator, outcome))
            return self.policy.fail == "closed"
        verdicts.append(outcome)
        return self.action_of(outcome) == "block"

    def _finish(self, key: bytes | None, verdicts: list[Verdict], errors: list[str]) -> ModerationResult:
        """The outcome of the verdicts taken (cached when nothing failed and ``key`` is given)."""
        if errors and self.policy.fail == "closed":  # the chain stopped at the failure: unavailable
            return ModerationResult(None, (), tuple(verdicts), True, tuple(errors))
        if key is None and not errors and tuple(verdicts) == self._clean.verdicts:  # every one clean, as prebuilt
            return self._clean
        result = combine_verdicts(verdicts, errors, [self.action_of(v) for v in verdicts])
        if not errors and key is not None:
            with self._lock:
                self._cache[key] = (
                    self._clock() + self.policy.cache_ttl,
                    ModerationResult(result.action, result.categories, result.verdicts, False, (), True),
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


def _outcome(moderator: Moderator, text: str) -> Verdict | Exception:
    """A moderator's verdict on ``text``, or the exception it raised."""
    try:
        return moderator.moderate(text)
    except Exception as exc:
        return exc


async def _aoutcome(moderator: Moderator, text: str, deadline: float) -> Verdict | Exception:
    """A moderator's verdict on ``text``, or the exception it raised, without blocking the
    event loop: a remote moderator is awaited until ``deadline`` (the loop's clock); a local one
    has no I/O and runs inline (no task, timer or loop turn)."""
    try:
        if getattr(moderator, "local", False):
            return moderator.moderate(text)
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(moderator.amoderate(text), max(0.0, deadline - loop.time()))
    except Exception as exc:
        return exc


def _failure(moderator: Moderator, exc: BaseException) -> str:
    kind = failure_kind(exc)
    log.warning("moderator %s failed: %s", moderator.name, kind)
    return f"{moderator.name}: {kind}"

"""The moderator chain: cheap moderators first, stop at a decisive verdict, cache by text.

A verdict is *decisive* when its action is ``block``: nothing later can make the outcome
worse, so the remaining (slower, paid) moderators are skipped. Otherwise every moderator
runs and the most severe action wins. A moderator that fails follows ``[moderation] fail``:
``open`` goes on without it (logged), ``closed`` makes the outcome *unavailable*.

Outcomes are cached by a keyed digest of the normalised text for ``cache_ttl``, so a
repeated prompt costs one dictionary lookup; failures are never cached.
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

from ..normalize import normalize
from ..policy_moderation import ACTIONS, ModerationPolicy
from .base import Moderator, ModeratorError, Verdict

__all__ = ["ModerationChain", "ModerationResult"]

log = logging.getLogger("aupguard.moderation")
_CACHE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class ModerationResult:
    """The chain's outcome. ``action`` is None when nothing was flagged."""

    action: str | None
    categories: tuple[str, ...] = ()
    verdicts: tuple[Verdict, ...] = ()
    unavailable: bool = False  # a moderator failed and the policy says fail closed
    errors: tuple[str, ...] = ()  # "moderator: kind" of each failure
    cached: bool = False

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
        # what a text every moderator found clean comes to (the common case): made once
        self._clean = ModerationResult(None, (), tuple(Verdict.clean(m.name) for m in self.moderators))
        #: called with (moderator name, seconds, failed) after each moderator ran (metrics)
        self.observe: Callable[[str, float, bool], None] | None = None

    def __bool__(self) -> bool:
        return bool(self.moderators)

    def action_of(self, verdict: Verdict) -> str | None:
        if not verdict.flagged:
            return None
        own = self._category_actions.get(verdict.moderator)
        if own is not None:
            found = [own.get(c, self.policy.default_action) for c in verdict.categories] or [self.policy.default_action]
            return min(found, key=ACTIONS.index)
        return self.policy.action_for(verdict.categories)

    # -- running -----------------------------------------------------------------------

    def run(self, text: str) -> ModerationResult:
        key = self._digest(text)
        hit = self._cached(key)
        if hit is not None:
            return hit
        verdicts: list[Verdict] = []
        errors: list[str] = []
        for moderator in self.moderators:
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

    def _digest(self, text: str) -> bytes | None:
        if self._all_local:  # local verdicts cost less than the cache itself
            return None
        return hashlib.blake2b(normalize(text).encode("utf-8", "surrogatepass"), key=self._key, digest_size=16).digest()

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

"""What the moderator chain decides, as plain functions over plain data (pure): the action a
verdict calls for, when a request's outcome is settled, and how the verdicts of one text
and the outcomes of a request's units combine into one :class:`ModerationResult`. The
chain (:mod:`aupguard.moderation.chain`) does the I/O, sync and async, around them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..policy.moderation import ACTIONS, ModerationPolicy
from .base import ModeratorError, Verdict

__all__ = ["Located", "ModerationResult", "action_of", "combine_units", "combine_verdicts", "decisive", "failure_kind"]

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


def action_of(
    verdict: Verdict, policy: ModerationPolicy, category_actions: Mapping[str, Mapping[str, str]]
) -> str | None:
    """The action a verdict calls for: its risk level's (when the policy names one), else
    the moderator's own category table (the rules carry their actions), else ``[moderation]
    actions``; None for a clean verdict."""
    if not verdict.flagged:
        return None
    if verdict.risk_level is not None:  # a graded verdict: its level's action, when the policy names one
        by_level = policy.actions.get(f"risk_{verdict.risk_level}")
        if by_level is not None:
            return by_level
    own = category_actions.get(verdict.moderator)
    if own is not None:
        found = [own.get(c, policy.default_action) for c in verdict.categories] or [policy.default_action]
        return min(found, key=ACTIONS.index)
    return policy.action_for(verdict.categories)


def decisive(result: ModerationResult) -> bool:
    """Whether nothing later can change a request's outcome: a block, or a moderator that
    failed with ``fail = "closed"``. The chain stops judging there."""
    return result.unavailable or result.action == "block"


def combine_verdicts(
    verdicts: Sequence[Verdict], errors: Sequence[str], actions: Sequence[str | None]
) -> ModerationResult:
    """One text's outcome from its moderators' verdicts (``actions``: each verdict's action):
    the most severe action, the flagged categories in order."""
    found = [a for a in actions if a is not None]
    categories = tuple(dict.fromkeys(c for v in verdicts if v.flagged for c in v.categories))
    action = min(found, key=ACTIONS.index) if found else None
    return ModerationResult(action, categories, tuple(verdicts), False, tuple(errors))


def combine_units(results: Sequence[Located], clean: ModerationResult) -> ModerationResult:
    """One outcome for a request's units: an unavailable moderator (fail closed) wins,
    then the most severe action; ``where`` names the flagged pieces. ``clean`` is the
    outcome of units every moderator found clean (made once by the chain)."""
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
            return results[0][1] if len(results) == 1 else clean
        return ModerationResult(None, (), (), False, errors)
    if len(results) == 1:
        where, result = results[0]
        return ModerationResult(result.action, result.categories, result.verdicts, False, errors, False, where)
    action = min((r.action for _, r in flagged if r.action is not None), key=ACTIONS.index)
    categories = tuple(dict.fromkeys(c for _, r in flagged for c in r.categories))
    verdicts = tuple(dict.fromkeys(v for _, r in flagged for v in r.verdicts if v.flagged))
    where = tuple(dict.fromkeys(w for places, _ in flagged for w in places))
    return ModerationResult(action, categories, verdicts, False, errors, False, where)


def failure_kind(exc: BaseException) -> str:
    """What went wrong with a moderator, as the audit record names it (never its message)."""
    return (
        exc.kind
        if isinstance(exc, ModeratorError)
        else ("timeout" if isinstance(exc, TimeoutError) else exc.__class__.__name__)
    )

"""Screening a guarded call's prompt (and, optionally, Claude's answer): the prompt policy,
then the moderator chain, then what the verdict costs the user.

``check(..., prompt=...)`` screens inline when ``[moderation] mode = "before"``. In
``parallel`` mode the decision comes back with ``moderation_pending`` set, and the caller
runs :meth:`Screening.ascreen` alongside its Claude call, holding the answer until the
verdict (:meth:`Screening.acall` does all of it). A ``block`` or ``review`` verdict adds a
strike and a review item in one transaction; ``warn`` adds a warning; ``log`` only records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import AupguardError, StoreError
from ..ids import new_id
from ..moderation.chain import ModerationChain, ModerationResult
from ..outcome import Decision, Refusal
from ..stores import ReviewItem, StrikeRecord
from ..telemetry.checks import traced, traced_async
from .monitor import MONITORED_STRIKE, allowed_instead
from .prompt_policy import PromptPolicy, PromptRequest
from .request_pieces import Piece
from .user_actions import UserActions, describe_change

if TYPE_CHECKING:
    from ..audit.writer import AuditLog
    from ..policy.config import Policy

__all__ = ["Refused", "Screening"]

#: A flag to record: (user hash, when, strike fields or None, review item fields, event details);
#: plain data, so a flag the store could not take can wait in the audit queue and spill file.
Flag = tuple[str, float, list[Any] | None, list[Any], dict[str, Any]]
log = logging.getLogger("aupguard.moderation")

T = TypeVar("T")
_OFF_LOOP = 256 * 1024  # characters of text above which a request is screened in a thread
_OFF_LOOP_BACKTRACKING = 8 * 1024  # the same, when a rule's pattern may backtrack (bounded, but slow)


class Refused(AupguardError):
    """A guarded call was refused; ``decision`` says why (status, error kind, headers)."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        super().__init__(f"{decision.status} {decision.error}: {decision.message}")


def _refusal(decision: Decision, refusal: Refusal, reasons: tuple[str, ...] = ()) -> Decision:
    from ..outcome import ERROR_STATUS

    return decision._replace(
        allowed=False, status=ERROR_STATUS[refusal.error], error=refusal.error, message=refusal.message,
        retry_after=refusal.retry_after, warning=None, reasons=reasons,
    )  # fmt: skip


class Screening:
    """The prompt policy, the moderators and what a verdict costs the user (a part of
    :class:`~aupguard.engine.safeguards.Safeguards`, which exposes its public methods)."""

    def __init__(
        self,
        policy: Policy,
        prompts: PromptPolicy,
        moderation: ModerationChain,
        audit: AuditLog,
        users: UserActions,
        clock: Callable[[], float],
    ) -> None:
        self.policy = policy
        self.prompts = prompts
        self.moderation = moderation
        self.audit = audit
        self.users = users
        self._clock = clock
        self.flag_failures = 0  # strikes / review items the store could not take (logged)

    # -- the prompt --------------------------------------------------------------------

    def resolve(self, decision: Decision, prompt: str | PromptRequest, defer: bool) -> Decision:
        resolved = self.prompts.resolve_text(prompt) if isinstance(prompt, str) else self.prompts.resolve(prompt)
        if isinstance(resolved, Refusal):
            return _refusal(decision, resolved, ("prompt_policy",))
        # parallel only for callers that run the verdict themselves (acall, the adapters):
        # a plain check() never comes back allowed with moderation still to do
        pending = defer and bool(self.moderation) and self.policy.moderation.mode == "parallel"
        if resolved.media:  # images and PDFs are not text: counted in the audit record, not screened
            decision = decision._replace(reasons=(*decision.reasons, f"media:{resolved.media}"))
        return decision.with_prompt(resolved, None, pending)

    def needs_moderation(self, decision: Decision) -> bool:
        return (
            decision.allowed
            and decision.prompt is not None
            and not decision.moderation_pending
            and bool(self.moderation)
            and self.policy.moderation.mode != "off"
        )

    def _pieces(self, decision: Decision) -> tuple[Piece, ...]:
        """What the moderators see: every piece of end-user text in the request, or with
        ``[moderation] scope = "last_turn"`` only those of the prompt's own turn."""
        prompt = decision.prompt
        if prompt is None:
            return ()
        pieces = prompt.screened
        if self.policy.moderation.scope == "last_turn":
            turn = prompt.prompt_turn
            pieces = tuple(p for p in pieces if p.role == "user" and (p.turn == turn or p.turn < 0 or turn < 0))
        return pieces

    @traced("aupguard.screen")
    def screen(self, decision: Decision) -> Decision:
        """Moderate every piece of the decision's request and apply the verdict. For a
        decision whose record is already written (parallel mode), the record is amended."""
        pieces = self._pieces(decision)
        oversized = self._oversized(decision, sum(len(p.text) for p in pieces))
        if oversized is not None:
            return oversized
        result = self.moderation.run_pieces(pieces)
        return self._apply(decision, result, self.flag)

    @traced_async("aupguard.screen")
    async def ascreen(self, decision: Decision) -> Decision:
        pieces = self._pieces(decision)
        size = sum(len(p.text) for p in pieces)
        oversized = self._oversized(decision, size)
        if oversized is not None:
            return oversized
        if size > _OFF_LOOP or (size > _OFF_LOOP_BACKTRACKING and self.moderation.backtracks):  # off the loop
            result = await asyncio.to_thread(self.moderation.run_pieces, pieces)
        else:
            result = await self.moderation.arun_pieces(pieces)
        if result.flagged and result.action in ("block", "review"):  # the store write runs off the loop
            await asyncio.to_thread(self.flag, decision, result, False)
        return self._apply(decision, result, lambda *_: None)

    def _oversized(self, decision: Decision, size: int) -> Decision | None:
        """The refusal (413) of a request carrying more than ``[moderation] max_text``
        characters (``size``) to remote moderators (each unit may be a paid call), or None."""
        limit = self.policy.moderation.max_text
        if not self.moderation.remote or size <= limit:
            return None
        message = f"The request carries more than {limit} characters of text to screen ([moderation] max_text)."
        out = _refusal(decision, Refusal("request_too_large", message), (*decision.reasons, "max_text"))
        out = out._replace(moderation_pending=False)
        if decision.moderation_pending:  # the record was written before the verdict
            self.audit.amend(out.request_id, outcome=out.error or "refused", status=out.status, reasons=out.reasons)
        return out

    def _apply(
        self,
        decision: Decision,
        result: ModerationResult,
        flag: Callable[[Decision, ModerationResult, bool], None],
        *,
        output: bool = False,
    ) -> Decision:
        clean = result.action is None and not result.unavailable and not result.errors
        if clean and not (decision.moderation_pending or output):  # the common case, one copy
            return decision.with_prompt(decision.prompt, result, False)
        reasons = (*decision.reasons, *result.reasons())
        if result.unavailable:
            out = _refusal(
                decision, Refusal("safeguards_unavailable", "Moderation is unavailable; try again shortly.", 5), reasons
            )
        elif result.action in ("block", "review"):
            flag(decision, result, output)
            if result.action == "block":
                what = "answer" if output else "request"
                out = _refusal(
                    decision,
                    Refusal(
                        "content_flagged",
                        f"This {what} was flagged under the usage policy ({', '.join(result.categories)}).",
                    ),
                    reasons,
                )
            else:
                out = decision._replace(reasons=reasons)
        elif result.action == "warn":
            note = f"Your request may violate the usage policy ({', '.join(result.categories)})."
            out = decision._replace(warning=note, reasons=reasons)
        else:
            out = decision._replace(reasons=reasons)
        if not out.allowed and decision.monitor:  # monitor mode: recorded, not enforced
            out = allowed_instead(out)._replace(warning=decision.warning)
        out = out._replace(moderation=result, moderation_pending=False)
        if decision.moderation_pending or output:  # the record was written before the verdict
            self.audit.amend(out.request_id, outcome="allowed" if out.allowed else out.error or "refused",
                             status=out.status, reasons=out.reasons)  # fmt: skip
        return out

    def flag(self, decision: Decision, result: ModerationResult, output: bool) -> None:
        """A strike (prompts only: an answer is not the user's own words) and a review item,
        in one transaction."""
        if decision.user_hash is None:
            return
        now = self._clock()
        category = result.categories[0] if result.categories else "unspecified"
        moderators = ",".join(result.moderators) or "moderation"
        where = _places(result.where)
        strike = None
        if not output:
            reason = f"prompt flagged: {', '.join(result.categories)}" + (f" (at {where})" if where else "")
            strike = StrikeRecord(new_id(), decision.user_hash, now, reason, category, moderators, "moderation")
            if decision.monitor:  # kept in the ledger, voided: it never counts
                strike = replace(strike, voided_at=now, void_reason=MONITORED_STRIKE)
        source = "output" if output else "prompt"
        review = ReviewItem(
            new_id(), now, decision.user_hash, decision.request_id, strike.id if strike else None, result.action or "",
            result.categories, result.moderators, f"{source} at {where}" if where else source,
        )  # fmt: skip
        details = {"request_id": decision.request_id, "category": category, "source": moderators,
                   "review_item": review.id}  # fmt: skip
        if where:
            details["where"] = where
        strike_fields = None if strike is None else [getattr(strike, f.name) for f in fields(strike)]
        if strike_fields is not None and strike_fields[7] is None:  # an ordinary strike: its seven fields
            strike_fields = strike_fields[:7]
        review_fields = [
            list(v) if isinstance(v, tuple) else v for v in (getattr(review, f.name) for f in fields(review))
        ]
        flag: Flag = (decision.user_hash, now, strike_fields, review_fields, details)
        try:
            self.record_flag(flag)
        except StoreError as exc:  # the verdict stands; the strike waits for the store, or is lost loudly
            if exc.transient and self.audit.defer_flag(flag):
                log.error("store unavailable: the strike / review item will be recorded when it is back")
            else:
                self.flag_failures += 1
                log.error("could not record a moderation strike / review item: %s", exc.__class__.__name__)

    def record_flag(self, flag: Flag) -> None:
        """Record a flag's strike and review item (also what replays a deferred one: the store
        keeps a strike or review item id once)."""
        from ..ladder import suspension_after_strike

        user_hash, at, strike_fields, review_fields, details = flag
        strike = None if strike_fields is None else StrikeRecord(*strike_fields)
        r = review_fields
        review = ReviewItem(r[0], r[1], r[2], r[3], r[4], r[5], tuple(r[6]), tuple(r[7]), r[8], r[9])
        monitored = strike is not None and strike.void_reason is not None
        action = "monitored_strike" if monitored else "strike" if strike else "review"
        describe = describe_change(
            self.policy.ladder, at, action, "moderation", f"{review.explanation} flagged", details,
        )  # fmt: skip
        if strike is not None and strike.void_reason is not None:  # monitor mode: the strike, voided, at once
            self.users.mutate(user_hash, describe, None, strike=strike, review=review,
                              void=(strike.id, strike.void_reason))  # fmt: skip
            return
        self.users.mutate(
            user_hash, describe, suspension_after_strike if strike else None, strike=strike, review=review
        )

    # -- answers -----------------------------------------------------------------------

    def screen_output(self, decision: Decision, text: str) -> Decision:
        """Moderate Claude's answer when ``[moderation] output = true`` (else returns the
        decision as it is). A flagged answer gets a review item, not a strike."""
        if not self.policy.moderation.output or not self.moderation:
            return decision
        return self._apply(decision, self.moderation.run(text), self.flag, output=True)

    async def ascreen_output(self, decision: Decision, text: str) -> Decision:
        if not self.policy.moderation.output or not self.moderation:
            return decision
        result = await self.moderation.arun(text)
        if result.flagged and result.action in ("block", "review"):
            await asyncio.to_thread(self.flag, decision, result, True)
        return self._apply(decision, result, lambda *_: None, output=True)


def _places(where: tuple[str, ...]) -> str:
    """The flagged pieces' places, for a strike's reason and a review item (a few at most)."""
    return ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")

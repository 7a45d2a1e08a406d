"""One answer recorder: what every answer to a guarded call gets, however it arrived.

The gateway, the instrumented client (streamed or not, sync or async, Anthropic, Bedrock
or Vertex) and the LangChain callback each read an answer into :class:`AnswerFacts` and
hand it to :func:`record_answer` / :func:`arecord_answer`. What to do is decided once, by
:func:`plan_answer`, a pure function of the facts and the policy:

- link Anthropic's request id (a response header) and the message id, model and token
  usage to the call's audit record;
- count the tokens against the user's ``[limits] tokens`` budget;
- capture the answer's text (``[capture]``, encrypted);
- moderate it (``[moderation] output = true``) unless the caller already did, as the
  gateway does before anything reaches its client;
- handle Claude's own refusal (``stop_reason: "refusal"``) per ``[moderation] refusals``:
  a review item, a strike and a review item, or only the audit reasons.

:func:`_steps` turns the plan into a sequence of I/O steps; the sync recorder runs each
step in place, the async one never blocks the event loop: queue operations and in-memory
counters run inline, a store transaction, a capture key not cached yet, Redis and a full
audit queue run in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..audit.writer import check_text
from ..counters.redis import RedisCounters
from ..moderation.base import Verdict
from ..moderation.chain import ModerationResult
from ..outcome import Decision
from .answer_facts import AnswerFacts
from .drive import advance

if TYPE_CHECKING:
    from .host import Guard

__all__ = [
    "AnswerFacts",
    "AnswerPlan",
    "AnswerRules",
    "ClaudeRefusal",
    "arecord_answer",
    "linkable_id",
    "plan_answer",
    "record_answer",
    "rules_of",
]


@dataclass(frozen=True, slots=True)
class AnswerRules:
    """What the policy says about answers (read from the engine once per answer)."""

    token_budget: bool  # [limits] tokens is set
    capture_completions: bool  # [capture] enabled with completions = true
    moderate_output: bool  # [moderation] output = true, with moderators to run
    refusals: str  # [moderation] refusals: review | strike | log


@dataclass(frozen=True, slots=True)
class ClaudeRefusal:
    """Claude refused to answer: the category it gave, and what the policy makes of it."""

    category: str
    flag: ModerationResult | None  # the review item (and strike) to record; None with refusals = "log"
    strike: bool

    def reasons(self, decision: Decision) -> tuple[str, ...]:
        return (*decision.reasons, f"claude_refusal:{self.category}")


@dataclass(frozen=True, slots=True)
class AnswerPlan:
    """What one answer means for its guarded call. ``link`` holds the audit record's fields
    (``anthropic_request_id``, ``message_id``, ``model``, ``input_tokens``, ``output_tokens``);
    ``spend`` the tokens to count against the user's (or anonymous caller's) budget (0:
    none); ``capture`` the completion text to capture; ``moderate`` the text output
    moderation reads (None: not moderated here)."""

    link: dict[str, Any]
    spend: int
    capture: str | None
    moderate: str | None
    refusal: ClaudeRefusal | None


def rules_of(guard: Guard) -> AnswerRules:
    policy = guard.policy
    return AnswerRules(
        token_budget=policy.limits.tokens is not None,
        capture_completions=guard.capture.enabled and policy.capture.completions,
        moderate_output=policy.moderation.output and bool(guard.moderation),
        refusals=policy.moderation.refusals,
    )


def plan_answer(
    facts: AnswerFacts,
    decision: Decision,
    rules: AnswerRules,
    *,
    request_id: str | None,
    output_moderated: bool = False,
) -> AnswerPlan:
    """What to do with an answer (pure). ``request_id`` is Anthropic's (or the cloud's)
    request-id header; ``output_moderated``: the caller moderated the text already."""
    # what an upstream says is data, not a contract: an id the audit log cannot hold (empty,
    # huge, not text) is left out rather than fail the answer
    input_tokens, output_tokens = _tokens(facts.input_tokens), _tokens(facts.output_tokens)
    link = {
        "anthropic_request_id": linkable_id(request_id),
        "message_id": linkable_id(facts.message_id),
        "model": linkable_id(facts.model),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
    }
    # tokens count against the user's budget, or an anonymous caller's client key; only a
    # user's text is captured (under their data key)
    counted = decision.user_hash is not None or decision.anonymous_key is not None
    spend = input_tokens + output_tokens if counted and rules.token_budget else 0
    text = "".join(facts.text)
    capture = text if decision.user_hash is not None and rules.capture_completions and text else None
    moderated = facts.moderated_text
    moderate = moderated if rules.moderate_output and not output_moderated and moderated.strip() else None
    return AnswerPlan(link, spend, capture, moderate, claude_refusal(facts, rules.refusals))


def claude_refusal(facts: AnswerFacts, mode: str) -> ClaudeRefusal | None:
    """Claude's own refusal, a safety signal: None unless the answer stopped with ``refusal``."""
    if facts.stop_reason != "refusal":
        return None
    category = str(getattr(facts.stop_details, "category", None) or "claude_refusal")
    verdict = Verdict(True, (category,), "claude-refusal", "Claude refused to answer")
    flag = None if mode == "log" else ModerationResult("review", (category,), (verdict,))
    return ClaudeRefusal(category, flag, strike=mode == "strike")


# -- the steps -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Step:
    """One piece of I/O. ``where``: ``queue`` (appends to the audit queue: inline while it
    has room), ``counters`` (inline in memory, a thread for Redis), ``capture`` (inline once
    the user's key is cached), ``store`` (a transaction: always a thread)."""

    where: str
    run: Callable[[], None]


@dataclass(frozen=True, slots=True)
class _Moderate:
    """Output moderation of ``text`` for ``decision``: the driver answers with the screened decision."""

    decision: Decision
    text: str


def _steps(guard: Guard, decision: Decision, plan: AnswerPlan) -> Generator[_Step | _Moderate, Any, Decision]:
    """The plan as I/O steps, in order; returns the decision as the answer left it."""
    audit = guard.audit
    link = plan.link
    yield _Step("queue", lambda: audit.link(decision.request_id, **link))
    if plan.spend:
        key, spend = decision.user_hash or decision.anonymous_key or "", plan.spend
        yield _Step("counters", lambda: guard.counters.spend_tokens(key, spend))
    if plan.capture is not None:
        text = plan.capture
        yield _Step("capture", lambda: guard.capture.record(decision, "completion", text))
    if plan.moderate is not None:
        decision = yield _Moderate(decision, plan.moderate)
    refusal = plan.refusal
    if refusal is not None:
        if refusal.flag is not None:
            flagged, flag, output = decision, refusal.flag, not refusal.strike  # "review": no strike
            yield _Step("store", lambda: guard.screening.flag(flagged, flag, output))
        outcome = "allowed" if decision.allowed else decision.error or "refused"
        status, reasons = decision.status, refusal.reasons(decision)
        yield _Step("queue", lambda: audit.amend(decision.request_id, outcome=outcome, status=status, reasons=reasons))
        decision = decision._replace(reasons=reasons)
    return decision


def record_answer(
    guard: Guard,
    decision: Decision,
    request_id: str | None,
    facts: AnswerFacts,
    *,
    output_moderated: bool = False,
) -> Decision:
    """Record an answer (sync). Returns the decision as the answer left it: refused
    (``content_flagged``) when output moderation blocked the answer."""
    steps = _steps(guard, decision, plan_answer(facts, decision, rules_of(guard), request_id=request_id,
                                                output_moderated=output_moderated))  # fmt: skip
    step = advance(steps)
    while not isinstance(step, Decision):
        step = advance(steps, _run(guard, step))
    return step


def _run(guard: Guard, step: _Step | _Moderate) -> Decision | None:
    """One step from sync code: output moderation's decision, or the I/O done."""
    if isinstance(step, _Moderate):
        return guard.screen_output(step.decision, step.text)
    step.run()
    return None


async def arecord_answer(
    guard: Guard,
    decision: Decision,
    request_id: str | None,
    facts: AnswerFacts,
    *,
    output_moderated: bool = False,
) -> Decision:
    """:func:`record_answer` for async code: nothing here blocks the event loop."""
    steps = _steps(guard, decision, plan_answer(facts, decision, rules_of(guard), request_id=request_id,
                                                output_moderated=output_moderated))  # fmt: skip
    step = advance(steps)
    while not isinstance(step, Decision):
        step = advance(steps, await _arun(guard, decision, step))
    return step


async def _arun(guard: Guard, decision: Decision, step: _Step | _Moderate) -> Decision | None:
    """One step from async code: output moderation awaited, I/O that may wait in a thread."""
    if isinstance(step, _Moderate):
        return await guard.ascreen_output(step.decision, step.text)
    if _inline(guard, decision, step.where):
        step.run()
    else:
        await asyncio.to_thread(step.run)
    return None


def _inline(guard: Guard, decision: Decision, where: str) -> bool:
    """Whether a step can run on the event loop without waiting on I/O."""
    if where == "queue":
        return guard.audit.has_room()
    if where == "counters":
        return not isinstance(guard.counters, RedisCounters)
    if where == "capture":
        return guard.audit.has_room() and guard.capture.has_key(decision.user_hash or "")
    return False  # the store


def linkable_id(value: object) -> str | None:
    """``value`` if the audit log can hold it as an id (non-empty text up to 256 characters), else None."""
    try:
        check_text("id", value, required=True)
    except ValueError:
        return None
    return value  # type: ignore[return-value]


def _tokens(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

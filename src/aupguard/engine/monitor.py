"""Monitor mode (``[enforcement] mode = "monitor"``): every check runs and is recorded, and
nothing the policy decides is refused.

A refusal the policy would make (401 without an account, 403 terms / suspension / prompt
policy / a flag, 429, 503 from a moderator failing closed) becomes an allowed decision whose
reasons say ``would_refuse:<kind>``: the audit record keeps it, the answer carries
``Aupguard-Would-Refuse: <kind>`` (the first one), and the checks after it still run (a
suspended user's call is still counted and screened). A flag still queues its review item;
its strike is recorded as *monitored*, voided as it is made, so it never climbs the ladder.
Requests that cannot be processed at all (a malformed or oversized body: 400, 408, 413) are
refused in both modes.
"""

from __future__ import annotations

from ..normalize import clean
from ..outcome import WOULD_REFUSE, Decision
from ..prompts import PromptRequest
from .pieces import Piece

__all__ = [
    "MONITORED_KINDS",
    "MONITORED_STRIKE",
    "WOULD_REFUSE",
    "allowed_instead",
    "as_app",
    "with_would",
    "would_refuse",
]

#: the void reason of a strike monitor mode recorded (it does not count on the ladder)
MONITORED_STRIKE = "monitor mode: recorded, not enforced"
#: what monitor mode lets through: the policy's refusals, not a request it cannot process
MONITORED_KINDS = frozenset({
    "authentication_required", "terms_not_accepted", "user_suspended", "prompt_not_allowed",
    "content_flagged", "rate_limited", "safeguards_unavailable",
})  # fmt: skip


def would_refuse(decision: Decision) -> str | None:
    """The first error kind monitor mode let through for this call, or None."""
    return decision.would_refuse


def allowed_instead(refused: Decision) -> Decision:
    """``refused`` as monitor mode answers it: allowed, its kind in the reasons."""
    reasons = tuple(dict.fromkeys((*refused.reasons, f"{WOULD_REFUSE}{refused.error}")))
    return refused._replace(allowed=True, status=200, error=None, message="", retry_after=None, reasons=reasons)


def with_would(decision: Decision, would: list[Decision]) -> Decision:
    """The call's decision with what enforce mode would have refused, in the order the
    checks met it (the first is what ``Aupguard-Would-Refuse`` names)."""
    earlier = [r for w in would for r in (*w.reasons, f"{WOULD_REFUSE}{w.error}")]
    return decision._replace(reasons=tuple(dict.fromkeys((*earlier, *decision.reasons))))


def as_app(prompt: str | PromptRequest) -> PromptRequest:
    """The prompt as a call the app wrote: moderated, not held to the prompt policy (monitor
    mode screens what enforce mode would have refused unread)."""
    if isinstance(prompt, PromptRequest):  # a template's variables are text the user sent too
        variables = tuple(
            Piece(f"variables.{name}", "user", -1, "text", clean(value))
            for name, value in prompt.variables.items()
            if isinstance(value, str) and value
        )
        return prompt._replace(origin="app", pieces=(*prompt.pieces, *variables))
    text = clean(prompt)
    return PromptRequest(text=text, pieces=(Piece("prompt", "user", 0, "text", text),), origin="app")

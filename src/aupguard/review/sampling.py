"""Quality-check sampling: ``[review] sample_rate`` of allowed, unflagged calls with a prompt
go to the review queue (action ``sample``, no strike), so reviewers also see what passes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ids import new_id
from ..stores.records import ReviewItem

if TYPE_CHECKING:
    from ..outcome import Decision

__all__ = ["SAMPLE_ACTION", "sample_item", "should_sample"]

SAMPLE_ACTION = "sample"


def should_sample(decision: Decision, rate: float, draw: float) -> bool:
    """Whether this decision is sampled; ``draw`` is uniform in [0, 1)."""
    if rate <= 0.0 or not decision.allowed or decision.prompt is None or decision.moderation_pending:
        return False
    if decision.user_hash is None:
        return False
    if decision.moderation is not None and decision.moderation.flagged:  # already queued as a flag
        return False
    return draw < rate


def sample_item(decision: Decision, now: float) -> ReviewItem:
    """The review item of a sampled call (written through the audit queue: no SQL here)."""
    assert decision.user_hash is not None
    return ReviewItem(new_id(), now, decision.user_hash, decision.request_id, None, SAMPLE_ACTION, (), (),
                      "sampled for a quality check")  # fmt: skip

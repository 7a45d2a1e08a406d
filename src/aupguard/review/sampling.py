"""Quality-check sampling: ``[review] sample_rate`` of allowed, unflagged calls with a prompt
go to the review queue (action ``sample``, no strike), so reviewers also see what passes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import StoreError
from ..ids import new_id
from ..stores.records import ReviewItem

if TYPE_CHECKING:
    from ..decision import Decision
    from ..stores import SQLiteStore

__all__ = ["SAMPLE_ACTION", "queue_sample", "should_sample"]

log = logging.getLogger("aupguard.review")
SAMPLE_ACTION = "sample"


def should_sample(decision: Decision, rate: float, draw: float) -> bool:
    """Whether this decision is sampled; ``draw`` is uniform in [0, 1)."""
    if rate <= 0.0 or not decision.allowed or decision.prompt is None or decision.moderation_pending:
        return False
    if decision.user_hash is None or decision.user_hash == "anonymous":
        return False
    if decision.moderation is not None and decision.moderation.flagged:  # already queued as a flag
        return False
    return draw < rate


def queue_sample(store: SQLiteStore, decision: Decision, now: float) -> None:
    """Queue the sampled call; a store failure is logged, never the caller's error."""
    assert decision.user_hash is not None
    item = ReviewItem(new_id(), now, decision.user_hash, decision.request_id, None, SAMPLE_ACTION, (), (),
                      "sampled for a quality check")  # fmt: skip
    try:
        store.add_review_item(item)
    except StoreError as exc:
        log.error("could not queue a sampled call for review: %s", exc.__class__.__name__)

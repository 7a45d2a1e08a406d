"""The operations the audit log queues, encoded as the store writes them (pure): each is a
``(kind, row)`` pair (:data:`~aupguard.stores.sql.AuditOp`) whose row holds the columns of
its table in order, lists as JSON. ``record`` (a decision: :data:`AuditRow`), ``link``
(Anthropic's ids and the usage, filled in later), ``capture`` (an encrypted capture row),
``amend`` (a verdict that came after the record), ``review`` (a review item without a
strike) and ``flag`` (a moderation flag the store could not take, replayed through the
engine). Fields a caller passes in are checked here, before they are queued."""

from __future__ import annotations

import json

from ..stores import ReviewItem
from ..stores.sql import AuditOp

__all__ = ["AuditRow", "amend_op", "check_text", "link_op", "review_op"]

#: A decision record as queued: the columns of the ``decisions`` table, in order
#: (request_id, at, user_hash, surface, outcome, status, level, reasons as JSON,
#: anthropic_request_id, message_id).
AuditRow = tuple[str, float, str | None, str, str, int, str | None, str, str | None, str | None]


def link_op(
    request_id: str,
    anthropic_request_id: str | None,
    message_id: str | None,
    model: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
) -> AuditOp:
    """A ``link``: what is ``None`` leaves the record's field as it is. ``ValueError`` for a
    field that is not a short string or a non-negative integer."""
    check_text("request_id", request_id, required=True)
    check_text("anthropic_request_id", anthropic_request_id)
    check_text("message_id", message_id)
    check_text("model", model)
    for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValueError(f"{name} must be a non-negative integer")
    return ("link", (request_id, anthropic_request_id, message_id, model, input_tokens, output_tokens))


def amend_op(request_id: str, outcome: str, status: int, reasons: tuple[str, ...]) -> AuditOp:
    return ("amend", (request_id, outcome, status, json.dumps(list(reasons))))


def review_op(item: ReviewItem) -> AuditOp:
    """A review item's row: the columns of ``review_items``, categories and moderators as JSON."""
    categories, moderators = json.dumps(list(item.categories)), json.dumps(list(item.moderators))
    row = (item.id, item.at, item.user_hash, item.request_id, item.strike_id, item.action, categories, moderators,
           item.explanation, item.status)  # fmt: skip
    return ("review", row)


def check_text(name: str, value: object, *, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value or len(value) > 256:
        raise ValueError(f"{name} must be a non-empty string of at most 256 characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not valid Unicode") from None

"""Human review: the queue, reviewer accounts and actions, and the violation-rate report.

Pure logic over the store; the web console (``aupguard_console``) and the CLI drive it.
"""

from __future__ import annotations

from .accounts import ReviewerAccounts, hash_password, verify_password
from .filters import decode_cursor, encode_cursor, filter_query, parse_filter
from .queue import (
    BulkResult,
    ItemDetail,
    QueuePage,
    ReviewConflict,
    ReviewQueue,
    UserHistory,
    actor_of,
    required_reason,
    violation_rate,
)
from .report import ViolationRow, report_csv, report_json, violation_report

__all__ = [
    "BulkResult",
    "ItemDetail",
    "QueuePage",
    "ReviewConflict",
    "ReviewQueue",
    "ReviewerAccounts",
    "UserHistory",
    "ViolationRow",
    "actor_of",
    "decode_cursor",
    "encode_cursor",
    "filter_query",
    "hash_password",
    "parse_filter",
    "report_csv",
    "report_json",
    "required_reason",
    "verify_password",
    "violation_rate",
    "violation_report",
]

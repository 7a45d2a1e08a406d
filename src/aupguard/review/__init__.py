"""Human review: the queue, reviewer accounts and actions, and the violation-rate report.

Pure logic over the store; the web console (``aupguard_console``) and the CLI drive it.
"""

from __future__ import annotations

from .accounts import ReviewerAccounts, hash_password, verify_password
from .queue import ItemDetail, QueuePage, ReviewConflict, ReviewQueue, UserHistory, actor_of, violation_rate
from .report import ViolationRow, report_csv, report_json, violation_report

__all__ = [
    "ItemDetail",
    "QueuePage",
    "ReviewConflict",
    "ReviewQueue",
    "ReviewerAccounts",
    "UserHistory",
    "ViolationRow",
    "actor_of",
    "hash_password",
    "report_csv",
    "report_json",
    "verify_password",
    "violation_rate",
    "violation_report",
]

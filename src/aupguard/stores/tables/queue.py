"""The SQL of the filtered review queue (SQLite and PostgreSQL alike): one statement per page,
keyset-paginated on the sort's own index, every user value a bound parameter.

Indexes (migration 7): ``review_items_priority (status, <priority>, at, id)`` for the default
order, ``review_items_queue (status, at, id)`` for oldest / newest first,
``review_items_by_user`` for one user's items, ``review_items_by_request`` and
``review_items_by_strike`` (with the decisions' message and Anthropic-request indexes) for
search. Category, moderator and source filters are conditions on the rows the index walks
in order, so a page stops after ``limit`` matches.
"""

from __future__ import annotations

import json
from typing import Any

from ..review_records import QueueCursor, QueueFilter

__all__ = ["PRIORITY_SQL", "QueueQuery", "like_json_member", "queue_count_sql", "queue_page_query"]

#: the same expression as in the index review_items_priority (the planner matches it exactly)
PRIORITY_SQL = "CASE action WHEN 'block' THEN 0 WHEN 'review' THEN 1 WHEN 'sample' THEN 3 ELSE 2 END"
# literal "%" would need doubling for psycopg: every pattern is a bound parameter instead
_REFUSAL = "moderators LIKE ? ESCAPE '\\'"
_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "sample": ("action = 'sample'", ()),
    "refusal": (_REFUSAL, ("claude-refusal",)),
    "prompt": (f"action <> 'sample' AND explanation LIKE ? AND NOT {_REFUSAL}", ("prompt%", "claude-refusal")),
    "output": (f"action <> 'sample' AND explanation LIKE ? AND NOT {_REFUSAL}", ("output%", "claude-refusal")),
}
_SEARCH = (
    "(id = ? OR user_hash = ? OR request_id = ? OR strike_id = ? OR request_id IN "
    "(SELECT request_id FROM decisions WHERE message_id = ? OR anthropic_request_id = ?))"
)
QueueQuery = tuple[str, tuple[Any, ...]]


def like_json_member(value: str) -> str:
    """A LIKE pattern matching ``value`` as one member of a JSON array of strings, with
    LIKE's own metacharacters escaped (``ESCAPE '\\'``): ``50%`` matches only ``50%``."""
    member = json.dumps(value)
    return "%" + member.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _where(f: QueueFilter, now: float) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if f.status != "all":
        where.append("status = ?")
        params.append(f.status)
    if f.user_hash:
        where.append("user_hash = ?")
        params.append(f.user_hash)
    if f.category:
        where.append("categories LIKE ? ESCAPE '\\'")
        params.append(like_json_member(f.category))
    if f.moderator:
        where.append("moderators LIKE ? ESCAPE '\\'")
        params.append(like_json_member(f.moderator))
    if f.source:
        sql, values = _SOURCES[f.source]
        where.append(f"({sql})")
        params += [v if v.endswith("%") else like_json_member(v) for v in values]
    if f.reviewer == "-":
        where.append("status = 'open' AND (claimed_by IS NULL OR claim_expires <= ?)")
        params.append(now)
    elif f.reviewer:
        where.append("((claimed_by = ? AND claim_expires > ?) OR resolved_by = ?)")
        params += [f.reviewer, now, f.reviewer]
    if f.search:
        where.append(_SEARCH)
        params += [f.search] * 6
    return where, params


def queue_page_query(f: QueueFilter, *, columns: str, now: float, after: QueueCursor | None, limit: int) -> QueueQuery:
    """One page: ``limit`` rows after ``after`` in ``f.sort`` order."""
    where, params = _where(f, now)
    if f.sort == "priority":
        order = f"{PRIORITY_SQL}, at, id"
        if after is not None:
            where.append(f"({PRIORITY_SQL}, at, id) > (?, ?, ?)")
            params += [after.priority, after.at, after.item_id]
    elif f.sort == "oldest":
        order = "at, id"
        if after is not None:
            where.append("(at, id) > (?, ?)")
            params += [after.at, after.item_id]
    else:
        order = "at DESC, id DESC"
        if after is not None:
            where.append("(at, id) < (?, ?)")
            params += [after.at, after.item_id]
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {columns} FROM review_items{clause} ORDER BY {order} LIMIT ?", (*params, limit)  # noqa: S608


def queue_count_sql(f: QueueFilter, *, now: float) -> QueueQuery:
    where, params = _where(f, now)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT count(*) FROM review_items{clause}", tuple(params)  # noqa: S608

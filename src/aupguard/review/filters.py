"""The queue's filters and cursors as they travel in URLs: parsed from hostile query strings
into a :class:`QueueFilter` (pure, no I/O), and written back so every link keeps them.

Anything unparseable falls back to the default (a wrong status shows the open items, a
mangled cursor the first page); text values are kept as literal text, bounded in length and
stripped of control characters, and only ever reach SQL as bound parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from urllib.parse import urlencode

from ..stores.review_records import (
    QUEUE_SORTS,
    QUEUE_SOURCES,
    QUEUE_STATUSES,
    QueueCursor,
    QueueEntry,
    QueueFilter,
    priority_of,
)

__all__ = ["FILTER_KEYS", "decode_cursor", "encode_cursor", "filter_query", "parse_filter"]

#: the query-string names of the filters, in the order links write them
FILTER_KEYS = ("status", "category", "moderator", "source", "reviewer", "user", "q", "sort")
MAX_VALUE = 200


def _clean(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    kept = "".join(ch for ch in value if ch.isprintable()).strip()[:MAX_VALUE]
    return kept or None


def parse_filter(params: Mapping[str, object], *, me: str | None = None) -> QueueFilter:
    """The filter a query string asks for; ``reviewer=me`` is the reviewer ``me``."""
    status = params.get("status")
    sort = params.get("sort")
    source = params.get("source")
    reviewer = _clean(params.get("reviewer"))
    if reviewer == "me":
        reviewer = me
    return QueueFilter(
        status=status if isinstance(status, str) and status in QUEUE_STATUSES else "open",
        category=_clean(params.get("category")),
        moderator=_clean(params.get("moderator")),
        source=source if isinstance(source, str) and source in QUEUE_SOURCES else None,
        reviewer=reviewer,
        user_hash=_clean(params.get("user")),
        search=_clean(params.get("q")),
        sort=sort if isinstance(sort, str) and sort in QUEUE_SORTS else "priority",
    )


def filter_query(f: QueueFilter, **extra: str) -> str:
    """The query string of ``f`` (defaults left out), plus ``extra`` (a cursor): no leading ``?``."""
    values = {"status": f.status if f.status != "open" else None, "category": f.category,
              "moderator": f.moderator, "source": f.source, "reviewer": f.reviewer, "user": f.user_hash,
              "q": f.search, "sort": f.sort if f.sort != "priority" else None}  # fmt: skip
    pairs = [(k, v) for k, v in values.items() if v] + [(k, v) for k, v in extra.items() if v]
    return urlencode(pairs)


def encode_cursor(entry: QueueEntry) -> str:
    return f"{priority_of(entry.item.action)}_{entry.item.at!r}_{entry.item.id}"


def decode_cursor(cursor: object) -> QueueCursor | None:
    """The cursor in a query string, or None (the first page) for anything malformed:
    a priority outside 0-3, a time that is not a finite number, a missing or long id."""
    if not isinstance(cursor, str) or len(cursor) > 120:
        return None
    parts = cursor.split("_", 2)
    if len(parts) != 3 or not parts[2]:
        return None
    try:
        priority, at = int(parts[0]), float(parts[1])
    except ValueError:
        return None
    if not 0 <= priority <= 3 or not math.isfinite(at):
        return None
    return QueueCursor(priority, at, parts[2])

"""Records of the human review tables: queue entries with their claim, reviewer accounts,
console sessions and notes. User ids appear only as hashes."""

from __future__ import annotations

from dataclasses import dataclass

from .records import ReviewItem

__all__ = [
    "QUEUE_SORTS",
    "QUEUE_SOURCES",
    "QUEUE_STATUSES",
    "ConsoleSession",
    "QueueCursor",
    "QueueEntry",
    "QueueFilter",
    "ReviewNote",
    "ReviewerAccount",
    "ViolationCount",
    "priority_of",
]

QUEUE_STATUSES = ("open", "confirmed", "dismissed", "all")
#: ``priority``: block before review before anything else before sample, oldest first within each
QUEUE_SORTS = ("priority", "oldest", "newest")
#: what put an item in the queue: a moderator on the prompt, on the answer, Claude refusing, sampling
QUEUE_SOURCES = ("prompt", "output", "refusal", "sample")
_PRIORITY = {"block": 0, "review": 1, "sample": 3}


def priority_of(action: str) -> int:
    """The rank of an item's action in the queue (lower first); the SQL mirrors it."""
    return _PRIORITY.get(action, 2)


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """What a queue page shows. Every field is already validated (see
    :func:`aupguard.review.filters.parse_filter`); ``None`` means any."""

    status: str = "open"
    category: str | None = None
    moderator: str | None = None
    source: str | None = None
    reviewer: str | None = None  # holds an unexpired claim on it or resolved it; "-": nobody holds it
    user_hash: str | None = None
    search: str | None = None  # an item, strike, request, Anthropic request or message id, or a user hash
    sort: str = "priority"


@dataclass(frozen=True, slots=True)
class QueueCursor:
    """Where the next page starts (keyset: the last row shown, never an OFFSET)."""

    priority: int
    at: float
    item_id: str


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """A review item with who holds it (until when) and who resolved it."""

    item: ReviewItem
    claimed_by: str | None = None
    claim_expires: float | None = None
    resolved_by: str | None = None
    resolved_at: float | None = None

    def held_by(self, reviewer: str, now: float) -> bool:
        return self.claimed_by == reviewer and self.claim_expires is not None and self.claim_expires > now

    def held_by_other(self, reviewer: str, now: float) -> bool:
        return (
            self.claimed_by is not None
            and self.claimed_by != reviewer
            and self.claim_expires is not None
            and self.claim_expires > now
        )


@dataclass(frozen=True, slots=True)
class ReviewerAccount:
    name: str
    salt: bytes
    password_hash: bytes
    params: str  # the scrypt parameters the hash was made with, "n=16384,r=8,p=1"
    created_at: float


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A server-side console session; ``reviewer`` is None before login."""

    id: str
    reviewer: str | None
    csrf: str
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class ReviewNote:
    id: str
    at: float
    user_hash: str
    item_id: str | None
    author: str
    body: str


@dataclass(frozen=True, slots=True)
class ViolationCount:
    """One user's flagged items and guarded calls inside a window."""

    user_hash: str
    flagged: int
    total: int

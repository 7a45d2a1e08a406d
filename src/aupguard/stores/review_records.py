"""Records of the human review tables: queue entries with their claim, reviewer accounts,
console sessions and notes. User ids appear only as hashes."""

from __future__ import annotations

from dataclasses import dataclass

from .records import ReviewItem

__all__ = ["ConsoleSession", "QueueEntry", "ReviewNote", "ReviewerAccount", "ViolationCount"]


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

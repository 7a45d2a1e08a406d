"""The review queue and the actions reviewers take on it.

Every action names its reviewer, and every state change is an audit event with
``reviewer:<name>`` as its actor: confirm (the strike stands), dismiss (a false positive: the
strike is voided and the user de-escalates at once), note, suspend for a duration, reinstate.
Confirm and dismiss need the reviewer's unexpired claim on the item; a claim is taken with
one conditional UPDATE, so two reviewers never hold the same item.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..errors import AupguardError
from ..ids import new_id
from ..ladder import UserStatus
from ..stores.records import AuditEvent, AuditRecord, StrikeRecord
from ..stores.review_records import QueueEntry, QueueFilter, ReviewNote, ViolationCount
from .filters import decode_cursor as decode_filtered_cursor
from .filters import encode_cursor as encode_filtered_cursor

if TYPE_CHECKING:
    from ..capture.recorder import CapturedText
    from ..engine.safeguards import Safeguards

__all__ = [
    "BulkResult",
    "ItemDetail",
    "QueuePage",
    "ReviewConflict",
    "ReviewQueue",
    "UserHistory",
    "actor_of",
    "required_reason",
]

PAGE_SIZE = 50
MAX_NOTE = 4000
MAX_REASON = 500
MAX_BULK = PAGE_SIZE  # a bulk action covers at most one page of items


class ReviewConflict(AupguardError):
    """The item is held by another reviewer, already resolved, or unknown."""


def actor_of(reviewer: str) -> str:
    return f"reviewer:{reviewer}"


def violation_rate(count: ViolationCount) -> float:
    """Flagged items per guarded call (a flag whose call record is missing still counts)."""
    return count.flagged / max(count.total, count.flagged, 1)


@dataclass(frozen=True, slots=True)
class QueuePage:
    entries: list[QueueEntry]
    next_cursor: str | None  # pass as ``after`` for the next (older) page


@dataclass(frozen=True, slots=True)
class BulkResult:
    done: list[str]  # item ids resolved
    skipped: list[tuple[str, str]]  # (item id, why): held by another reviewer, already resolved, unknown


def required_reason(reason: str) -> str:
    """A decision's reason: 1 to 500 characters once trimmed (a reviewer's record says why)."""
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise AupguardError(f"give a reason (1 to {MAX_REASON} characters)")
    return reason


@dataclass(frozen=True, slots=True)
class UserHistory:
    user_hash: str
    status: UserStatus
    violations: ViolationCount
    rate: float
    strikes: list[StrikeRecord]
    items: list[QueueEntry]
    notes: list[ReviewNote]
    events: list[AuditEvent]
    reset_at: float | None = None  # the last reinstatement: strikes before it no longer count
    window_start: float = 0.0  # strikes before it have aged out of the ladder window


@dataclass(frozen=True, slots=True)
class ItemDetail:
    entry: QueueEntry
    texts: list[CapturedText]  # the captured prompt (and answer), decrypted; empty if not captured
    records: list[AuditRecord]
    strike: StrikeRecord | None


def encode_cursor(entry: QueueEntry) -> str:
    return f"{entry.item.at!r}_{entry.item.id}"


def decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    if not cursor:
        return None
    at, sep, item_id = cursor.partition("_")
    try:
        return (float(at), item_id) if sep and item_id else None
    except ValueError:
        return None


class ReviewQueue:
    def __init__(self, guard: Safeguards) -> None:
        self.guard = guard
        self.store = guard.store
        self._clock = guard._clock

    # -- reading ---------------------------------------------------------------------------

    def page(self, *, status: str = "open", after: str | None = None, limit: int = PAGE_SIZE) -> QueuePage:
        entries = self.store.queue_page(status=status, after=decode_cursor(after), limit=limit + 1)
        more = len(entries) > limit
        entries = entries[:limit]
        return QueuePage(entries, encode_cursor(entries[-1]) if more else None)

    def find(self, f: QueueFilter, *, after: str | None = None, limit: int = PAGE_SIZE) -> QueuePage:
        """A page of the queue as ``f`` filters and sorts it; ``after`` is the last page's
        ``next_cursor`` (a malformed one reads as the first page)."""
        entries = self.store.filtered_queue_page(f, now=self._clock(), after=decode_filtered_cursor(after),
                                                 limit=limit + 1)  # fmt: skip
        more = len(entries) > limit
        entries = entries[:limit]
        return QueuePage(entries, encode_filtered_cursor(entries[-1]) if more else None)

    def count(self, f: QueueFilter) -> int:
        return self.store.filtered_queue_count(f, now=self._clock())

    def snippets(self, entries: list[QueueEntry], *, length: int = 160) -> dict[str, str]:
        """The start of each item's captured prompt (decrypted; one query for the page), by item id."""
        if not self.guard.capture.enabled:
            return {}
        by_request = {e.item.request_id: e.item.id for e in entries if e.item.request_id}
        texts = self.guard.capture.read_many(list(by_request))
        out = {}
        for request_id, found in texts.items():
            prompt = next((t.text for t in found if t.kind == "prompt"), found[0].text if found else "")
            flat = " ".join(prompt.split())
            out[by_request[request_id]] = flat[:length] + ("…" if len(flat) > length else "")
        return out

    def next_open(self, f: QueueFilter, reviewer: str, *, skip: str | None = None) -> QueueEntry | None:
        """The first open item in ``f``'s order that ``reviewer`` can take (free, or already
        theirs), claimed for them; None when there is none. For "decide and next"."""
        f = replace(f, status="open")
        after = None
        for _ in range(4):  # a few pages: items others hold are passed over
            page = self.find(f, after=after, limit=PAGE_SIZE)
            for entry in page.entries:
                if entry.item.id == skip or entry.held_by_other(reviewer, self._clock()):
                    continue
                now = self._clock()
                expires = now + self.guard.policy.review.claim_for
                if self.store.claim_review_item(entry.item.id, reviewer, now=now, expires=expires):
                    return self.entry(entry.item.id)
            if page.next_cursor is None:
                return None
            after = page.next_cursor
        return None

    def bulk(self, item_ids: list[str], reviewer: str, action: str, reason: str) -> BulkResult:
        """Confirm or dismiss several items with one reason: each is claimed, then decided,
        as one reviewer would; an item another reviewer holds, or already resolved, is skipped
        (and said why), never changed."""
        if action not in ("confirm", "dismiss"):
            raise AupguardError("a bulk action is confirm or dismiss")
        reason = required_reason(reason)
        if len(item_ids) > MAX_BULK:
            raise AupguardError(f"a bulk action covers at most {MAX_BULK} items")
        done, skipped = [], []
        for item_id in dict.fromkeys(item_ids):  # once each, in the order given
            try:
                self.claim(item_id, reviewer)
                (self.confirm if action == "confirm" else self.dismiss)(item_id, reviewer, reason)
                done.append(item_id)
            except ReviewConflict as exc:
                skipped.append((item_id, str(exc)))
        return BulkResult(done, skipped)

    def entry(self, item_id: str) -> QueueEntry:
        entry = self.store.queue_entry(item_id)
        if entry is None:
            raise ReviewConflict("no review item has that id")
        return entry

    def detail(self, item_id: str) -> ItemDetail:
        """The item with its captured text decrypted: for authenticated reviewers only."""
        entry = self.entry(item_id)
        request_id = entry.item.request_id
        texts = self.guard.capture.read(request_id) if request_id and self.guard.capture.enabled else []
        records = self.store.find_decisions(request_id=request_id) if request_id else []
        strike = self.store.find_strike(entry.item.strike_id) if entry.item.strike_id else None
        return ItemDetail(entry, texts, records, strike)

    def history(self, user_hash: str) -> UserHistory:
        since = self._clock() - self.guard.policy.ladder.window
        count = self.store.user_violation_count(user_hash, since=since)
        return UserHistory(
            user_hash,
            self.guard.status_by_hash(user_hash),
            count,
            violation_rate(count),
            self.store.strikes(user_hash, limit=50),
            self.store.user_queue_entries(user_hash, limit=50),
            self.store.review_notes(user_hash, limit=50),
            self.store.events(user_hash=user_hash, limit=50),
            self.store.load_user(user_hash, window_start=since, keep=1).reset_at,
            since,
        )

    # -- claims ----------------------------------------------------------------------------

    def claim(self, item_id: str, reviewer: str) -> QueueEntry:
        now = self._clock()
        expires = now + self.guard.policy.review.claim_for
        if not self.store.claim_review_item(item_id, reviewer, now=now, expires=expires):
            entry = self.entry(item_id)
            if entry.item.status != "open":
                raise ReviewConflict(f"this item is already {entry.item.status}")
            raise ReviewConflict(f"{entry.claimed_by} is working on this item")
        return self.entry(item_id)

    def release(self, item_id: str, reviewer: str) -> None:
        self.store.release_review_item(item_id, reviewer)

    # -- decisions on an item --------------------------------------------------------------

    def confirm(self, item_id: str, reviewer: str, reason: str = "") -> QueueEntry:
        """The flag was right: the strike stands."""
        return self._resolve(item_id, reviewer, "confirmed", reason or "flag confirmed")

    def dismiss(self, item_id: str, reviewer: str, reason: str = "") -> QueueEntry:
        """A false positive: the item's strike is voided, so the user de-escalates at once."""
        entry = self.entry(item_id)
        self._require_claim(entry, reviewer)
        reason = reason or "false positive"
        if entry.item.strike_id:  # voiding is idempotent, so it runs first, while the claim is held
            self.guard.void_strike(entry.item.strike_id, reason=f"review dismissed: {reason}", actor=actor_of(reviewer))
        return self._resolve(item_id, reviewer, "dismissed", reason)

    def _require_claim(self, entry: QueueEntry, reviewer: str) -> None:
        if entry.item.status != "open":
            raise ReviewConflict(f"this item is already {entry.item.status}")
        if not entry.held_by(reviewer, self._clock()):
            raise ReviewConflict("claim the item first (your claim may have expired)")

    def _resolve(self, item_id: str, reviewer: str, status: str, reason: str) -> QueueEntry:
        entry = self.entry(item_id)
        self._require_claim(entry, reviewer)
        now = self._clock()
        action = {"confirmed": "review_confirm", "dismissed": "review_dismiss"}[status]
        details = {"review_item": item_id, "strike_id": entry.item.strike_id, "request_id": entry.item.request_id}
        event = AuditEvent(new_id(), now, entry.item.user_hash, action, actor_of(reviewer), reason, details)
        if not self.store.resolve_review_item(item_id, reviewer, status, now=now, event=event):
            raise ReviewConflict("the claim on this item ran out or was taken; claim it again")
        return self.entry(item_id)

    # -- decisions on a user ---------------------------------------------------------------

    def note(self, user_hash: str, reviewer: str, body: str, *, item_id: str | None = None) -> ReviewNote:
        body = body.strip()
        if not body or len(body) > MAX_NOTE:
            raise AupguardError(f"a note is 1 to {MAX_NOTE} characters")
        now = self._clock()
        note = ReviewNote(new_id(), now, user_hash, item_id, reviewer, body)
        event = AuditEvent(new_id(), now, user_hash, "review_note", actor_of(reviewer), "note added",
                           {"note_id": note.id, "review_item": item_id})  # fmt: skip
        self.store.add_review_note(note, event=event)
        return note

    def suspend(self, user_hash: str, reviewer: str, *, reason: str, duration: float | None) -> UserStatus:
        """Suspend for ``duration`` seconds (None: until reinstated)."""
        until = None if duration is None else self._clock() + duration
        return self.guard.suspend_by_hash(user_hash, reason=reason, until=until, actor=actor_of(reviewer))

    def reinstate(self, user_hash: str, reviewer: str, *, reason: str) -> UserStatus:
        return self.guard.reinstate_by_hash(user_hash, reason=reason, actor=actor_of(reviewer))

"""The human review tables (SQLite and PostgreSQL): the queue (keyset pages, claims with expiry,
resolutions), reviewer accounts, console sessions, notes and the console's secret.

Plain SQL with ``?`` placeholders and row values, run by either store (``_q`` adapts the
placeholders). A claim is one conditional UPDATE: of two reviewers claiming
the same item at once, exactly one changes the row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..records import AuditEvent, ReviewItem
from ..review_records import (
    ConsoleSession,
    QueueCursor,
    QueueEntry,
    QueueFilter,
    ReviewerAccount,
    ReviewNote,
    ViolationCount,
)
from .queue import queue_count_sql, queue_page_query

__all__ = ["QUEUE_COLUMNS", "ReviewTables", "queue_page_sql"]

QUEUE_COLUMNS = (
    "id, at, user_hash, request_id, strike_id, action, categories, moderators, explanation, status, "
    "claimed_by, claim_expires, resolved_by, resolved_at"
)
REVIEW_STATUSES = ("open", "confirmed", "dismissed")
FLAGGED = "action <> 'sample' AND status <> 'dismissed'"  # a dismissed flag was a false positive


def queue_page_sql(*, after: bool) -> str:
    """One page of the queue, newest first, from the index ``review_items_queue``. ``after``
    adds the keyset condition: items older than the last one shown, never an OFFSET."""
    cursor = " AND (at, id) < (?, ?)" if after else ""
    return f"SELECT {QUEUE_COLUMNS} FROM review_items WHERE status = ?{cursor} ORDER BY at DESC, id DESC LIMIT ?"  # noqa: S608


def _entry(r: Any) -> QueueEntry:
    item = ReviewItem(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6])), tuple(json.loads(r[7])), r[8], r[9])
    return QueueEntry(item, r[10], r[11], r[12], r[13])


class ReviewTables:
    """Mixed into :class:`~aupguard.stores.sql.SQLStore`, which provides these methods."""

    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _q: Callable[[str], str]
    _insert_events: Callable[[Any, Iterable[AuditEvent]], None]
    #: how the dialect asks for a query plan
    _explain_prefix = "EXPLAIN QUERY PLAN"

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        query = self._q(sql)
        return self._read(lambda conn: conn.execute(query, params).fetchall())  # type: ignore[no-any-return]

    def _change(self, sql: str, params: tuple[Any, ...]) -> int:
        query = self._q(sql)
        return int(self._read(lambda conn: conn.execute(query, params).rowcount))

    # -- the queue -------------------------------------------------------------------------

    def add_review_item(self, item: ReviewItem) -> None:
        """Queue an item that needs no strike (a sampled call)."""
        self._change(
            "INSERT INTO review_items (id, at, user_hash, request_id, strike_id, action, categories, moderators, "
            "explanation, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (item.id, item.at, item.user_hash, item.request_id, item.strike_id, item.action,
             json.dumps(list(item.categories)), json.dumps(list(item.moderators)), item.explanation, item.status),
        )  # fmt: skip

    def queue_page(
        self, *, status: str = "open", after: tuple[float, str] | None = None, limit: int = 50
    ) -> list[QueueEntry]:
        if status not in REVIEW_STATUSES:
            raise ValueError(f"status must be one of {', '.join(REVIEW_STATUSES)}")
        params: tuple[Any, ...] = (status, *after, limit) if after else (status, limit)
        return [_entry(r) for r in self._rows(queue_page_sql(after=after is not None), params)]

    def filtered_queue_page(
        self, f: QueueFilter, *, now: float, after: QueueCursor | None = None, limit: int = 50
    ) -> list[QueueEntry]:
        """A page of the queue as ``f`` filters and sorts it (keyset: after ``after``)."""
        sql, params = queue_page_query(f, columns=QUEUE_COLUMNS, now=now, after=after, limit=limit)
        return [_entry(r) for r in self._rows(sql, params)]

    def filtered_queue_count(self, f: QueueFilter, *, now: float) -> int:
        sql, params = queue_count_sql(f, now=now)
        return int(self._rows(sql, params)[0][0])

    def open_items_per_user(self, user_hashes: Iterable[str]) -> dict[str, int]:
        """Open items of each of these users (one query on ``review_items_by_user``)."""
        hashes = sorted(set(user_hashes))[:200]
        if not hashes:
            return {}
        marks = ", ".join("?" * len(hashes))
        rows = self._rows(
            f"SELECT user_hash, count(*) FROM review_items WHERE user_hash IN ({marks}) AND status = 'open' "  # noqa: S608
            "GROUP BY user_hash",
            tuple(hashes),
        )
        return {str(h): int(n) for h, n in rows}

    def queue_entry(self, item_id: str) -> QueueEntry | None:
        rows = self._rows(f"SELECT {QUEUE_COLUMNS} FROM review_items WHERE id = ?", (item_id,))  # noqa: S608
        return _entry(rows[0]) if rows else None

    def user_queue_entries(self, user_hash: str, *, limit: int = 50) -> list[QueueEntry]:
        sql = f"SELECT {QUEUE_COLUMNS} FROM review_items WHERE user_hash = ? ORDER BY at DESC, id DESC LIMIT ?"  # noqa: S608
        return [_entry(r) for r in self._rows(sql, (user_hash, limit))]

    def count_open_items(self) -> int:
        return int(self._rows("SELECT count(*) FROM review_items WHERE status = 'open'", ())[0][0])

    def claim_review_item(self, item_id: str, reviewer: str, *, now: float, expires: float) -> bool:
        """Claim an open item unless another reviewer holds an unexpired claim (or renew
        one's own). One conditional UPDATE, so two claims at once cannot both win."""
        return (
            self._change(
                "UPDATE review_items SET claimed_by = ?, claim_expires = ? WHERE id = ? AND status = 'open' "
                "AND (claimed_by IS NULL OR claimed_by = ? OR claim_expires <= ?)",
                (reviewer, expires, item_id, reviewer, now),
            )
            == 1
        )

    def release_review_item(self, item_id: str, reviewer: str) -> bool:
        return (
            self._change(
                "UPDATE review_items SET claimed_by = NULL, claim_expires = NULL WHERE id = ? AND claimed_by = ? "
                "AND status = 'open'",
                (item_id, reviewer),
            )
            == 1
        )

    def resolve_review_item(self, item_id: str, reviewer: str, status: str, *, now: float, event: AuditEvent) -> bool:
        """Close an item the reviewer holds an unexpired claim on, recording ``event`` in the
        same transaction; False when the claim is not (or no longer) theirs."""
        if status not in REVIEW_STATUSES[1:]:
            raise ValueError("an item is resolved as confirmed or dismissed")

        def run(conn: Any) -> bool:
            changed = conn.execute(
                self._q(
                    "UPDATE review_items SET status = ?, resolved_by = ?, resolved_at = ?, claimed_by = NULL, "
                    "claim_expires = NULL WHERE id = ? AND status = 'open' AND claimed_by = ? AND claim_expires > ?"
                ),
                (status, reviewer, now, item_id, reviewer, now),
            ).rowcount
            if changed == 1:
                self._insert_events(conn, [event])
            return bool(changed == 1)

        return bool(self._write(run))

    # -- notes -----------------------------------------------------------------------------

    def add_review_note(self, note: ReviewNote, *, event: AuditEvent) -> None:
        def run(conn: Any) -> None:
            conn.execute(
                self._q(
                    "INSERT INTO review_notes (id, at, user_hash, item_id, author, body) VALUES (?, ?, ?, ?, ?, ?)"
                ),
                (note.id, note.at, note.user_hash, note.item_id, note.author, note.body),
            )
            self._insert_events(conn, [event])

        self._write(run)

    def review_notes(self, user_hash: str, *, limit: int = 100) -> list[ReviewNote]:
        rows = self._rows(
            "SELECT id, at, user_hash, item_id, author, body FROM review_notes WHERE user_hash = ? "
            "ORDER BY at DESC, id DESC LIMIT ?",
            (user_hash, limit),
        )
        return [ReviewNote(*r) for r in rows]

    # -- the violation-rate report ---------------------------------------------------------

    def violation_counts(self, *, since: float) -> list[ViolationCount]:
        """Every user with a flagged item since ``since``: flagged items and guarded calls."""
        rows = self._rows(
            "SELECT f.user_hash, f.flagged, (SELECT count(*) FROM decisions d WHERE d.user_hash = f.user_hash "  # noqa: S608
            f"AND d.at > ?) FROM (SELECT user_hash, count(*) AS flagged FROM review_items WHERE at > ? AND {FLAGGED} "
            "GROUP BY user_hash) f",
            (since, since),
        )
        return [ViolationCount(h, int(f), int(t)) for h, f, t in rows]

    def user_violation_count(self, user_hash: str, *, since: float) -> ViolationCount:
        flagged = self._rows(
            f"SELECT count(*) FROM review_items WHERE user_hash = ? AND at > ? AND {FLAGGED}",  # noqa: S608
            (user_hash, since),
        )[0][0]
        total = self._rows("SELECT count(*) FROM decisions WHERE user_hash = ? AND at > ?", (user_hash, since))[0][0]
        return ViolationCount(user_hash, int(flagged), int(total))

    # -- reviewer accounts -----------------------------------------------------------------

    def put_reviewer(self, account: ReviewerAccount, *, replace: bool = False) -> bool:
        """Add an account; with ``replace`` set its password anew (ending its sessions).
        False when the name is taken and ``replace`` is not set."""

        def run(conn: Any) -> bool:
            exists = (
                conn.execute(self._q("SELECT 1 FROM reviewers WHERE name = ?"), (account.name,)).fetchone() is not None
            )
            if exists and not replace:
                return False
            conn.execute(self._q("DELETE FROM reviewers WHERE name = ?"), (account.name,))
            conn.execute(self._q("DELETE FROM review_sessions WHERE reviewer = ?"), (account.name,))
            conn.execute(
                self._q("INSERT INTO reviewers (name, salt, password_hash, params, created_at) VALUES (?, ?, ?, ?, ?)"),
                (account.name, account.salt, account.password_hash, account.params, account.created_at),
            )
            return True

        return bool(self._write(run))

    def reviewer(self, name: str) -> ReviewerAccount | None:
        rows = self._rows("SELECT name, salt, password_hash, params, created_at FROM reviewers WHERE name = ?", (name,))
        return ReviewerAccount(rows[0][0], bytes(rows[0][1]), bytes(rows[0][2]), *rows[0][3:]) if rows else None

    def reviewers(self) -> list[ReviewerAccount]:
        rows = self._rows("SELECT name, salt, password_hash, params, created_at FROM reviewers ORDER BY name", ())
        return [ReviewerAccount(r[0], bytes(r[1]), bytes(r[2]), r[3], r[4]) for r in rows]

    def remove_reviewer(self, name: str) -> bool:
        def run(conn: Any) -> bool:
            conn.execute(self._q("DELETE FROM review_sessions WHERE reviewer = ?"), (name,))
            return bool(conn.execute(self._q("DELETE FROM reviewers WHERE name = ?"), (name,)).rowcount == 1)

        return bool(self._write(run))

    # -- console sessions and secret -------------------------------------------------------

    def put_console_session(self, session: ConsoleSession) -> None:
        self._change(
            "INSERT INTO review_sessions (id, reviewer, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (session.id, session.reviewer, session.csrf, session.created_at, session.expires_at),
        )

    def console_session(self, session_id: str, *, now: float) -> ConsoleSession | None:
        rows = self._rows(
            "SELECT id, reviewer, csrf, created_at, expires_at FROM review_sessions WHERE id = ? AND expires_at > ?",
            (session_id, now),
        )
        return ConsoleSession(*rows[0]) if rows else None

    def end_console_session(self, session_id: str, *, purge_before: float) -> None:
        """Delete a session (and every session that expired before ``purge_before``)."""
        self._change("DELETE FROM review_sessions WHERE id = ? OR expires_at < ?", (session_id, purge_before))

    def console_secret(self, name: str, fresh: str) -> str:
        """The stored secret ``name``, storing ``fresh`` first if there is none (the first
        process to start wins; the others read its value)."""

        def run(conn: Any) -> str:
            conn.execute(
                self._q("INSERT INTO review_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"),
                (name, fresh),
            )
            return str(conn.execute(self._q("SELECT value FROM review_secrets WHERE name = ?"), (name,)).fetchone()[0])

        return str(self._write(run))

    def captures_for_request(self, request_id: str) -> list[tuple[str, str, str, float, bytes, bytes]]:
        rows = self._rows(
            "SELECT request_id, kind, user_hash, at, nonce, ciphertext FROM captures WHERE request_id = ? "
            "ORDER BY at, kind",
            (request_id,),
        )
        return [(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5])) for r in rows]

    def captures_for_requests(self, request_ids: Iterable[str]) -> list[tuple[str, str, str, float, bytes, bytes]]:
        """The captured rows of several requests at once (a queue page's snippets: one query)."""
        ids = sorted(set(request_ids))[:200]
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        rows = self._rows(
            "SELECT request_id, kind, user_hash, at, nonce, ciphertext FROM captures "  # noqa: S608
            f"WHERE request_id IN ({marks}) ORDER BY at, kind",
            tuple(ids),
        )
        return [(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5])) for r in rows]

    def explain(self, sql: str, params: tuple[Any, ...]) -> Iterator[str]:
        """The database's query plan for ``sql`` (for tests and ``aupguard doctor``)."""
        for row in self._rows(f"{self._explain_prefix} {sql}", params):
            yield str(row[-1])

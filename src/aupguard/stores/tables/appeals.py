"""The appeals table (SQLite and PostgreSQL): filing (rate limit and one appeal per strike or
request, checked in the transaction that inserts), the queue, and the decision, which voids
the strike and lifts the suspension it caused in the same transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ...ladder import UserState
from ..appeal_records import APPEAL_STATUSES, AppealRecord
from ..records import AuditEvent, Describe

__all__ = ["AppealTables"]

_COLUMNS = (
    "id, at, user_hash, strike_id, request_id, kid, nonce, ciphertext, status, decided_at, decided_by, decision_reason"
)


def _appeal(r: Any) -> AppealRecord:
    return AppealRecord(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), bytes(r[7]), *r[8:])


class AppealTables:
    """Mixed into :class:`~aupguard.stores.sql.SQLStore`, which provides these methods."""

    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _q: Callable[[str], str]
    _insert_events: Callable[[Any, Iterable[AuditEvent]], None]
    _load: Callable[..., UserState]
    _upsert_user: Callable[[Any, str, Mapping[str, Any]], None]
    _mark_change: Callable[[Any, str, float], None]

    def file_appeal(self, appeal: AppealRecord, *, since: float, most: int, event: AuditEvent) -> str | float | None:
        """Insert ``appeal`` unless the user filed ``most`` appeals since ``since`` (returns the
        time the oldest of them was filed) or the strike / request was appealed already
        (returns ``"duplicate"``). None: filed. One transaction, serialised per user."""

        def run(conn: Any) -> str | float | None:
            count, oldest = conn.execute(
                self._q("SELECT count(*), min(at) FROM appeals WHERE user_hash = ? AND at > ?"),
                (appeal.user_hash, since),
            ).fetchone()
            if int(count) >= most:
                return float(oldest)
            clash = conn.execute(
                self._q("SELECT 1 FROM appeals WHERE strike_id = ? OR (user_hash = ? AND request_id = ?)"),
                (appeal.strike_id, appeal.user_hash, appeal.request_id),
            ).fetchone()
            if clash is not None:
                return "duplicate"
            conn.execute(
                self._q(f"INSERT INTO appeals ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),  # noqa: S608
                (appeal.id, appeal.at, appeal.user_hash, appeal.strike_id, appeal.request_id, appeal.kid,
                 appeal.nonce, appeal.ciphertext, appeal.status, None, None, None),
            )  # fmt: skip
            self._insert_events(conn, [event])
            return None

        result: str | float | None = self._write(run, user_hash=appeal.user_hash)
        return result

    def appeal(self, appeal_id: str) -> AppealRecord | None:
        sql = self._q(f"SELECT {_COLUMNS} FROM appeals WHERE id = ?")  # noqa: S608
        row = self._read(lambda conn: conn.execute(sql, (appeal_id,)).fetchone())
        return _appeal(row) if row else None

    def appeals_page(
        self, *, status: str = "open", after: tuple[float, str] | None = None, limit: int = 50
    ) -> list[AppealRecord]:
        """Appeals of one status, oldest first (the order they are worked in), by keyset."""
        if status not in APPEAL_STATUSES:
            raise ValueError(f"status must be one of {', '.join(APPEAL_STATUSES)}")
        cursor = " AND (at, id) > (?, ?)" if after else ""
        sql = self._q(f"SELECT {_COLUMNS} FROM appeals WHERE status = ?{cursor} ORDER BY at, id LIMIT ?")  # noqa: S608
        params = (status, *after, limit) if after else (status, limit)
        return [_appeal(r) for r in self._read(lambda conn: conn.execute(sql, params).fetchall())]

    def user_appeals(self, user_hash: str, *, limit: int = 50) -> list[AppealRecord]:
        sql = self._q(f"SELECT {_COLUMNS} FROM appeals WHERE user_hash = ? ORDER BY at DESC, id DESC LIMIT ?")  # noqa: S608
        return [_appeal(r) for r in self._read(lambda conn: conn.execute(sql, (user_hash, limit)).fetchall())]

    def count_open_appeals(self) -> int:
        sql = "SELECT count(*) FROM appeals WHERE status = 'open'"
        return int(self._read(lambda conn: conn.execute(sql).fetchone()[0]))

    def decide_appeal(
        self,
        appeal: AppealRecord,
        *,
        status: str,
        actor: str,
        reason: str,
        at: float,
        window_start: float,
        keep: int,
        describe: Describe,
        void: str | None = None,
        follow_up: Callable[[UserState], Mapping[str, Any] | None] | None = None,
    ) -> UserState | None:
        """Decide an open appeal: its status, the strike voided (``void``), the user fields
        ``follow_up`` derives (the ladder's suspension lifted) and the events, in one
        transaction. None when the appeal was decided already (nothing changes)."""
        if status not in APPEAL_STATUSES[1:]:
            raise ValueError("an appeal is decided as upheld or denied")
        user_hash = appeal.user_hash

        def run(conn: Any) -> UserState | None:
            changed = conn.execute(
                self._q(
                    "UPDATE appeals SET status = ?, decided_at = ?, decided_by = ?, decision_reason = ? "
                    "WHERE id = ? AND status = 'open'"
                ),
                (status, at, actor, reason, appeal.id),
            ).rowcount
            if changed != 1:
                return None
            before = self._load(conn, user_hash, window_start, keep)
            if void is not None:
                conn.execute(
                    self._q("UPDATE strikes SET voided_at = ?, void_reason = ? WHERE id = ? AND voided_at IS NULL"),
                    (at, f"appeal upheld: {reason}", void),
                )
            after = self._load(conn, user_hash, window_start, keep)
            consequence = follow_up(after) if follow_up is not None else None
            if consequence:
                self._upsert_user(conn, user_hash, consequence)
                after = self._load(conn, user_hash, window_start, keep)
            self._insert_events(conn, describe(before, after))
            self._mark_change(conn, user_hash, at)
            return after

        result: UserState | None = self._write(run, user_hash=user_hash)
        return result

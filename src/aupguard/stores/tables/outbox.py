"""The webhook outbox (SQLite and PostgreSQL). Notifications are rows written in the same
transaction as the change they announce (see ``outbox_hook``); delivery threads lease due
rows with one conditional UPDATE each, so two processes never send the same row at once,
and a row stays until a receiver took it (or it is given up, after ``[notify] give_up_after``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..appeal_records import OutboxRow
from ..records import AuditEvent

__all__ = ["OutboxHook", "OutboxTables"]

#: Given the events of one transaction, the outbox rows to write with them:
#: (id, at, target, event, data as JSON).
OutboxHook = Callable[[Sequence[AuditEvent]], list[tuple[str, float, str, str, str]]]
_COLUMNS = "id, at, target, event, data, attempts, next_at, delivery_id"
_SLA_MARK = "notify_sla_mark"


class OutboxTables:
    """Mixed into :class:`~aupguard.stores.sql.SQLStore`, which provides these methods."""

    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _q: Callable[[str], str]
    _executemany: Callable[[Any, str, list[Any]], None]
    #: set by the notifier: turns a transaction's events into outbox rows (None: no webhooks)
    outbox_hook: OutboxHook | None = None

    def _outbox_from_events(self, conn: Any, events: Sequence[AuditEvent]) -> None:
        hook = self.outbox_hook
        if hook is None or not events:
            return
        rows = hook(events)
        self._executemany(
            conn,
            "INSERT INTO notify_outbox (id, at, target, event, data, next_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(i, at, target, event, data, at) for i, at, target, event, data in rows],
        )

    def add_outbox(self, rows: list[tuple[str, float, str, str, str]]) -> None:
        def run(conn: Any) -> None:
            self._executemany(
                conn,
                "INSERT INTO notify_outbox (id, at, target, event, data, next_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(i, at, target, event, data, at) for i, at, target, event, data in rows],
            )

        self._write(run)

    def due_outbox(self, target: str, *, now: float, limit: int = 100) -> list[OutboxRow]:
        """Rows for ``target`` due now and not leased by a live sender, oldest first."""
        sql = self._q(
            f"SELECT {_COLUMNS} FROM notify_outbox WHERE target = ? AND delivered_at IS NULL "  # noqa: S608
            "AND failed_at IS NULL AND next_at <= ? AND (lease_until IS NULL OR lease_until <= ?) "
            "ORDER BY at, id LIMIT ?"
        )
        rows = self._read(lambda conn: conn.execute(sql, (target, now, now, limit)).fetchall())
        return [OutboxRow(*r) for r in rows]

    def lease_outbox(self, rows: Iterable[OutboxRow], delivery_id: str, *, now: float, until: float) -> list[OutboxRow]:
        """Lease ``rows`` for one delivery; the rows another sender leased meanwhile are left
        out. A row keeps the delivery id of its first attempt, so a retry is the same delivery."""

        def run(conn: Any) -> list[OutboxRow]:
            won = []
            for row in rows:
                changed = conn.execute(
                    self._q(
                        "UPDATE notify_outbox SET lease_until = ?, delivery_id = coalesce(delivery_id, ?) "
                        "WHERE id = ? AND delivered_at IS NULL AND failed_at IS NULL "
                        "AND (lease_until IS NULL OR lease_until <= ?)"
                    ),
                    (until, delivery_id, row.id, now),
                ).rowcount
                if changed == 1:
                    won.append(row)
            return won

        won: list[OutboxRow] = self._write(run)
        return won

    def outbox_done(self, ids: Sequence[str], *, at: float) -> None:
        self._settle("delivered_at = ?, lease_until = NULL", (at,), ids)

    def outbox_retry(self, ids: Sequence[str], *, next_at: float) -> None:
        self._settle("attempts = attempts + 1, next_at = ?, lease_until = NULL", (next_at,), ids)

    def outbox_give_up(self, ids: Sequence[str], *, at: float) -> None:
        self._settle("failed_at = ?, lease_until = NULL", (at,), ids)

    def _settle(self, assignments: str, values: tuple[Any, ...], ids: Sequence[str]) -> None:
        if not ids:
            return
        marks = ", ".join("?" for _ in ids)
        sql = self._q(f"UPDATE notify_outbox SET {assignments} WHERE id IN ({marks})")  # noqa: S608 - fixed text
        self._write(lambda conn: conn.execute(sql, (*values, *ids)))

    def count_outbox(self, *, pending: bool = True) -> int:
        where = "delivered_at IS NULL AND failed_at IS NULL" if pending else "delivered_at IS NOT NULL"
        sql = f"SELECT count(*) FROM notify_outbox WHERE {where}"  # noqa: S608 - fixed text
        return int(self._read(lambda conn: conn.execute(sql).fetchone()[0]))

    def prune_outbox(self, *, before: float) -> None:
        """Forget rows delivered or given up before ``before``."""
        sql = self._q("DELETE FROM notify_outbox WHERE coalesce(delivered_at, failed_at) < ?")
        self._write(lambda conn: conn.execute(sql, (before,)))

    def sla_breaches(self, *, older_than: float, make_rows: Callable[[list[tuple[str, float]]], list[Any]]) -> int:
        """Open review items flagged before ``older_than`` and not announced yet: the rows
        ``make_rows(items)`` returns go into the outbox and the mark moves past the items, in
        one transaction (so of several processes checking at once, one announces them)."""

        def run(conn: Any) -> int:
            conn.execute(
                self._q("INSERT INTO aupguard_meta (key, value) VALUES (?, '0') ON CONFLICT (key) DO NOTHING"),
                (_SLA_MARK,),
            )
            mark = float(
                conn.execute(self._q("SELECT value FROM aupguard_meta WHERE key = ?"), (_SLA_MARK,)).fetchone()[0]
            )
            items = conn.execute(
                self._q("SELECT id, at FROM review_items WHERE status = 'open' AND at > ? AND at <= ? ORDER BY at, id"),
                (mark, older_than),
            ).fetchall()
            if not items:
                return 0
            changed = conn.execute(
                self._q("UPDATE aupguard_meta SET value = ? WHERE key = ? AND value = ?"),
                (repr(float(items[-1][1])), _SLA_MARK, repr(mark) if mark else "0"),
            ).rowcount
            if changed != 1:
                return 0
            rows = make_rows([(str(i), float(at)) for i, at in items])
            self._executemany(
                conn,
                "INSERT INTO notify_outbox (id, at, target, event, data, next_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(i, at, target, event, data, at) for i, at, target, event, data in rows],
            )
            return len(items)

        count: int = self._write(run)
        return count

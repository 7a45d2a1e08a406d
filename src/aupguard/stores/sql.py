"""What the SQL stores share: every query and the logic around it, written once.

Subclasses (:class:`~aupguard.stores.sqlite.store.SQLStore`,
:class:`~aupguard.stores.postgres.store.PostgresStore`) supply connections and transactions:
``_read(fn)`` runs ``fn(conn)`` outside a transaction, ``_write(fn, user_hash=...)`` inside
one that serialises changes to that user, ``_write_audit(fn)`` inside one on the audit
writer's connection. Queries use ``?`` placeholders; ``_q`` turns them into the driver's.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from ..ladder import UserState
from .records import AuditEvent, AuditRecord, Describe, ReviewItem, StrikeRecord
from .tables.appeals import AppealTables
from .tables.capture import CaptureTables
from .tables.capture_archive import CaptureArchiveTables
from .tables.gateway import GatewayKeyTables
from .tables.outbox import OutboxTables
from .tables.review import ReviewTables

__all__ = ["AuditOp", "SQLStore"]

T = TypeVar("T")
#: A database connection of the subclass's driver (sqlite3 or psycopg).
Conn = Any

#: ("record", row in _DECISION_COLUMNS order, reasons JSON-encoded)
#: or ("link", (request_id, anthropic_request_id, message_id, model, input_tokens, output_tokens))
#: or ("amend", (request_id, outcome, status, reasons as JSON))
#: or ("capture", (request_id, kind, user_hash, at, nonce, ciphertext))
#: or ("review", review_items row: id, at, user_hash, request_id, strike_id, action, categories JSON,
#:     moderators JSON, explanation, status)
AuditOp = tuple[str, Any]
_ROWS_PER_INSERT = 3000  # 10 columns each: under SQLite's 32,766 and PostgreSQL's 65,535 parameters
_USER_COLUMNS = (
    "terms_version",
    "terms_at",
    "suspended",
    "suspended_until",
    "suspend_reason",
    "suspend_auto",
    "reset_at",
)
_DECISION_COLUMNS = (
    "request_id, at, user_hash, surface, outcome, status, level, reasons, anthropic_request_id, message_id"
)
_READ_COLUMNS = _DECISION_COLUMNS + ", model, input_tokens, output_tokens"
_STRIKE_COLUMNS = "id, user_hash, at, reason, category, source, actor, voided_at, void_reason"


class SQLStore(CaptureTables, CaptureArchiveTables, ReviewTables, GatewayKeyTables, AppealTables, OutboxTables):
    """The durable records of one deployment: users, strikes, events, decisions, the review
    queue, captured text and the change feed other processes poll."""

    #: True when other processes may change the data, so the change feed must be polled.
    shared: bool
    #: SQL's two-argument maximum in this dialect.
    _greatest = "max"

    # -- supplied by the subclass --------------------------------------------------------

    @property
    def uri(self) -> str:
        raise NotImplementedError

    def _read(self, fn: Callable[[Conn], T]) -> T:
        raise NotImplementedError

    def _write(self, fn: Callable[[Conn], T], *, user_hash: str | None = None) -> T:
        raise NotImplementedError

    def _write_audit(self, fn: Callable[[Conn], None]) -> None:
        raise NotImplementedError

    def _mark_change(self, conn: Conn, user_hash: str, at: float) -> None:
        """Append to the change feed, last thing in a transaction."""
        conn.execute(self._q("INSERT INTO changes (user_hash, at) VALUES (?, ?)"), (user_hash, at))

    def _q(self, sql: str) -> str:
        return sql

    def _executemany(self, conn: Conn, sql: str, rows: list[Any]) -> None:
        if rows:
            conn.executemany(self._q(sql), rows)

    def after_fork(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- users -----------------------------------------------------------------------

    def load_user(self, user_hash: str, *, window_start: float, keep: int) -> UserState:
        return self._read(lambda conn: self._load(conn, user_hash, window_start, keep))

    def _load(self, conn: Conn, user_hash: str, window_start: float, keep: int) -> UserState:
        row = conn.execute(
            self._q(
                "SELECT terms_version, suspended, suspended_until, suspend_reason, suspend_auto, reset_at "
                "FROM users WHERE user_hash = ?"
            ),
            (user_hash,),
        ).fetchone()
        terms, suspended, until, reason, auto, reset_at = row if row else (None, 0, None, None, 0, None)
        floor = window_start if reset_at is None else max(window_start, reset_at)
        times = conn.execute(
            self._q(
                "SELECT at FROM strikes WHERE user_hash = ? AND voided_at IS NULL AND at > ? ORDER BY at DESC LIMIT ?"
            ),
            (user_hash, floor, keep),
        ).fetchall()
        strikes = tuple(sorted(t for (t,) in times))
        return UserState(user_hash, strikes, reset_at, bool(suspended), until, reason, terms, bool(auto))

    def count_strikes(self, user_hash: str, *, since: float) -> int:
        sql = self._q(
            "SELECT count(*) FROM strikes WHERE user_hash = ? AND voided_at IS NULL AND at > "  # noqa: S608
            f"{self._greatest}(?, coalesce((SELECT reset_at FROM users WHERE user_hash = ?), ?))"
        )
        return int(self._read(lambda conn: conn.execute(sql, (user_hash, since, user_hash, since)).fetchone()[0]))

    def mutate(
        self,
        user_hash: str,
        *,
        window_start: float,
        keep: int,
        describe: Describe,
        at: float,
        user_fields: Mapping[str, Any] | None = None,
        strike: StrikeRecord | None = None,
        void: tuple[str, str] | None = None,
        follow_up: Callable[[UserState], Mapping[str, Any] | None] | None = None,
        review: ReviewItem | None = None,
    ) -> UserState:
        """Apply one change to a user atomically, then the user fields ``follow_up`` derives
        from the changed state (the ladder's own suspension), and record the events
        ``describe`` returns. A strike or review item already recorded (a replay) is kept once."""

        def run(conn: Conn) -> UserState:
            before = self._load(conn, user_hash, window_start, keep)
            if user_fields:
                self._upsert_user(conn, user_hash, user_fields)
            if strike is not None:
                conn.execute(
                    self._q(
                        "INSERT INTO strikes (id, user_hash, at, reason, category, source, actor) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
                    ),
                    (strike.id, user_hash, strike.at, strike.reason, strike.category, strike.source, strike.actor),
                )
            if void is not None:
                conn.execute(
                    self._q("UPDATE strikes SET voided_at = ?, void_reason = ? WHERE id = ? AND voided_at IS NULL"),
                    (at, void[1], void[0]),
                )
            if review is not None:
                conn.execute(
                    self._q(
                        "INSERT INTO review_items (id, at, user_hash, request_id, strike_id, action, categories, "
                        "moderators, explanation, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (id) DO NOTHING"
                    ),
                    (review.id, review.at, user_hash, review.request_id, review.strike_id, review.action,
                     json.dumps(list(review.categories)), json.dumps(list(review.moderators)),
                     review.explanation, review.status),
                )  # fmt: skip
            after = self._load(conn, user_hash, window_start, keep)
            consequence = follow_up(after) if follow_up is not None else None
            if consequence:
                self._upsert_user(conn, user_hash, consequence)
                after = self._load(conn, user_hash, window_start, keep)
            self._insert_events(conn, describe(before, after))
            self._mark_change(conn, user_hash, at)
            return after

        return self._write(run, user_hash=user_hash)

    def _upsert_user(self, conn: Conn, user_hash: str, fields: Mapping[str, Any]) -> None:
        unknown = set(fields) - set(_USER_COLUMNS)
        if unknown:
            raise ValueError(f"unknown user fields {sorted(unknown)}")
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        updates = ", ".join(f"{c} = excluded.{c}" for c in fields)
        conn.execute(
            self._q(
                f"INSERT INTO users (user_hash, {cols}) VALUES (?, {marks}) "  # noqa: S608 - known columns
                f"ON CONFLICT (user_hash) DO UPDATE SET {updates}"
            ),
            (user_hash, *(_bool_as_int(v) for v in fields.values())),
        )

    def review_items(
        self, *, status: str | None = "open", user_hash: str | None = None, limit: int = 100
    ) -> list[ReviewItem]:
        clauses, args = [], []
        if status is not None:
            clauses.append("status = ?")
            args.append(status)
        if user_hash is not None:
            clauses.append("user_hash = ?")
            args.append(user_hash)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = self._q(
            "SELECT id, at, user_hash, request_id, strike_id, action, categories, moderators, explanation, status "  # noqa: S608
            f"FROM review_items {where} ORDER BY at DESC, id DESC LIMIT ?"
        )
        rows = self._read(lambda conn: conn.execute(sql, (*args, limit)).fetchall())
        return [
            ReviewItem(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6])), tuple(json.loads(r[7])), r[8], r[9])
            for r in rows
        ]

    def find_strike(self, strike_id: str) -> StrikeRecord | None:
        sql = self._q(f"SELECT {_STRIKE_COLUMNS} FROM strikes WHERE id = ?")  # noqa: S608
        row = self._read(lambda conn: conn.execute(sql, (strike_id,)).fetchone())
        return StrikeRecord(*row) if row else None

    def strikes(self, user_hash: str, *, limit: int = 100) -> list[StrikeRecord]:
        sql = self._q(f"SELECT {_STRIKE_COLUMNS} FROM strikes WHERE user_hash = ? ORDER BY at DESC LIMIT ?")  # noqa: S608
        rows = self._read(lambda conn: conn.execute(sql, (user_hash, limit)).fetchall())
        return [StrikeRecord(*r) for r in rows]

    def has_user(self, user_hash: str) -> bool:
        sql = self._q(
            "SELECT EXISTS (SELECT 1 FROM users WHERE user_hash = ?) "
            "OR EXISTS (SELECT 1 FROM strikes WHERE user_hash = ?)"
        )
        return bool(self._read(lambda conn: conn.execute(sql, (user_hash, user_hash)).fetchone()[0]))

    def count_user_records(self, kid: str | None = None) -> int:
        """Rows about users (users, strikes, audit records), all of them or those hashed under
        key ``kid`` (hashes read ``<kid>_<hex>``): what ``doctor`` compares with the key ring."""
        where = "user_hash IS NOT NULL" if kid is None else "user_hash LIKE ? ESCAPE '!'"
        params = () if kid is None else (f"{kid}!_%",) * 3  # a key id is letters and digits only
        tables = ("users", "strikes", "decisions")
        count = " + ".join(f"(SELECT count(*) FROM {t} WHERE {where})" for t in tables)  # noqa: S608 - fixed text
        sql = self._q(f"SELECT {count}")
        return int(self._read(lambda conn: conn.execute(sql, params).fetchone()[0]))

    def rekey_user(self, old_hash: str, new_hash: str, *, event: AuditEvent) -> None:
        """Carry a user's records from a previous key's hash to the current one."""

        def run(conn: Conn) -> None:
            if conn.execute(self._q("SELECT 1 FROM users WHERE user_hash = ?"), (new_hash,)).fetchone() is None:
                conn.execute(self._q("UPDATE users SET user_hash = ? WHERE user_hash = ?"), (new_hash, old_hash))
            conn.execute(self._q("UPDATE strikes SET user_hash = ? WHERE user_hash = ?"), (new_hash, old_hash))
            conn.execute(self._q("UPDATE events SET user_hash = ? WHERE user_hash = ?"), (new_hash, old_hash))
            self._insert_events(conn, [event])
            self._mark_change(conn, new_hash, event.at)

        self._write(run, user_hash=new_hash)

    # -- events and decision records -------------------------------------------------

    def _insert_events(self, conn: Conn, events: Iterable[AuditEvent]) -> None:
        events = list(events)
        self._executemany(
            conn,
            "INSERT INTO events (id, at, user_hash, action, actor, reason, details) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(e.id, e.at, e.user_hash, e.action, e.actor, e.reason, json.dumps(dict(e.details))) for e in events],
        )
        self._outbox_from_events(conn, events)  # the webhooks' notifications, in the same transaction

    def events(self, *, user_hash: str | None = None, limit: int = 100) -> list[AuditEvent]:
        where, args = ("WHERE user_hash = ?", (user_hash,)) if user_hash else ("", ())
        sql = self._q(
            "SELECT id, at, user_hash, action, actor, reason, details FROM events "  # noqa: S608 - fixed clauses
            f"{where} ORDER BY at DESC, id DESC LIMIT ?"
        )
        rows = self._read(lambda conn: conn.execute(sql, (*args, limit)).fetchall())
        return [AuditEvent(i, at, u, a, actor, r, json.loads(d)) for i, at, u, a, actor, r, d in rows]

    def write_audit(self, ops: list[AuditOp]) -> None:
        """Write a batch of queued audit operations in one transaction (group commit).
        Decision rows are inserted a few thousand per statement (``executemany`` would
        cross into the driver once per row). Replaying a batch after a failure is harmless:
        inserts skip known rows and links only fill in."""
        rows = [op[1] for op in ops if op[0] == "record"]
        links = [op[1] for op in ops if op[0] == "link"]
        amends = [op[1] for op in ops if op[0] == "amend"]
        captured = [op[1] for op in ops if op[0] == "capture"]
        reviews = [op[1] for op in ops if op[0] == "review"]

        def run(conn: Conn) -> None:
            for start in range(0, len(rows), _ROWS_PER_INSERT):
                chunk = rows[start : start + _ROWS_PER_INSERT]
                conn.execute(self._q(_insert_decisions_sql(len(chunk))), [v for row in chunk for v in row])
            self._executemany(
                conn,
                "UPDATE decisions SET anthropic_request_id = coalesce(?, anthropic_request_id), "
                "message_id = coalesce(?, message_id), model = coalesce(?, model), "
                "input_tokens = coalesce(?, input_tokens), output_tokens = coalesce(?, output_tokens) "
                "WHERE request_id = ?",
                [(areq, mid, model, tin, tout, rid) for rid, areq, mid, model, tin, tout in links],
            )
            self._executemany(  # one row per Claude call: keyed by its request-id, else its message id
                conn,
                "INSERT INTO claude_calls (request_id, call_key, anthropic_request_id, message_id, model, "
                "input_tokens, output_tokens) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id, call_key) "
                "DO UPDATE SET message_id = coalesce(excluded.message_id, claude_calls.message_id), "
                "model = coalesce(excluded.model, claude_calls.model), input_tokens = "
                "coalesce(excluded.input_tokens, claude_calls.input_tokens), output_tokens = "
                "coalesce(excluded.output_tokens, claude_calls.output_tokens)",
                [(rid, areq or mid, areq, mid, model, tin, tout) for rid, areq, mid, model, tin, tout in links
                 if areq or mid],
            )  # fmt: skip
            self._executemany(
                conn,
                "INSERT INTO captures (request_id, kind, user_hash, at, nonce, ciphertext) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                captured,
            )
            self._executemany(
                conn,
                "INSERT INTO review_items (id, at, user_hash, request_id, strike_id, action, categories, moderators, "
                "explanation, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                reviews,
            )
            self._executemany(
                conn,
                "UPDATE decisions SET outcome = ?, status = ?, reasons = ? WHERE request_id = ?",
                [(outcome, status, reasons, rid) for rid, outcome, status, reasons in amends],
            )

        self._write_audit(run)

    def find_decisions(
        self,
        *,
        request_id: str | None = None,
        user_hashes: tuple[str, ...] = (),
        anthropic_request_id: str | None = None,
        message_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        clauses: list[str] = []
        args: list[Any] = []
        if request_id is not None:
            clauses.append("request_id = ?")
            args.append(request_id)
        if user_hashes:
            clauses.append(f"user_hash IN ({', '.join('?' for _ in user_hashes)})")
            args.extend(user_hashes)
        for column, value in (("anthropic_request_id", anthropic_request_id), ("message_id", message_id)):
            if value is not None:  # any Claude call of the request, not only the latest
                clauses.append(f"request_id IN (SELECT request_id FROM claude_calls WHERE {column} = ?)")  # noqa: S608
                args.append(value)
        if not clauses:
            raise ValueError("give at least one of request_id, user_id, anthropic_request_id, message_id")
        sql = self._q(
            f"SELECT {_READ_COLUMNS} FROM decisions "  # noqa: S608 - fixed clauses, values bound
            f"WHERE {' AND '.join(clauses)} ORDER BY at DESC, request_id DESC LIMIT ?"
        )
        rows = self._read(lambda conn: conn.execute(sql, (*args, limit)).fetchall())
        return [AuditRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(json.loads(r[7])), *r[8:]) for r in rows]

    def count_decisions(self) -> int:
        return int(self._read(lambda conn: conn.execute("SELECT count(*) FROM decisions").fetchone()[0]))

    # -- change feed -----------------------------------------------------------------

    def change_seq(self) -> int:
        return int(self._read(lambda conn: conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0]))

    def changes_since(self, seq: int) -> tuple[int, set[str]]:
        sql = self._q("SELECT seq, user_hash FROM changes WHERE seq > ? ORDER BY seq")
        rows = self._read(lambda conn: conn.execute(sql, (seq,)).fetchall())
        return (rows[-1][0] if rows else seq), {h for _, h in rows}

    def prune_changes(self, before: float) -> None:
        self._read(lambda conn: conn.execute(self._q("DELETE FROM changes WHERE at < ?"), (before,)))

    def schema_version(self) -> int:
        sql = "SELECT value FROM aupguard_meta WHERE key = 'schema_version'"
        return int(self._read(lambda conn: conn.execute(sql).fetchone()[0]))


def _bool_as_int(value: object) -> object:
    return int(value) if isinstance(value, bool) else value


@functools.lru_cache(maxsize=64)
def _insert_decisions_sql(rows: int) -> str:
    one = "(" + ", ".join("?" * 10) + ")"
    values = ", ".join([one] * rows)
    return f"INSERT INTO decisions ({_DECISION_COLUMNS}) VALUES {values} ON CONFLICT (request_id) DO NOTHING"  # noqa: S608

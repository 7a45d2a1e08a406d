"""The embedded store: a SQLite file in WAL mode (``sqlite:///path``) or in memory (``memory://``).

State changes run in ``BEGIN IMMEDIATE`` transactions, so any number of threads and processes
can strike the same user and every strike is counted. Each change also appends to a change
feed that other processes poll, which is how a suspension made elsewhere reaches them.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..ladder import UserState
from .records import AuditEvent, AuditRecord, Describe, ReviewItem, StrikeRecord
from .sqlite_capture import CaptureTables
from .sqlite_review import ReviewTables
from .sqlite_schema import migrate

__all__ = ["AuditOp", "SQLiteStore"]

#: ("record", row in _DECISION_COLUMNS order, reasons JSON-encoded)
#: or ("link", (request_id, anthropic_request_id, message_id, model, input_tokens, output_tokens))
#: or ("amend", (request_id, outcome, status, reasons as JSON))
#: or ("capture", (request_id, kind, user_hash, at, nonce, ciphertext))
AuditOp = tuple[str, Any]
_ROWS_PER_INSERT = 3000  # 10 columns each: well under SQLite's 32,766 bound parameters
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


class SQLiteStore(CaptureTables, ReviewTables):
    def __init__(self, path: str | None) -> None:
        self.path = path
        #: True when other processes may change the data (a file), so changes must be polled.
        self.shared = path is not None
        self._lock = threading.RLock()
        self._conn = self._connect()
        self._audit_conn = self._connect() if self.shared else self._conn
        with self._lock:
            self._guard(lambda: migrate(self._conn))

    def after_fork(self) -> None:
        """In a forked child: SQLite connections must not cross a fork, so open new ones
        (the inherited ones are abandoned, not closed: closing them could disturb the
        parent's locks), and a fresh lock in case another thread held it at the fork."""
        self._lock = threading.RLock()
        self._conn = self._connect()
        self._audit_conn = self._connect() if self.shared else self._conn
        if not self.shared:  # an in-memory database is not shared with the parent: start empty
            self._guard(lambda: migrate(self._conn))

    @property
    def uri(self) -> str:
        return "memory://" if self.path is None else f"sqlite:///{self.path}"

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.path is None:
                conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            else:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA secure_delete=ON")  # erased keys and text are overwritten, not just unlinked
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open SQLite store {self.path or ':memory:'}: {exc}") from None
        return conn

    def _guard(self, fn: Any) -> Any:
        try:
            return fn()
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path or ':memory:'} failed: {exc}") from exc

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front (waiting up to the busy timeout),
        # so a read-modify-write never has to be retried halfway.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- users -----------------------------------------------------------------------

    def load_user(self, user_hash: str, *, window_start: float, keep: int) -> UserState:
        with self._lock:
            return self._guard(lambda: self._load(self._conn, user_hash, window_start, keep))  # type: ignore[no-any-return]

    def _load(self, conn: sqlite3.Connection, user_hash: str, window_start: float, keep: int) -> UserState:
        row = conn.execute(
            "SELECT terms_version, suspended, suspended_until, suspend_reason, suspend_auto, reset_at "
            "FROM users WHERE user_hash = ?",
            (user_hash,),
        ).fetchone()
        terms, suspended, until, reason, auto, reset_at = row if row else (None, 0, None, None, 0, None)
        floor = window_start if reset_at is None else max(window_start, reset_at)
        times = conn.execute(
            "SELECT at FROM strikes WHERE user_hash = ? AND voided_at IS NULL AND at > ? ORDER BY at DESC LIMIT ?",
            (user_hash, floor, keep),
        ).fetchall()
        strikes = tuple(sorted(t for (t,) in times))
        return UserState(user_hash, strikes, reset_at, bool(suspended), until, reason, terms, bool(auto))

    def count_strikes(self, user_hash: str, *, since: float) -> int:
        sql = (
            "SELECT count(*) FROM strikes WHERE user_hash = ? AND voided_at IS NULL AND at > "
            "max(?, coalesce((SELECT reset_at FROM users WHERE user_hash = ?), ?))"
        )
        with self._lock:
            return int(self._guard(lambda: self._conn.execute(sql, (user_hash, since, user_hash, since)).fetchone()[0]))

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
        ``describe`` returns."""

        def run() -> UserState:
            with self._lock, self._transaction(self._conn) as conn:
                before = self._load(conn, user_hash, window_start, keep)
                if user_fields:
                    self._upsert_user(conn, user_hash, user_fields)
                if strike is not None:
                    conn.execute(
                        "INSERT INTO strikes (id, user_hash, at, reason, category, source, actor) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            strike.id,
                            user_hash,
                            strike.at,
                            strike.reason,
                            strike.category,
                            strike.source,
                            strike.actor,
                        ),
                    )
                if void is not None:
                    conn.execute(
                        "UPDATE strikes SET voided_at = ?, void_reason = ? WHERE id = ? AND voided_at IS NULL",
                        (at, void[1], void[0]),
                    )
                if review is not None:
                    conn.execute(
                        "INSERT INTO review_items (id, at, user_hash, request_id, strike_id, action, categories, "
                        "moderators, explanation, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                conn.execute("INSERT INTO changes (user_hash, at) VALUES (?, ?)", (user_hash, at))
                return after

        return self._guard(run)  # type: ignore[no-any-return]

    @staticmethod
    def _upsert_user(conn: sqlite3.Connection, user_hash: str, fields: Mapping[str, Any]) -> None:
        unknown = set(fields) - set(_USER_COLUMNS)
        if unknown:
            raise ValueError(f"unknown user fields {sorted(unknown)}")
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        updates = ", ".join(f"{c} = excluded.{c}" for c in fields)
        conn.execute(
            f"INSERT INTO users (user_hash, {cols}) VALUES (?, {marks}) "  # noqa: S608 - known columns
            f"ON CONFLICT (user_hash) DO UPDATE SET {updates}",
            (user_hash, *fields.values()),
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
        sql = (
            "SELECT id, at, user_hash, request_id, strike_id, action, categories, moderators, explanation, status "  # noqa: S608
            f"FROM review_items {where} ORDER BY at DESC, id DESC LIMIT ?"
        )
        with self._lock:
            rows = self._guard(lambda: self._conn.execute(sql, (*args, limit)).fetchall())
        return [
            ReviewItem(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6])), tuple(json.loads(r[7])), r[8], r[9])
            for r in rows
        ]

    def find_strike(self, strike_id: str) -> StrikeRecord | None:
        with self._lock:
            row = self._guard(
                lambda: self._conn.execute(
                    "SELECT id, user_hash, at, reason, category, source, actor, voided_at, void_reason "
                    "FROM strikes WHERE id = ?",
                    (strike_id,),
                ).fetchone()
            )
        return StrikeRecord(*row) if row else None

    def strikes(self, user_hash: str, *, limit: int = 100) -> list[StrikeRecord]:
        with self._lock:
            rows = self._guard(
                lambda: self._conn.execute(
                    "SELECT id, user_hash, at, reason, category, source, actor, voided_at, void_reason "
                    "FROM strikes WHERE user_hash = ? ORDER BY at DESC LIMIT ?",
                    (user_hash, limit),
                ).fetchall()
            )
        return [StrikeRecord(*r) for r in rows]

    def has_user(self, user_hash: str) -> bool:
        sql = (
            "SELECT EXISTS (SELECT 1 FROM users WHERE user_hash = ?) "
            "OR EXISTS (SELECT 1 FROM strikes WHERE user_hash = ?)"
        )
        with self._lock:
            return bool(self._guard(lambda: self._conn.execute(sql, (user_hash, user_hash)).fetchone()[0]))

    def rekey_user(self, old_hash: str, new_hash: str, *, event: AuditEvent) -> None:
        """Carry a user's records from a previous key's hash to the current one."""

        def run() -> None:
            with self._lock, self._transaction(self._conn) as conn:
                if conn.execute("SELECT 1 FROM users WHERE user_hash = ?", (new_hash,)).fetchone() is None:
                    conn.execute("UPDATE users SET user_hash = ? WHERE user_hash = ?", (new_hash, old_hash))
                conn.execute("UPDATE strikes SET user_hash = ? WHERE user_hash = ?", (new_hash, old_hash))
                conn.execute("UPDATE events SET user_hash = ? WHERE user_hash = ?", (new_hash, old_hash))
                self._insert_events(conn, [event])
                conn.execute("INSERT INTO changes (user_hash, at) VALUES (?, ?)", (new_hash, event.at))

        self._guard(run)

    # -- events and decision records -------------------------------------------------

    @staticmethod
    def _insert_events(conn: sqlite3.Connection, events: Iterable[AuditEvent]) -> None:
        conn.executemany(
            "INSERT INTO events (id, at, user_hash, action, actor, reason, details) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(e.id, e.at, e.user_hash, e.action, e.actor, e.reason, json.dumps(dict(e.details))) for e in events],
        )

    def events(self, *, user_hash: str | None = None, limit: int = 100) -> list[AuditEvent]:
        where, args = ("WHERE user_hash = ?", (user_hash,)) if user_hash else ("", ())
        sql = (
            "SELECT id, at, user_hash, action, actor, reason, details FROM events "  # noqa: S608 - fixed clauses
            f"{where} ORDER BY at DESC, id DESC LIMIT ?"
        )
        with self._lock:
            rows = self._guard(lambda: self._conn.execute(sql, (*args, limit)).fetchall())
        return [AuditEvent(i, at, u, a, actor, r, json.loads(d)) for i, at, u, a, actor, r, d in rows]

    def write_audit(self, ops: list[AuditOp]) -> None:
        """Write a batch of queued audit operations in one transaction (group commit).
        Decision rows are inserted a few thousand per statement (``executemany`` would
        cross into SQLite once per row). Replaying a batch after a failure is harmless:
        inserts skip known request ids."""
        rows = [op[1] for op in ops if op[0] == "record"]
        links = [op[1] for op in ops if op[0] == "link"]
        amends = [op[1] for op in ops if op[0] == "amend"]
        captured = [op[1] for op in ops if op[0] == "capture"]

        def run() -> None:
            with (
                self._lock if not self.shared else nullcontext(),
                self._transaction(self._audit_conn) as conn,
            ):
                for start in range(0, len(rows), _ROWS_PER_INSERT):
                    chunk = rows[start : start + _ROWS_PER_INSERT]
                    conn.execute(_insert_decisions_sql(len(chunk)), [v for row in chunk for v in row])
                conn.executemany(
                    "UPDATE decisions SET anthropic_request_id = coalesce(?, anthropic_request_id), "
                    "message_id = coalesce(?, message_id), model = coalesce(?, model), "
                    "input_tokens = coalesce(?, input_tokens), output_tokens = coalesce(?, output_tokens) "
                    "WHERE request_id = ?",
                    [(areq, mid, model, tin, tout, rid) for rid, areq, mid, model, tin, tout in links],
                )
                conn.executemany(  # one row per Claude call: keyed by its request-id, else its message id
                    "INSERT INTO claude_calls (request_id, call_key, anthropic_request_id, message_id, model, "
                    "input_tokens, output_tokens) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id, call_key) "
                    "DO UPDATE SET message_id = coalesce(excluded.message_id, message_id), "
                    "model = coalesce(excluded.model, model), input_tokens = coalesce(excluded.input_tokens, "
                    "input_tokens), output_tokens = coalesce(excluded.output_tokens, output_tokens)",
                    [(rid, areq or mid, areq, mid, model, tin, tout) for rid, areq, mid, model, tin, tout in links
                     if areq or mid],
                )  # fmt: skip
                conn.executemany(
                    "INSERT OR IGNORE INTO captures (request_id, kind, user_hash, at, nonce, ciphertext) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    captured,
                )
                conn.executemany(
                    "UPDATE decisions SET outcome = ?, status = ?, reasons = ? WHERE request_id = ?",
                    [(outcome, status, reasons, rid) for rid, outcome, status, reasons in amends],
                )

        self._guard(run)

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
        sql = (
            f"SELECT {_READ_COLUMNS} FROM decisions "  # noqa: S608 - fixed clauses, values bound
            f"WHERE {' AND '.join(clauses)} ORDER BY at DESC, request_id DESC LIMIT ?"
        )
        with self._lock:
            rows = self._guard(lambda: self._conn.execute(sql, (*args, limit)).fetchall())
        return [AuditRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(json.loads(r[7])), *r[8:]) for r in rows]

    # -- change feed -----------------------------------------------------------------

    def change_seq(self) -> int:
        with self._lock:
            return int(
                self._guard(lambda: self._conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0])
            )

    def changes_since(self, seq: int) -> tuple[int, set[str]]:
        with self._lock:
            rows = self._guard(
                lambda: self._conn.execute(
                    "SELECT seq, user_hash FROM changes WHERE seq > ? ORDER BY seq", (seq,)
                ).fetchall()
            )
        return (rows[-1][0] if rows else seq), {h for _, h in rows}

    def prune_changes(self, before: float) -> None:
        with self._lock:
            self._guard(lambda: self._conn.execute("DELETE FROM changes WHERE at < ?", (before,)))

    def schema_version(self) -> int:
        with self._lock:
            row = self._guard(
                lambda: self._conn.execute("SELECT value FROM aupguard_meta WHERE key = 'schema_version'").fetchone()
            )
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            for conn in {
                id(self._conn): self._conn,
                id(self._audit_conn): self._audit_conn,
            }.values():
                conn.close()


@functools.lru_cache(maxsize=64)
def _insert_decisions_sql(rows: int) -> str:
    one = "(" + ", ".join("?" * 10) + ")"
    values = ", ".join([one] * rows)
    return f"INSERT INTO decisions ({_DECISION_COLUMNS}) VALUES {values} ON CONFLICT (request_id) DO NOTHING"  # noqa: S608

"""The embedded store: a SQLite file in WAL mode (``sqlite:///path``) or in memory (``memory://``).

State changes run in ``BEGIN IMMEDIATE`` transactions, so any number of threads and processes
can strike the same user and every strike is counted. Each change also appends to a change
feed that other processes poll, which is how a suspension made elsewhere reaches them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from ...errors import StoreError
from ..sql import AuditOp, Conn, SQLStore, T
from .schema import migrate

__all__ = ["AuditOp", "SQLiteStore"]


class SQLiteStore(SQLStore):
    def __init__(self, path: str | None) -> None:
        self.path = path
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
            raise StoreError(f"cannot open SQLite store {self.path or ':memory:'}: {exc}", transient=True) from None
        return conn

    def _guard(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except sqlite3.Error as exc:
            transient = isinstance(exc, sqlite3.OperationalError)  # locked, disk I/O, ...
            raise StoreError(f"SQLite store {self.path or ':memory:'} failed: {exc}", transient=transient) from exc

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

    def _read(self, fn: Callable[[Conn], T]) -> T:
        with self._lock:
            return self._guard(lambda: fn(self._conn))

    def _write(self, fn: Callable[[Conn], T], *, user_hash: str | None = None) -> T:
        def run() -> T:
            with self._lock, self._transaction(self._conn) as conn:
                return fn(conn)

        return self._guard(run)

    def _write_audit(self, fn: Callable[[Conn], None]) -> None:
        def run() -> None:
            # a file has a connection of its own for the audit writer; memory shares the one
            with self._lock if not self.shared else nullcontext(), self._transaction(self._audit_conn) as conn:
                fn(conn)

        self._guard(run)

    def _after_erase(self) -> None:
        # erased rows out of the write-ahead log too (checkpointed into the overwritten pages)
        self._read(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))

    def close(self) -> None:
        with self._lock:
            for conn in {id(self._conn): self._conn, id(self._audit_conn): self._audit_conn}.values():
                conn.close()

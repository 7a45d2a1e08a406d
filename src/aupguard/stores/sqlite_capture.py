"""The capture tables of the SQLite store: per-user data keys (wrapped) and ciphertexts.

Plaintext never reaches the store: ``aupguard.capture`` encrypts before writing and decrypts
after reading. Deleting a user's data key (and their rows) erases their captured text.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["CaptureKeyRow", "CaptureRow", "CaptureTables"]

CaptureKeyRow = tuple[str, bytes, bytes]  # master key id, nonce, wrapped data key
CaptureRow = tuple[str, str, str, float, bytes, bytes]  # request_id, kind, user_hash, at, nonce, ciphertext


class CaptureTables:
    """Mixed into ``SQLiteStore`` (which provides the connection, lock and error guard)."""

    _lock: threading.RLock
    _conn: sqlite3.Connection
    _guard: Callable[[Callable[[], Any]], Any]

    def capture_key(self, user_hash: str) -> CaptureKeyRow | None:
        with self._lock:
            row = self._guard(
                lambda: self._conn.execute(
                    "SELECT master_kid, nonce, wrapped FROM capture_keys WHERE user_hash = ?", (user_hash,)
                ).fetchone()
            )
        return (row[0], bytes(row[1]), bytes(row[2])) if row else None

    def put_capture_key(self, user_hash: str, key: CaptureKeyRow, at: float) -> CaptureKeyRow:
        """Store ``key`` unless the user has one already (another process won the race);
        return the one stored."""

        def run() -> Any:
            with self._lock:
                self._conn.execute(
                    "INSERT INTO capture_keys (user_hash, master_kid, nonce, wrapped, created_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_hash) DO NOTHING",
                    (user_hash, key[0], key[1], key[2], at),
                )
            return self.capture_key(user_hash)

        return self._guard(run)  # type: ignore[no-any-return]

    def forget_capture_user(self, user_hash: str) -> int:
        """Delete the user's data key and captured rows; return how many rows went."""

        def run() -> int:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.execute("DELETE FROM capture_keys WHERE user_hash = ?", (user_hash,))
                    gone = self._conn.execute("DELETE FROM captures WHERE user_hash = ?", (user_hash,)).rowcount
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                # and out of the write-ahead log too (checkpointed into the overwritten pages)
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                return int(gone)

        return self._guard(run)  # type: ignore[no-any-return]

    def count_captures(self, *, since: float, user_hash: str | None = None) -> int:
        where, args = self._capture_where(since, user_hash)
        with self._lock:
            return int(
                self._guard(lambda: self._conn.execute(f"SELECT count(*) FROM captures {where}", args).fetchone()[0])  # noqa: S608
            )

    def captures(self, *, since: float, user_hash: str | None = None, batch: int = 500) -> Iterator[CaptureRow]:
        """Captured rows, oldest first, read in batches (the lock is not held between them)."""
        where, args = self._capture_where(since, user_hash)
        last: tuple[float, str, str] = (since, "", "")
        while True:
            sql = (
                "SELECT request_id, kind, user_hash, at, nonce, ciphertext FROM captures "  # noqa: S608
                f"{where} AND (at, request_id, kind) > (?, ?, ?) ORDER BY at, request_id, kind LIMIT ?"
            )
            params = (*args, last[0], last[1], last[2], batch)
            rows = self._fetch(sql, params)
            for r in rows:
                yield (r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]))
            if len(rows) < batch:
                return
            last = (rows[-1][3], rows[-1][0], rows[-1][1])

    def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        with self._lock:
            return self._guard(lambda: self._conn.execute(sql, params).fetchall())  # type: ignore[no-any-return]

    def purge_captures(self, *, before: float) -> int:
        with self._lock:
            return int(self._guard(lambda: self._conn.execute("DELETE FROM captures WHERE at < ?", (before,)).rowcount))

    @staticmethod
    def _capture_where(since: float, user_hash: str | None) -> tuple[str, tuple[Any, ...]]:
        if user_hash is None:
            return "WHERE at >= ?", (since,)
        return "WHERE at >= ? AND user_hash = ?", (since, user_hash)

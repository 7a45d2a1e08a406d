"""The capture tables: per-user data keys (wrapped) and ciphertexts.

Plaintext never reaches the store: ``aupguard.capture.recorder`` encrypts before writing and decrypts
after reading. Deleting a user's data key (and their rows) erases their captured text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["CaptureKeyRow", "CaptureRow", "CaptureTables"]

T = TypeVar("T")
CaptureKeyRow = tuple[str, bytes, bytes]  # master key id, nonce, wrapped data key
CaptureRow = tuple[str, str, str, float, bytes, bytes]  # request_id, kind, user_hash, at, nonce, ciphertext


class CaptureTables:
    """Mixed into :class:`~aupguard.stores.sql.SQLStore`, which provides these methods."""

    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _q: Callable[[str], str]

    def _after_erase(self) -> None:
        """Make erased rows unrecoverable from the database's own files (dialect specific)."""

    def capture_key(self, user_hash: str) -> CaptureKeyRow | None:
        sql = self._q("SELECT master_kid, nonce, wrapped FROM capture_keys WHERE user_hash = ?")
        row = self._read(lambda conn: conn.execute(sql, (user_hash,)).fetchone())
        return (row[0], bytes(row[1]), bytes(row[2])) if row else None

    def put_capture_key(self, user_hash: str, key: CaptureKeyRow, at: float) -> CaptureKeyRow:
        """Store ``key`` unless the user has one already (another process won the race);
        return the one stored."""
        sql = self._q(
            "INSERT INTO capture_keys (user_hash, master_kid, nonce, wrapped, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_hash) DO NOTHING"
        )
        self._read(lambda conn: conn.execute(sql, (user_hash, key[0], key[1], key[2], at)))
        stored = self.capture_key(user_hash)
        assert stored is not None
        return stored

    def forget_capture_user(self, user_hash: str) -> int:
        """Delete the user's data key and captured rows; return how many rows went."""

        def run(conn: Any) -> int:
            conn.execute(self._q("DELETE FROM capture_keys WHERE user_hash = ?"), (user_hash,))
            return int(conn.execute(self._q("DELETE FROM captures WHERE user_hash = ?"), (user_hash,)).rowcount)

        gone: int = self._write(run)
        self._after_erase()
        return gone

    def count_captures(self, *, since: float, user_hash: str | None = None) -> int:
        where, args = self._capture_where(since, user_hash)
        sql = self._q(f"SELECT count(*) FROM captures {where}")  # noqa: S608
        return int(self._read(lambda conn: conn.execute(sql, args).fetchone()[0]))

    def captures(self, *, since: float, user_hash: str | None = None, batch: int = 500) -> Iterator[CaptureRow]:
        """Captured rows, oldest first, read in batches (no connection held between them)."""
        where, args = self._capture_where(since, user_hash)
        last: tuple[float, str, str] = (since, "", "")
        sql = self._q(
            "SELECT request_id, kind, user_hash, at, nonce, ciphertext FROM captures "  # noqa: S608
            f"{where} AND (at, request_id, kind) > (?, ?, ?) ORDER BY at, request_id, kind LIMIT ?"
        )
        while True:
            params = (*args, last[0], last[1], last[2], batch)
            rows = self._read(lambda conn: conn.execute(sql, params).fetchall())  # noqa: B023 - called at once
            for r in rows:
                yield (r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]))
            if len(rows) < batch:
                return
            last = (rows[-1][3], rows[-1][0], rows[-1][1])

    def purge_captures(self, *, before: float) -> int:
        sql = self._q("DELETE FROM captures WHERE at < ?")
        return int(self._read(lambda conn: conn.execute(sql, (before,)).rowcount))

    @staticmethod
    def _capture_where(since: float, user_hash: str | None) -> tuple[str, tuple[Any, ...]]:
        if user_hash is None:
            return "WHERE at >= ?", (since,)
        return "WHERE at >= ? AND user_hash = ?", (since, user_hash)

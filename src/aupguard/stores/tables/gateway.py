"""The gateway key table: per-user keys for ``aupguard gateway``, stored as SHA-256 hashes.

A key is shown once, when it is made; the store keeps its id (for listing and revoking),
the hash of the whole key, the user hash it stands for, and when it was made and revoked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..records import AuditEvent

__all__ = ["GatewayKeyRow", "GatewayKeyTables"]

#: key_id, key_hash (hex), user_hash, created_at, revoked_at
GatewayKeyRow = tuple[str, str, str, float, float | None]
_COLUMNS = "key_id, key_hash, user_hash, created_at, revoked_at"


class GatewayKeyTables:
    """Mixed into :class:`~aupguard.stores.sql.SQLStore`, which provides these methods."""

    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _q: Callable[[str], str]
    _insert_events: Callable[[Any, Iterable[AuditEvent]], None]

    def put_gateway_key(self, key_id: str, key_hash: str, user_hash: str, at: float, event: AuditEvent) -> None:
        """Store a new key and its ``event`` (who made it) in one transaction."""
        sql = self._q(
            "INSERT INTO gateway_keys (key_id, key_hash, user_hash, created_at, revoked_at) VALUES (?, ?, ?, ?, NULL)"
        )

        def run(conn: Any) -> None:
            conn.execute(sql, (key_id, key_hash, user_hash, at))
            self._insert_events(conn, [event])

        self._write(run, user_hash=user_hash)

    def gateway_key(self, key_id: str) -> GatewayKeyRow | None:
        sql = self._q(f"SELECT {_COLUMNS} FROM gateway_keys WHERE key_id = ?")  # noqa: S608
        row = self._read(lambda conn: conn.execute(sql, (key_id,)).fetchone())
        return None if row is None else (row[0], row[1], row[2], row[3], row[4])

    def revoke_gateway_key(self, key_id: str, at: float, event: Callable[[str], AuditEvent]) -> bool:
        """Revoke a key and record ``event(user_hash)`` in one transaction; False when there is
        no such key or it was revoked already (nothing recorded)."""
        find = self._q("SELECT user_hash FROM gateway_keys WHERE key_id = ? AND revoked_at IS NULL")
        sql = self._q("UPDATE gateway_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL")

        def run(conn: Any) -> bool:
            row = conn.execute(find, (key_id,)).fetchone()
            if row is None or not conn.execute(sql, (at, key_id)).rowcount:
                return False
            self._insert_events(conn, [event(row[0])])
            return True

        return bool(self._write(run))

    def gateway_keys(self, *, user_hash: str | None = None, limit: int = 1000) -> list[GatewayKeyRow]:
        """Keys, newest first (one user's, or everyone's)."""
        where, args = ("WHERE user_hash = ? ", (user_hash,)) if user_hash is not None else ("", ())
        sql = self._q(f"SELECT {_COLUMNS} FROM gateway_keys {where}ORDER BY created_at DESC, key_id LIMIT ?")  # noqa: S608
        rows = self._read(lambda conn: conn.execute(sql, (*args, limit)).fetchall())
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

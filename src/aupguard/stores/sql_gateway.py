"""The gateway key table: per-user keys for ``aupguard gateway``, stored as SHA-256 hashes.

A key is shown once, when it is made; the store keeps its id (for listing and revoking),
the hash of the whole key, the user hash it stands for, and when it was made and revoked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["GatewayKeyRow", "GatewayKeyTables"]

#: key_id, key_hash (hex), user_hash, created_at, revoked_at
GatewayKeyRow = tuple[str, str, str, float, float | None]
_COLUMNS = "key_id, key_hash, user_hash, created_at, revoked_at"


class GatewayKeyTables:
    """Mixed into :class:`~aupguard.stores.sql.SQLStore`, which provides these methods."""

    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _q: Callable[[str], str]

    def put_gateway_key(self, key_id: str, key_hash: str, user_hash: str, at: float) -> None:
        sql = self._q(
            "INSERT INTO gateway_keys (key_id, key_hash, user_hash, created_at, revoked_at) VALUES (?, ?, ?, ?, NULL)"
        )
        self._write(lambda conn: conn.execute(sql, (key_id, key_hash, user_hash, at)))

    def gateway_key(self, key_id: str) -> GatewayKeyRow | None:
        sql = self._q(f"SELECT {_COLUMNS} FROM gateway_keys WHERE key_id = ?")  # noqa: S608
        row = self._read(lambda conn: conn.execute(sql, (key_id,)).fetchone())
        return None if row is None else (row[0], row[1], row[2], row[3], row[4])

    def revoke_gateway_key(self, key_id: str, at: float) -> bool:
        """Revoke a key; False when there is no such key or it was revoked already."""
        sql = self._q("UPDATE gateway_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL")
        return bool(self._write(lambda conn: conn.execute(sql, (at, key_id)).rowcount))

    def gateway_keys(self, *, user_hash: str | None = None, limit: int = 1000) -> list[GatewayKeyRow]:
        """Keys, newest first (one user's, or everyone's)."""
        where, args = ("WHERE user_hash = ? ", (user_hash,)) if user_hash is not None else ("", ())
        sql = self._q(f"SELECT {_COLUMNS} FROM gateway_keys {where}ORDER BY created_at DESC, key_id LIMIT ?")  # noqa: S608
        rows = self._read(lambda conn: conn.execute(sql, (*args, limit)).fetchall())
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

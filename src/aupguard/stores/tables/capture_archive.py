"""The archive's bookkeeping: which capture rows went to which archive part, and who holds a part.

A run claims a part and its rows in one write transaction (SQLite's ``BEGIN IMMEDIATE``, a
PostgreSQL advisory lock per destination), so two runs, on two hosts, never claim the same
row: each row is archived once. A claimed part is leased to its run; a run that stopped
(exception, kill, lost host) leaves it to be taken over, with the same rows, once the lease
has run out (at once when the run released it on an exception).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["ArchivePart", "ArchivedRow", "CaptureArchiveTables"]

T = TypeVar("T")
#: request_id, kind, user_hash, at, nonce, ciphertext, master key id of the user's data key (None: forgotten)
ArchivedRow = tuple[str, str, str, float, bytes, bytes, str | None]

_PART_COLUMNS = (
    "part_id, destination, day, part, object_key, owner, lease_until, done_at, captures, sha256, size, key_ids"
)
_INSERT_PART = (
    "INSERT INTO capture_archive_parts (part_id, destination, day, part, object_key, owner, lease_until) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class ArchivePart:
    part_id: str
    destination: str
    day: str  # YYYY-MM-DD, UTC
    part: int
    object_key: str
    owner: str
    lease_until: float
    done_at: float | None
    captures: int | None
    sha256: str | None
    size: int | None
    key_ids: str | None  # JSON, written when done


class CaptureArchiveTables:
    """Mixed into :class:`~aupguard.stores.sql.SQLStore`, which provides these methods."""

    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _q: Callable[[str], str]

    def oldest_unarchived_capture(self, *, before: float) -> float | None:
        sql = self._q("SELECT min(at) FROM captures WHERE archive_part IS NULL AND at < ?")
        row = self._read(lambda conn: conn.execute(sql, (before,)).fetchone())
        return None if row is None or row[0] is None else float(row[0])

    def count_unarchived_captures(self, *, before: float) -> int:
        sql = self._q("SELECT count(*) FROM captures WHERE archive_part IS NULL AND at < ?")
        return int(self._read(lambda conn: conn.execute(sql, (before,)).fetchone()[0]))

    def count_unfinished_archive_captures(self, destination: str) -> int:
        """Rows claimed by parts at ``destination`` that are not done yet (to resume)."""
        sql = self._q(
            "SELECT count(*) FROM captures c JOIN capture_archive_parts p ON p.part_id = c.archive_part "
            "WHERE p.destination = ? AND p.done_at IS NULL"
        )
        return int(self._read(lambda conn: conn.execute(sql, (destination,)).fetchone()[0]))

    def claim_archive_part(
        self,
        *,
        destination: str,
        day: str,
        start: float,
        end: float,
        owner: str,
        lease_until: float,
        limit: int,
        object_key: Callable[[int], str],
    ) -> ArchivePart | None:
        """Claim up to ``limit`` unarchived rows captured in ``[start, end)`` as the next part
        of ``day`` at ``destination``; ``None`` when there are none left (another run took them)."""

        def run(conn: Any) -> ArchivePart | None:
            sql = "SELECT coalesce(max(part), -1) FROM capture_archive_parts WHERE destination = ? AND day = ?"
            number = int(conn.execute(self._q(sql), (destination, day)).fetchone()[0]) + 1
            part = ArchivePart(
                f"{destination}|{day}|{number}", destination, day, number, object_key(number), owner, lease_until,
                None, None, None, None, None,
            )  # fmt: skip
            conn.execute(
                self._q(_INSERT_PART), (part.part_id, destination, day, number, part.object_key, owner, lease_until)
            )
            claimed = conn.execute(
                self._q(
                    "UPDATE captures SET archive_part = ? WHERE (request_id, kind, nonce) IN ("
                    "SELECT request_id, kind, nonce FROM captures WHERE archive_part IS NULL AND at >= ? AND at < ? "
                    "ORDER BY at, request_id, kind LIMIT ?)"
                ),
                (part.part_id, start, end, limit),
            ).rowcount
            if claimed == 0:
                conn.execute(self._q("DELETE FROM capture_archive_parts WHERE part_id = ?"), (part.part_id,))
                return None
            return part

        result: ArchivePart | None = self._write(run, user_hash=f"archive:{destination}")
        return result

    def unfinished_archive_parts(self, destination: str) -> list[ArchivePart]:
        """Parts claimed at ``destination`` and not done, oldest first (held or abandoned)."""
        sql = self._q(
            f"SELECT {_PART_COLUMNS} FROM capture_archive_parts "  # noqa: S608
            "WHERE destination = ? AND done_at IS NULL ORDER BY day, part"
        )
        return [ArchivePart(*r) for r in self._read(lambda conn: conn.execute(sql, (destination,)).fetchall())]

    def done_archive_parts(self, destination: str) -> list[ArchivePart]:
        sql = self._q(
            f"SELECT {_PART_COLUMNS} FROM capture_archive_parts "  # noqa: S608
            "WHERE destination = ? AND done_at IS NOT NULL ORDER BY day, part"
        )
        return [ArchivePart(*r) for r in self._read(lambda conn: conn.execute(sql, (destination,)).fetchall())]

    def take_archive_part(self, part_id: str, *, owner: str, now: float, lease_until: float) -> bool:
        """Lease an unfinished part to ``owner`` if it holds it already or its lease ran out."""
        sql = self._q(
            "UPDATE capture_archive_parts SET owner = ?, lease_until = ? "
            "WHERE part_id = ? AND done_at IS NULL AND (owner = ? OR lease_until < ?)"
        )
        return bool(self._write(lambda conn: conn.execute(sql, (owner, lease_until, part_id, owner, now)).rowcount))

    def archive_part_rows(self, part_id: str) -> list[ArchivedRow]:
        """The rows a part claimed (those not forgotten since), in a stable order."""
        sql = self._q(
            "SELECT c.request_id, c.kind, c.user_hash, c.at, c.nonce, c.ciphertext, k.master_kid FROM captures c "
            "LEFT JOIN capture_keys k ON k.user_hash = c.user_hash "
            "WHERE c.archive_part = ? ORDER BY c.at, c.request_id, c.kind, c.nonce"
        )
        rows = self._read(lambda conn: conn.execute(sql, (part_id,)).fetchall())
        return [(r[0], r[1], r[2], float(r[3]), bytes(r[4]), bytes(r[5]), r[6]) for r in rows]

    def finish_archive_part(
        self, part_id: str, *, owner: str, done_at: float, captures: int, sha256: str, size: int, key_ids: str
    ) -> bool:
        sql = self._q(
            "UPDATE capture_archive_parts SET done_at = ?, captures = ?, sha256 = ?, size = ?, key_ids = ? "
            "WHERE part_id = ? AND owner = ? AND done_at IS NULL"
        )
        args = (done_at, captures, sha256, size, key_ids, part_id, owner)
        return bool(self._write(lambda conn: conn.execute(sql, args).rowcount))

    def release_archive_parts(self, owner: str) -> None:
        """End ``owner``'s leases on its unfinished parts, so the next run takes them at once."""
        sql = self._q("UPDATE capture_archive_parts SET lease_until = 0 WHERE owner = ? AND done_at IS NULL")
        self._write(lambda conn: conn.execute(sql, (owner,)))

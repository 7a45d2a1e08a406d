"""The PostgreSQL store (``postgresql://...``), for deployments with many workers and hosts.

psycopg 3 with a connection pool. Changes to one user are serialised by a transaction-level
advisory lock on the user's hash, so concurrent strikes from any number of processes are all
counted. The change feed's sequence numbers are handed out under one more advisory lock
taken just before commit, so they become visible in order and a poller never skips one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ...errors import ConfigurationError, StoreError
from ..sql import Conn, SQLStore, T
from ..uris import redact_uri
from . import schema as postgres_schema

__all__ = ["PostgresStore"]

_FEED_LOCK = 0x61757066  # "aupf": serialises the tail of every changing transaction
_PLACEHOLDER = re.compile(r"\?")


class PostgresStore(SQLStore):
    shared = True
    _greatest = "GREATEST"
    _explain_prefix = "EXPLAIN"

    def __init__(self, uri: str, *, pool_size: int = 4, timeout: float = 5.0, migrate: bool = True) -> None:
        try:
            import psycopg
            import psycopg_pool
        except ImportError:  # pragma: no cover - the extra is part of the dev install
            raise ConfigurationError("store postgresql:// needs psycopg; install aupguard[postgres]") from None
        self._psycopg = psycopg
        self._pool_type = psycopg_pool.ConnectionPool
        self._uri = uri
        self._pool_size = pool_size
        self._timeout = timeout
        self._sql: dict[str, str] = {}
        self._pool = self._open()
        try:
            if migrate:
                self._guard(lambda: self._with_conn(postgres_schema.migrate))
            elif self._guard(lambda: self._with_conn(postgres_schema.pending)):
                raise StoreError("the PostgreSQL store needs migrating: run `aupguard migrate`")
        except BaseException:
            self._pool.close()
            raise

    def _open(self) -> Any:
        return self._pool_type(
            self._uri,
            min_size=1,
            max_size=self._pool_size,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(self._timeout))},
            timeout=self._timeout,
            open=True,
            name="aupguard",
        )

    @property
    def uri(self) -> str:
        return redact_uri(self._uri)

    def after_fork(self) -> None:
        """In a forked child: the pool's threads did not survive and its connections are the
        parent's (closing them would end the parent's sessions): abandon them, open anew."""
        self._pool = self._open()

    def _guard(self, fn: Callable[[], T]) -> T:
        errors = (self._psycopg.Error, _pool_timeout())
        try:
            return fn()
        except errors as exc:
            transient = isinstance(exc, self._psycopg.OperationalError | _pool_timeout())
            raise StoreError(f"PostgreSQL store failed: {exc.__class__.__name__}", transient=transient) from exc

    def _with_conn(self, fn: Callable[[Conn], T]) -> T:
        with self._pool.connection() as conn:
            return fn(conn)

    def _q(self, sql: str) -> str:
        converted = self._sql.get(sql)
        if converted is None:
            converted = _PLACEHOLDER.sub("%s", sql)
            if len(self._sql) < 512:
                self._sql[sql] = converted
        return converted

    def _read(self, fn: Callable[[Conn], T]) -> T:
        return self._guard(lambda: self._with_conn(fn))

    def _write(self, fn: Callable[[Conn], T], *, user_hash: str | None = None) -> T:
        def run(conn: Conn) -> T:
            with conn.transaction():
                if user_hash is not None:
                    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (user_hash,))
                return fn(conn)

        return self._guard(lambda: self._with_conn(run))

    def _write_audit(self, fn: Callable[[Conn], None]) -> None:
        self._write(fn)

    def _executemany(self, conn: Conn, sql: str, rows: list[Any]) -> None:
        if rows:
            with conn.cursor() as cur:
                cur.executemany(self._q(sql), rows)

    def _mark_change(self, conn: Conn, user_hash: str, at: float) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_FEED_LOCK,))
        conn.execute("INSERT INTO changes (user_hash, at) VALUES (%s, %s)", (user_hash, at))

    def close(self) -> None:
        self._pool.close()


def _pool_timeout() -> type[Exception]:
    import psycopg_pool

    return psycopg_pool.PoolTimeout

"""The PostgreSQL schema: the same tables and version numbers as the SQLite one, in
PostgreSQL's types. Migrations run under an advisory lock, so workers starting together
migrate once."""

from __future__ import annotations

from typing import Any

from ...errors import StoreError
from ..sqlite.schema import SCHEMA_VERSION

__all__ = ["migrate", "pending"]

_LOCK = 0x61757067  # "aupg": the advisory lock migrations hold

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE users (
        user_hash TEXT PRIMARY KEY,
        terms_version TEXT, terms_at DOUBLE PRECISION,
        suspended INTEGER NOT NULL DEFAULT 0, suspended_until DOUBLE PRECISION, suspend_reason TEXT,
        suspend_auto INTEGER NOT NULL DEFAULT 0,
        reset_at DOUBLE PRECISION
    );
    CREATE TABLE strikes (
        id TEXT PRIMARY KEY, user_hash TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
        reason TEXT NOT NULL, category TEXT NOT NULL, source TEXT NOT NULL, actor TEXT NOT NULL,
        voided_at DOUBLE PRECISION, void_reason TEXT
    );
    CREATE INDEX strikes_by_user ON strikes (user_hash, at);
    CREATE TABLE events (
        id TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL, user_hash TEXT, action TEXT NOT NULL,
        actor TEXT NOT NULL, reason TEXT NOT NULL, details TEXT NOT NULL
    );
    CREATE INDEX events_by_user ON events (user_hash, at);
    CREATE TABLE decisions (
        request_id TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL, user_hash TEXT, surface TEXT NOT NULL,
        outcome TEXT NOT NULL, status INTEGER NOT NULL, level TEXT, reasons TEXT NOT NULL,
        anthropic_request_id TEXT, message_id TEXT
    );
    CREATE INDEX decisions_by_user ON decisions (user_hash, at);
    CREATE INDEX decisions_by_anthropic_id ON decisions (anthropic_request_id);
    CREATE INDEX decisions_by_message_id ON decisions (message_id);
    CREATE TABLE changes (seq BIGSERIAL PRIMARY KEY, user_hash TEXT NOT NULL, at DOUBLE PRECISION NOT NULL);
    """,
    """
    CREATE TABLE review_items (
        id TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL, user_hash TEXT NOT NULL, request_id TEXT,
        strike_id TEXT, action TEXT NOT NULL, categories TEXT NOT NULL, moderators TEXT NOT NULL,
        explanation TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'open'
    );
    CREATE INDEX review_items_by_status ON review_items (status, at);
    CREATE INDEX review_items_by_user ON review_items (user_hash, at);
    """,
    """
    CREATE TABLE capture_keys (
        user_hash TEXT PRIMARY KEY, master_kid TEXT NOT NULL, nonce BYTEA NOT NULL, wrapped BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE captures (
        request_id TEXT NOT NULL, kind TEXT NOT NULL, user_hash TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
        nonce BYTEA NOT NULL, ciphertext BYTEA NOT NULL, PRIMARY KEY (request_id, kind, nonce)
    );
    CREATE INDEX captures_by_time ON captures (at);
    CREATE INDEX captures_by_user ON captures (user_hash, at);
    """,
    """
    ALTER TABLE decisions ADD COLUMN model TEXT;
    ALTER TABLE decisions ADD COLUMN input_tokens INTEGER;
    ALTER TABLE decisions ADD COLUMN output_tokens INTEGER;
    CREATE TABLE claude_calls (
        request_id TEXT NOT NULL, call_key TEXT NOT NULL, anthropic_request_id TEXT, message_id TEXT,
        model TEXT, input_tokens INTEGER, output_tokens INTEGER, PRIMARY KEY (request_id, call_key)
    );
    CREATE INDEX claude_calls_by_anthropic_id ON claude_calls (anthropic_request_id);
    CREATE INDEX claude_calls_by_message_id ON claude_calls (message_id);
    """,
    """
    ALTER TABLE review_items ADD COLUMN claimed_by TEXT;
    ALTER TABLE review_items ADD COLUMN claim_expires DOUBLE PRECISION;
    ALTER TABLE review_items ADD COLUMN resolved_by TEXT;
    ALTER TABLE review_items ADD COLUMN resolved_at DOUBLE PRECISION;
    CREATE INDEX review_items_queue ON review_items (status, at, id);
    CREATE INDEX decisions_by_time ON decisions (at, user_hash);
    CREATE TABLE reviewers (
        name TEXT PRIMARY KEY, salt BYTEA NOT NULL, password_hash BYTEA NOT NULL, params TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE review_sessions (
        id TEXT PRIMARY KEY, reviewer TEXT, csrf TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX review_sessions_by_expiry ON review_sessions (expires_at);
    CREATE TABLE review_notes (
        id TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL, user_hash TEXT NOT NULL, item_id TEXT, author TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX review_notes_by_user ON review_notes (user_hash, at);
    CREATE INDEX review_notes_by_item ON review_notes (item_id, at);
    CREATE TABLE review_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 6: gateway keys (``aupguard keys``): the SHA-256 of each key, never the key itself
    """
    CREATE TABLE gateway_keys (
        key_id TEXT PRIMARY KEY, key_hash TEXT NOT NULL, user_hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL, revoked_at DOUBLE PRECISION
    );
    CREATE INDEX gateway_keys_by_user ON gateway_keys (user_hash, created_at);
    """,
    # 7: the archive of captures to object storage (``aupguard capture archive``): each capture
    # row names the archive part that claimed it; a part is leased by one run until it is done
    """
    ALTER TABLE captures ADD COLUMN archive_part TEXT;
    CREATE INDEX captures_by_archive_part ON captures (archive_part, at);
    CREATE TABLE capture_archive_parts (
        part_id TEXT PRIMARY KEY, destination TEXT NOT NULL, day TEXT NOT NULL, part INTEGER NOT NULL,
        object_key TEXT NOT NULL, owner TEXT NOT NULL, lease_until DOUBLE PRECISION NOT NULL, done_at DOUBLE PRECISION,
        captures INTEGER, sha256 TEXT, size INTEGER, key_ids TEXT, UNIQUE (destination, day, part)
    );
    CREATE INDEX capture_archive_parts_by_destination ON capture_archive_parts (destination, done_at);
    """,
    # 8: end-user appeals (their text encrypted) and the outbox of webhook notifications
    """
    CREATE TABLE appeals (
        id TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL, user_hash TEXT NOT NULL, strike_id TEXT,
        request_id TEXT, kid TEXT NOT NULL, nonce BYTEA NOT NULL, ciphertext BYTEA NOT NULL,
        status TEXT NOT NULL DEFAULT 'open', decided_at DOUBLE PRECISION, decided_by TEXT, decision_reason TEXT
    );
    CREATE INDEX appeals_by_user ON appeals (user_hash, at);
    CREATE INDEX appeals_by_status ON appeals (status, at, id);
    CREATE UNIQUE INDEX appeals_by_strike ON appeals (strike_id);
    CREATE UNIQUE INDEX appeals_by_request ON appeals (user_hash, request_id);
    CREATE TABLE notify_outbox (
        id TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL, target TEXT NOT NULL, event TEXT NOT NULL,
        data TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at DOUBLE PRECISION NOT NULL,
        lease_until DOUBLE PRECISION, delivery_id TEXT, delivered_at DOUBLE PRECISION, failed_at DOUBLE PRECISION
    );
    CREATE INDEX notify_outbox_due ON notify_outbox (target, delivered_at, failed_at, next_at);
    """,
)
assert len(_MIGRATIONS) == SCHEMA_VERSION, "the PostgreSQL schema must follow every SQLite migration"


def _found(conn: Any) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS aupguard_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = conn.execute("SELECT value FROM aupguard_meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def pending(conn: Any) -> int:
    """How many migrations have not run (0: up to date)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        found = _found(conn)
    return max(0, SCHEMA_VERSION - found)


def migrate(conn: Any) -> int:
    """Bring the database to the current schema version; return the version found before."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        found = _found(conn)
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"store schema version {found} is newer than this aupguard understands ({SCHEMA_VERSION}); "
                "upgrade aupguard"
            )
        for script in _MIGRATIONS[found:]:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(
            "INSERT INTO aupguard_meta (key, value) VALUES ('schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
    return found

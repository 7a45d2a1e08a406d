"""The review tables: migration 5, keyset pages that use an index on 100k items, claims
that two reviewers (threads, or processes on one file) can never both win."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from aupguard.ids import new_id
from aupguard.stores import SQLiteStore
from aupguard.stores.records import AuditEvent
from aupguard.stores.sqlite.schema import SCHEMA_VERSION
from aupguard.stores.tables.review import queue_page_sql

T0 = 1_800_000_000.0


def seed(store: SQLiteStore, n: int, *, statuses: tuple[str, ...] = ("open",), same_time_every: int = 1) -> None:
    rows = [
        (f"item-{i:06d}", T0 + i // same_time_every, f"t1_user{i % 997}", f"req-{i}", None, "block",
         json.dumps(["weapons"]), json.dumps(["rules"]), "prompt", statuses[i % len(statuses)])
        for i in range(n)
    ]  # fmt: skip
    with store._lock:
        store._conn.execute("BEGIN")
        store._conn.executemany(
            "INSERT INTO review_items (id, at, user_hash, request_id, strike_id, action, categories, moderators, "
            "explanation, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        store._conn.execute("COMMIT")


def test_schema_5_adds_claims_accounts_sessions_notes(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    assert SCHEMA_VERSION >= 5 and store.schema_version() == SCHEMA_VERSION
    columns = {r[1] for r in store._conn.execute("PRAGMA table_info(review_items)")}
    assert {"claimed_by", "claim_expires", "resolved_by", "resolved_at"} <= columns
    tables = {r[0] for r in store._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"reviewers", "review_sessions", "review_notes", "review_secrets"} <= tables
    store.close()


def test_queue_pages_of_100k_items_use_the_index_not_a_scan(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "big.db"))
    seed(store, 100_000, statuses=("open", "open", "open", "confirmed"))
    store._conn.execute("ANALYZE")
    for after in (False, True):
        params = ("open", T0 + 50_000, "item-050000", 51) if after else ("open", 51)
        plan = " | ".join(store.explain(queue_page_sql(after=after), params))
        assert "USING INDEX review_items_queue" in plan, plan
        assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan  # no full scan, no sort
    count_plan = " | ".join(store.explain("SELECT count(*) FROM review_items WHERE status = 'open'", ()))
    assert "COVERING INDEX" in count_plan, count_plan
    store.close()


def test_keyset_pages_cover_every_item_once_even_with_equal_times(tmp_path: Path) -> None:
    store = SQLiteStore(None)
    seed(store, 1_000, same_time_every=7)  # runs of 7 items share one timestamp
    seen: list[str] = []
    after = None
    while True:
        page = store.queue_page(status="open", after=after, limit=64)
        seen.extend(e.item.id for e in page)
        if len(page) < 64:
            break
        after = (page[-1].item.at, page[-1].item.id)
    assert len(seen) == 1_000 and len(set(seen)) == 1_000
    assert seen == sorted(seen, reverse=True)  # newest first (ids grow with time here)


def test_two_reviewers_claiming_at_once_never_both_win(tmp_path: Path) -> None:
    path = str(tmp_path / "race.db")
    stores = [SQLiteStore(path), SQLiteStore(path)]  # two connections, as two processes would have
    seed(stores[0], 200)
    ids = [f"item-{i:06d}" for i in range(200)]
    wins: dict[str, list[str]] = {"ana": [], "ben": []}
    start = threading.Barrier(2)

    def work(name: str, store: SQLiteStore) -> None:
        start.wait()
        for item_id in ids:
            if store.claim_review_item(item_id, name, now=T0, expires=T0 + 600):
                wins[name].append(item_id)

    threads = [threading.Thread(target=work, args=(n, s)) for n, s in zip(wins, stores, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not set(wins["ana"]) & set(wins["ben"])  # no item held by both
    assert sorted(wins["ana"] + wins["ben"]) == ids  # and each item held by one
    holders = dict(stores[0]._conn.execute("SELECT id, claimed_by FROM review_items").fetchall())
    assert all(holders[i] == "ana" for i in wins["ana"]) and all(holders[i] == "ben" for i in wins["ben"])
    for s in stores:
        s.close()


def test_a_claim_expires_and_only_its_holder_resolves(tmp_path: Path) -> None:
    store = SQLiteStore(None)
    seed(store, 1)
    item = "item-000000"
    assert store.claim_review_item(item, "ana", now=T0, expires=T0 + 600)
    assert not store.claim_review_item(item, "ben", now=T0 + 599, expires=T0 + 1199)
    event = AuditEvent(new_id(), T0, "t1_user0", "review_confirm", "reviewer:ben", "x")
    assert not store.resolve_review_item(item, "ben", "confirmed", now=T0 + 10, event=event)
    assert store.claim_review_item(item, "ben", now=T0 + 600, expires=T0 + 1200)  # ana's claim ran out
    assert not store.resolve_review_item(item, "ana", "confirmed", now=T0 + 601, event=event)
    assert store.resolve_review_item(item, "ben", "confirmed", now=T0 + 601, event=event)
    entry = store.queue_entry(item)
    assert entry is not None and entry.item.status == "confirmed" and entry.resolved_by == "ben"
    assert entry.claimed_by is None
    assert not store.claim_review_item(item, "ana", now=T0 + 700, expires=T0 + 1300)  # resolved: no claims
    assert [e.action for e in store.events(user_hash="t1_user0")] == ["review_confirm"]


def test_the_console_secret_is_made_once(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    first, second = SQLiteStore(path), SQLiteStore(path)
    assert first.console_secret("k", "aaa") == "aaa"
    assert second.console_secret("k", "bbb") == "aaa"
    first.close()
    second.close()


def test_a_version_4_store_is_migrated_with_its_review_items(tmp_path: Path) -> None:
    import sqlite3

    from aupguard.stores.sqlite.schema import _MIGRATIONS

    path = tmp_path / "v4.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE aupguard_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for script in _MIGRATIONS[:4]:
        conn.executescript(script)
    conn.execute("INSERT INTO aupguard_meta VALUES ('schema_version', '4')")
    conn.execute(
        "INSERT INTO review_items (id, at, user_hash, action, categories, moderators, explanation) "
        "VALUES ('old', 1.0, 't1_u', 'block', '[]', '[]', 'prompt')"
    )
    conn.commit()
    conn.close()
    store = SQLiteStore(str(path))
    assert store.schema_version() == SCHEMA_VERSION
    entry = store.queue_entry("old")
    assert entry is not None and entry.item.status == "open" and entry.claimed_by is None
    assert store.claim_review_item("old", "ana", now=T0, expires=T0 + 600)
    store.close()

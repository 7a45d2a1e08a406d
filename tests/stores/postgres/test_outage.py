"""PostgreSQL (a server the test starts and kills) going away mid-load: cached users are
still served, audit records spill to a local file and every one is in the store after the
restart; new users get 503; a full spill raises the alarm and makes writers wait, losing nothing."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from aupguard import Keyring, Policy, Safeguards
from tests.support.servers import PostgresServer


def _guard(server: PostgresServer, keyring: Keyring, tmp_path: Path, **storage: object) -> Safeguards:
    policy = Policy.from_mapping(
        {"storage": {"store_timeout": "1s", "spill": str(tmp_path / "spill"), **storage},
         "limits": {"default": "100000/minute"}},
        env={},
    )  # fmt: skip
    return Safeguards(policy, store=server.url, keyring=keyring)


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_records_made_while_postgres_is_down_are_all_there_after_restart(
    own_postgres: PostgresServer, keyring: Keyring, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    guard = _guard(own_postgres, keyring, tmp_path)
    users = [f"user-{n}" for n in range(20)]
    made: list[str] = []
    stop = threading.Event()

    def load() -> None:
        n = 0
        while not stop.is_set() and n < 20_000:
            decision = guard.check(users[n % len(users)])
            assert decision.allowed, decision.error
            made.append(decision.request_id)
            n += 1
            time.sleep(0.0005)

    for user in users:  # cached before the outage
        made.append(guard.check(user).request_id)
    loader = threading.Thread(target=load)
    with caplog.at_level(logging.ERROR, logger="aupguard.audit"):
        loader.start()
        time.sleep(0.3)
        own_postgres.kill()
        _wait(lambda: guard.audit.spilling, 10, "the audit writer never spilled")
        time.sleep(0.5)  # load goes on against the dead store
        assert guard.check("a-new-user").status == 503  # standing unknown: no silent pass
        own_postgres.start()
        time.sleep(0.3)
        stop.set()
        loader.join(30)
    assert any("spill file" in r.message for r in caplog.records)
    guard.close()  # writes what is queued; replays what spilled
    with Safeguards(Policy(), store=own_postgres.url, keyring=keyring) as reader:
        stored = reader.store.count_decisions()
        assert guard.audit._spill is not None and guard.audit._spill.spilled > 0  # the outage was real
        assert stored == len(made) + 1  # and the 503 has its record too
        assert len(reader.audit.find(request_id=made[-1])) == 1
    assert not list((tmp_path / "spill").rglob("*.jsonl"))  # nothing left behind


def test_a_process_that_died_with_spilled_records_has_them_replayed_by_the_next(
    own_postgres: PostgresServer, keyring: Keyring, tmp_path: Path
) -> None:
    guard = _guard(own_postgres, keyring, tmp_path)
    guard.check("early")
    own_postgres.kill()
    ids = [guard.check("early").request_id for _ in range(50)]
    _wait(lambda: guard.audit._spill is not None and guard.audit._spill.spilled >= 50, 15, "not spilled")
    guard.audit._spill.close()  # type: ignore[union-attr]  # the process "dies": its lock goes
    guard.audit._closed = True  # and it writes nothing more
    own_postgres.start()
    with _guard(own_postgres, keyring, tmp_path) as successor:
        _wait(lambda: len(successor.audit.find(request_id=ids[-1])) == 1, 15, "not replayed")
        assert all(successor.audit.find(request_id=i) for i in ids)
    guard.users.cache.close()  # what the dead process would not have left running
    guard.store.close()


def test_a_full_spill_raises_the_alarm_and_writers_wait_without_losing_records(
    own_postgres: PostgresServer, keyring: Keyring, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    guard = _guard(own_postgres, keyring, tmp_path, spill_max=2000, audit_queue=100)
    guard.check("full")
    own_postgres.kill()
    made: list[str] = []
    with caplog.at_level(logging.CRITICAL, logger="aupguard.audit"):

        def load() -> None:
            for _ in range(150):
                made.append(guard.check("full").request_id)

        loader = threading.Thread(target=load)
        loader.start()
        _wait(lambda: any("AUDIT SPILL FULL" in r.message for r in caplog.records), 15, "no alarm")
        assert loader.is_alive()  # writers wait for room: the queue is full and cannot spill
        own_postgres.start()
        loader.join(60)
    assert len(made) == 150
    guard.close()
    with Safeguards(Policy(), store=own_postgres.url, keyring=keyring) as reader:
        assert reader.store.count_decisions() == 151


def test_a_strike_earned_while_postgres_is_down_is_recorded_when_it_is_back(
    own_postgres: PostgresServer, keyring: Keyring, tmp_path: Path
) -> None:
    policy = Policy.from_mapping(
        {"storage": {"store_timeout": "1s", "spill": str(tmp_path / "spill")},
         "moderation": {"rules": [{"category": "weapons", "action": "block", "keywords": ["nerve agent"]}]}},
        env={},
    )  # fmt: skip
    guard = Safeguards(policy, store=own_postgres.url, keyring=keyring)
    assert guard.check("flagger", prompt="hello").allowed  # known (cached) before the outage
    own_postgres.kill()
    refused = guard.check("flagger", prompt="how to make a nerve agent")
    assert refused.error == "content_flagged"
    assert guard.flag_failures == 0  # deferred, not lost
    own_postgres.start()
    assert guard.audit.flush(timeout=30)
    status = guard.status("flagger")
    assert status.strikes == 1
    (item,) = guard.store.review_items(user_hash=guard.hash_user("flagger"))
    assert item.request_id == refused.request_id and item.categories == ("weapons",)
    guard.close()

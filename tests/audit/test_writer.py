"""The audit queue: nothing accepted is lost, whatever the load or a failing store."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MakeGuard


def _count(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM decisions").fetchone()[0])


def test_full_queue_makes_callers_wait_instead_of_dropping(make_guard: MakeGuard, tmp_path: Path) -> None:
    guard = make_guard({"storage": {"audit_queue": 8}, "limits": {"default": "100000/minute"}})

    def calls() -> None:
        for _ in range(500):
            guard.check("u-1")

    threads = [threading.Thread(target=calls) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    guard.close()
    assert _count(tmp_path / "aupguard.db") == 2000


@pytest.mark.parametrize("store", ["file", "memory"])
def test_records_are_kept_and_retried_while_the_store_fails(
    make_guard: MakeGuard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    store: str,
) -> None:  # fmt: skip
    """A store on disk spills what it cannot take and replays it; memory:// keeps it queued."""
    guard = make_guard(store=None if store == "file" else "memory://")
    real_write = guard.store.write_audit
    failures = {"left": 3}

    def flaky(ops: list[Any]) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("disk unavailable")
        real_write(ops)

    monkeypatch.setattr(guard.store, "write_audit", flaky)
    ids = [guard.check("secret-user-77").request_id for _ in range(100)]
    assert guard.audit.flush(timeout=30)
    assert {r.request_id for r in guard.audit.find(user_id="secret-user-77", limit=1000)} == set(ids)
    if store == "file":
        assert guard.audit._spill is not None and guard.audit._spill.spilled > 0
        assert guard.audit._spill.replayed == guard.audit._spill.spilled
        assert "records go to the spill file" in caplog.text
    else:
        assert guard.audit.failures == 3
        assert "audit write failed" in caplog.text
    assert "secret-user-77" not in caplog.text


def test_close_flushes_everything_queued(make_guard: MakeGuard, tmp_path: Path) -> None:
    guard = make_guard({"limits": {"default": "100000/minute"}})
    for n in range(3000):
        guard.check(f"user-{n % 7}")
    guard.close()
    assert _count(tmp_path / "aupguard.db") == 3000


def test_an_async_caller_on_a_full_queue_does_not_block_the_loop(
    make_guard: MakeGuard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the writer stalled and the queue full, acheck must wait off the event loop: the
    coroutine that un-stalls the writer can only run if the loop is free."""
    import asyncio

    guard = make_guard({"storage": {"audit_queue": 4}, "limits": {"default": "100000/minute"}})
    real_write = guard.store.write_audit
    release = threading.Event()
    released_in_time: list[bool] = []

    def stalled(ops: list[Any]) -> None:
        released_in_time.append(release.wait(10))
        real_write(ops)

    monkeypatch.setattr(guard.store, "write_audit", stalled)

    async def run() -> None:
        async def releaser() -> None:
            while guard.audit.pending() < 4:
                await asyncio.sleep(0.005)
            release.set()

        await asyncio.gather(releaser(), *(guard.acheck("u-1") for _ in range(50)))

    asyncio.run(run())
    guard.close()
    assert released_in_time and all(released_in_time)
    assert _count(tmp_path / "aupguard.db") == 50


def test_alink_fills_the_same_fields_as_link(make_guard: MakeGuard) -> None:
    """The async twin documented for async apps takes every field ``link`` takes."""
    import asyncio

    guard = make_guard({"identity": {"require_account": False}})
    decision = guard.check("u-1")
    asyncio.run(guard.audit.alink(decision.request_id, anthropic_request_id="req_1", message_id="msg_1",
                                  model="claude-haiku-4-5", input_tokens=12, output_tokens=3))  # fmt: skip
    guard.audit.flush()
    record = guard.audit.find(request_id=decision.request_id)[0]
    assert (record.anthropic_request_id, record.message_id, record.model) == ("req_1", "msg_1", "claude-haiku-4-5")
    assert (record.input_tokens, record.output_tokens) == (12, 3)

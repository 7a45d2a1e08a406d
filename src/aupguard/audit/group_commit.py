"""The audit log's queue and writer thread: operations written off the hot path.

Callers append to a bounded in-memory queue (no SQL, no lock held across I/O); a writer
thread drains it in batches, one transaction per batch (group commit). When the queue is
full callers wait for room instead of dropping a record. A failed batch stays queued and
is retried with backoff, so a store that is down loses nothing that was accepted: with a
spill file (:mod:`aupguard.audit.spill`) it is set aside on disk and replayed when the
store is back.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import StoreError
from ..stores import SQLStore
from ..stores.sql import AuditOp
from .spill import SpillFile

__all__ = ["GroupCommitWriter"]

log = logging.getLogger("aupguard.audit")
_BATCH = 512


class GroupCommitWriter:
    """The bounded queue of :class:`~aupguard.stores.sql.AuditOp` and the thread that writes
    it; :class:`~aupguard.audit.writer.AuditLog` builds the operations on it."""

    def __init__(
        self,
        store: SQLStore,
        *,
        max_queue: int,
        interval: float = 0.05,
        spill: SpillFile | None = None,
    ) -> None:
        self._store = store
        self._spill = spill
        self._spill_backoff = interval
        self.spilling = False  # the store is down and records go to the spill file
        self._replay_asked = False
        #: records a deferred flag (the engine's ``record_flag``)
        self.on_flag: Callable[[Any], None] | None = None
        self._max = max_queue
        self._interval = interval
        self._queue: collections.deque[AuditOp] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._written = 0  # operations written (or set aside) since start
        self.failures = 0  # batches that failed and were retried
        self.rejected = 0  # records the store refused as invalid (validation should make this 0)
        self._thread = self._start()

    def _start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="aupguard-audit", daemon=True)
        thread.start()
        return thread

    def after_fork(self) -> None:
        """In a forked child: the writer thread did not survive the fork. What the parent had
        queued is the parent's to write; the child starts empty with a writer of its own."""
        self._queue.clear()
        self._cond = threading.Condition()
        self._written = 0
        if self._spill is not None:
            self._spill.after_fork()
        if not self._closed:
            self._thread = self._start()

    # -- queueing --------------------------------------------------------------------

    def _put(self, op: AuditOp) -> None:
        if self._closed:
            raise RuntimeError("the audit log is closed")
        queue = self._queue
        if len(queue) >= self._max:
            with self._cond:
                self._cond.notify_all()
                while len(queue) >= self._max and not self._closed:
                    self._cond.wait(0.1)
        self._append(op)

    def _append(self, op: AuditOp) -> None:
        if self._closed:
            raise RuntimeError("the audit log is closed")
        queue = self._queue
        queue.append(op)
        if len(queue) == _BATCH:  # wake the writer early for a full batch (once, not per call)
            with self._cond:
                self._cond.notify_all()

    # -- writing -----------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self._interval
        retry_spill_at = 0.0
        while True:
            with self._cond:
                if not self._queue and not self._closed:
                    self._cond.wait(self._interval)
                if not self._queue and self._closed:
                    self._cond.notify_all()
                    if self._spill is not None and self._spill.pending:  # a last try; else it waits on disk
                        self._replay_spill(0.0)
                    return
            spill = self._spill
            if spill is not None and spill.pending and (self._replay_asked or time.monotonic() >= retry_spill_at):
                retry_spill_at = self._replay_spill(retry_spill_at)
                with self._cond:
                    self._replay_asked = False
                    self._cond.notify_all()
            batch = [self._queue[i] for i in range(min(_BATCH, len(self._queue)))]
            if not batch:
                continue
            try:
                if self._spill is not None and self._spill.pending:  # keep the order: after what waits
                    raise StoreError("earlier records wait in the spill file", transient=True)
                self._store_batch(batch)
            except Exception as exc:
                if not _transient(exc):  # a row the store refuses: write the rest, set it aside
                    self._write_one_by_one(batch)
                elif self._spill is not None and self._spilled(batch):
                    if not self.spilling:
                        log.error("audit store unavailable (%s); records go to the spill file", _why(exc))
                    self.spilling = True
                else:  # the store is down or locked and there is no room to spill: retry later
                    self.failures += 1
                    log.error("audit write failed (%s); %d records kept for retry", _why(exc), len(self._queue))
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    if self._closed and self.failures > 3:
                        log.critical("audit store unavailable at shutdown; %d records not written", len(self._queue))
                        with self._cond:
                            self._queue.clear()
                            self._cond.notify_all()
                        return
                    continue
            backoff = self._interval
            with self._cond:
                for _ in batch:
                    self._queue.popleft()
                self._written += len(batch)  # only this thread writes it
                self._cond.notify_all()

    def _spilled(self, batch: list[AuditOp]) -> bool:
        """Spill ``batch``; False when it could not be (the writer must never die of it)."""
        assert self._spill is not None
        try:
            return self._spill.append(batch)
        except Exception as exc:
            log.critical("AUDIT SPILL FAILED: %s; records are held in memory", exc.__class__.__name__)
            return False

    def _replay_spill(self, retry_at: float) -> float:
        """Write spilled records back; on failure, when to try again (backoff up to 5 s)."""
        assert self._spill is not None
        try:
            self._spill.replay(self._write_replayed)
        except Exception as exc:
            if not self._closed:
                log.debug("spill replay deferred: %s", _why(exc))
            self._spill_backoff = min(self._spill_backoff * 2, 5.0)
            return time.monotonic() + self._spill_backoff
        if self.spilling:
            log.warning("audit store reachable again; spilled records written")
        self.spilling = False
        self._spill_backoff = self._interval
        return 0.0

    def _store_batch(self, batch: list[AuditOp]) -> None:
        """Write the records of a batch in one transaction, then record its deferred flags."""
        flags = [op[1] for op in batch if op[0] == "flag"]
        self._store.write_audit([op for op in batch if op[0] != "flag"] if flags else batch)
        for flag in flags:
            assert self.on_flag is not None
            self.on_flag(flag)

    def _write_replayed(self, batch: list[AuditOp]) -> None:
        try:
            self._store_batch(batch)
        except Exception as exc:
            if _transient(exc):
                raise
            self._write_one_by_one(batch)  # a row the store refuses must not hold up the rest

    def _write_one_by_one(self, batch: list[AuditOp]) -> None:
        for op in batch:
            try:
                self._store_batch([op])
            except Exception as exc:
                if _transient(exc):
                    raise
                self.rejected += 1
                log.error("audit record refused by the store and set aside (%s)", exc.__class__.__name__)

    def pending(self) -> int:
        return len(self._queue)

    def flush(self, timeout: float = 30.0, *, spilled: bool = True) -> bool:
        """Wait until everything queued before this call is written (not for an empty queue:
        under steady load that might never come), spilled records included: they are replayed
        as soon as the store takes them (``spilled=False``: they may stay on disk). False if
        ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        queued = len(self._queue)  # read before the written count: may overshoot, never undershoot
        target = self._written + queued
        with self._cond:
            self._cond.notify_all()
            while self._written < target and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, self._interval))
            while spilled and self._spill is not None and self._spill.pending and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._replay_asked = True  # ask the writer to try the store now
                self._cond.notify_all()
                self._cond.wait(min(left, self._interval))
        return self._written >= target and not (spilled and self._spill is not None and self._spill.pending)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued (or spill it, the store being down: the next process replays
        it), then stop the writer."""
        if self._closed:
            return
        self.flush(timeout, spilled=False)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._spill is not None:
            self._spill.close()


def _why(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, StoreError) else exc.__class__.__name__


def _transient(exc: BaseException) -> bool:
    """A store error worth retrying (locked, disk, connection), not a refused row."""
    return exc.transient if isinstance(exc, StoreError) else isinstance(exc, OSError)

"""The audit log: one record per guarded call, written off the hot path, and the lookups.

:class:`AuditLog` queues the operations (:mod:`aupguard.audit.operations`: records, links,
captures, amends, review items, deferred flags) on a
:class:`~aupguard.audit.group_commit.GroupCommitWriter`, whose thread writes them in group
commits and spills them while the store is down; reads wait for what is queued first.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from ..stores import AuditEvent, AuditRecord, ReviewItem, SQLStore
from .group_commit import GroupCommitWriter
from .operations import AuditRow, amend_op, check_text, link_op, review_op
from .spill import SpillFile

if TYPE_CHECKING:
    from ..identity import UserHasher

# AuditRow and check_text live in .operations; they are imported from here too
__all__ = ["AuditLog", "AuditRow", "check_text"]


class AuditLog(GroupCommitWriter):
    def __init__(
        self,
        store: SQLStore,
        hasher: UserHasher,
        *,
        max_queue: int,
        interval: float = 0.05,
        spill: SpillFile | None = None,
    ) -> None:
        self._hasher = hasher
        super().__init__(store, max_queue=max_queue, interval=interval, spill=spill)

    # -- producing ---------------------------------------------------------------------

    def record(self, row: AuditRow) -> None:
        """Queue a decision record; waits only while the queue is full."""
        self._put(("record", row))

    async def arecord(self, row: AuditRow) -> None:
        if len(self._queue) < self._max:  # room: append without any wait (the bound is soft by a few)
            self._append(("record", row))
        else:  # the queue is full: wait for room off the event loop
            await asyncio.to_thread(self._put, ("record", row))

    def has_room(self) -> bool:
        """Whether an operation queued now is appended without waiting (async callers queue
        inline while this holds, and from a thread once the queue is full)."""
        return len(self._queue) < self._max

    def link(
        self,
        request_id: str,
        *,
        anthropic_request_id: str | None = None,
        message_id: str | None = None,
        model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        """Fill Anthropic's ``request-id`` header, the message id, the model and the token
        usage into a record, as far as they are known (what is not given stays as it is)."""
        self._put(link_op(request_id, anthropic_request_id, message_id, model, input_tokens, output_tokens))

    def capture(self, row: tuple[str, str, str, float, bytes, bytes]) -> None:
        """Queue an encrypted capture row (see :mod:`aupguard.capture.recorder`)."""
        self._put(("capture", row))

    def amend(self, request_id: str, *, outcome: str, status: int, reasons: tuple[str, ...]) -> None:
        """Replace a record's outcome once a verdict arrives after it was written (parallel
        moderation, output moderation)."""
        self._put(amend_op(request_id, outcome, status, reasons))

    async def alink(
        self,
        request_id: str,
        *,
        anthropic_request_id: str | None = None,
        message_id: str | None = None,
        model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        """``link`` for async code (the same fields): waits for room in a full queue off the event loop."""
        link = functools.partial(
            self.link, request_id, anthropic_request_id=anthropic_request_id, message_id=message_id, model=model,
            input_tokens=input_tokens, output_tokens=output_tokens,
        )  # fmt: skip
        await asyncio.to_thread(link)

    def review(self, item: ReviewItem) -> None:
        """Queue a review item that carries no strike (a sampled call); written with the
        records, so the hot path does no SQL for it. Waits only while the queue is full."""
        op = review_op(item)
        if len(self._queue) < self._max:
            self._append(op)
        else:
            self._put(op)

    def defer_flag(self, flag: Any) -> bool:
        """Queue a moderation flag (strike / review item) the store could not take just now;
        the writer records it through ``on_flag`` when the store is back (spilled meanwhile).
        False without an ``on_flag`` recorder (nothing could replay it)."""
        if self.on_flag is None or self._closed:
            return False
        self._put(("flag", flag))
        return True

    # -- reading -----------------------------------------------------------------------

    def find(
        self,
        *,
        request_id: str | None = None,
        user_id: str | None = None,
        anthropic_request_id: str | None = None,
        message_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Records matching every keyword given (at least one). ``user_id`` is the raw id; it
        is hashed with the current key and any previous key still recognised. Waits for
        queued records to be written first, so a record made just before is found."""
        hashes: tuple[str, ...] = ()
        if user_id is not None:
            hashes = (self._hasher.hash(user_id), *self._hasher.previous_hashes(user_id))
        self.flush()
        return self._store.find_decisions(
            request_id=request_id,
            user_hashes=hashes,
            anthropic_request_id=anthropic_request_id,
            message_id=message_id,
            limit=limit,
        )

    async def afind(self, **query: Any) -> list[AuditRecord]:
        """``find`` for async code, run in a worker thread."""
        return await asyncio.to_thread(lambda: self.find(**query))

    def events(self, *, user_id: str | None = None, limit: int = 100) -> list[AuditEvent]:
        """State-change events (strikes, suspensions, ...), newest first."""
        return self._store.events(user_hash=None if user_id is None else self._hasher.hash(user_id), limit=limit)

    def __getstate__(self) -> Any:
        raise TypeError("AuditLog cannot be pickled")

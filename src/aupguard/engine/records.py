"""A decision's audit row, and the refusals recorded outside the pipeline's own steps: one an
adapter decided before the engine could (a body too large or malformed), a store or counter
store that cannot be reached (503), and a call's standing alone (``Safeguards.standing``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import InvalidUserId, StoreError
from ..ids import new_id
from ..outcome import Decision, Refusal
from ..telemetry.checks import traced, traced_async
from .gates import standing_gate
from .steps import reasons_json, refuse, surface_or_default

if TYPE_CHECKING:
    from ..audit.operations import AuditRow
    from ..audit.writer import AuditLog
    from ..identity import UserHasher
    from ..metrics import Metrics
    from ..policy.config import Policy
    from .user_actions import UserActions

__all__ = ["Records"]

log = logging.getLogger("aupguard.engine")


class Records:
    """Turns decisions into audit rows and records the refusals made outside the pipeline."""

    def __init__(
        self,
        policy: Policy,
        hasher: UserHasher,
        audit: AuditLog,
        users: UserActions,
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> None:
        self.policy = policy
        self.hasher = hasher
        self.audit = audit
        self.users = users
        self.metrics = metrics
        self._clock = clock
        self.unavailable = 0  # calls answered 503 because a store could not be reached

    def row(self, decision: Decision, surface: str, now: float) -> AuditRow:
        """The audit row of ``decision`` (and its count in the metrics)."""
        level = decision.level
        outcome = "allowed" if decision.allowed else decision.error or "refused"
        self.metrics.decisions[outcome] += 1
        return (
            decision.request_id,
            now,
            decision.user_hash,
            surface,
            outcome,
            decision.status,
            None if level is None else level.value,
            reasons_json(decision),
            None,
            None,
        )

    def unavailable_decision(self, user_hash: str | None, exc: Exception) -> Decision:
        """The store (loading a user not cached yet) or, with ``fail = "closed"``, the counter
        store cannot be reached: 503, recorded like any other refusal."""
        self.unavailable += 1
        log.warning("answering 503: %s", exc.__class__.__name__)
        message = "Safeguards are temporarily unavailable. Retry shortly."
        return refuse(new_id(), Refusal("safeguards_unavailable", message, 1), user_hash, None)

    @traced("aupguard.check", surface_at=1)
    def refusal(
        self, user_id: str | None, surface: str, error: str, message: str, *, reasons: tuple[str, ...] = ()
    ) -> Decision:
        """Record and return a refusal an adapter decided before the engine could (a body
        too large or malformed): every refused request has its audit record too.
        ``reasons``: text-free reasons for the record."""
        decision, row = self._adapter_refusal(user_id, surface, error, message, reasons)
        self.audit.record(row)
        return decision

    @traced_async("aupguard.check", surface_at=1)
    async def arefusal(
        self, user_id: str | None, surface: str, error: str, message: str, *, reasons: tuple[str, ...] = ()
    ) -> Decision:
        """``refusal`` for async code (waits, without blocking, for room in the audit queue)."""
        decision, row = self._adapter_refusal(user_id, surface, error, message, reasons)
        await self.audit.arecord(row)
        return decision

    def _adapter_refusal(
        self, user_id: str | None, surface: str, error: str, message: str, reasons: tuple[str, ...]
    ) -> tuple[Decision, AuditRow]:
        try:
            user_hash = None if user_id is None else self.hasher.hash(user_id)
        except InvalidUserId:
            user_hash = None
        decision = refuse(new_id(), Refusal(error, message), user_hash, None)
        if reasons:
            decision = decision._replace(reasons=reasons)
        return decision, self.row(decision, surface_or_default(surface), self._clock())

    def standing(self, user_id: str, *, surface: str = "default") -> Decision | None:
        """The refusal a call by ``user_id`` gets for the user's standing alone (terms not
        accepted, suspended), recorded like any refusal; None when the standing allows calls.
        No rate limit is counted and an allowed call leaves no record: for requests that reach
        Anthropic's API without Claude answering (``count_tokens`` through the gateway). The
        standing is read from the store (strikes counted exactly); a store that cannot be read
        gives 503 ``safeguards_unavailable``. ``user_id`` is a raw id or a ``HashedUser``."""
        now = self._clock()
        user_hash = self.hasher.hash(user_id)
        try:
            status = self.users.status_by_hash(user_hash)
        except StoreError as exc:  # 503, recorded, as a guarded call gets
            decision = self.unavailable_decision(user_hash, exc)
        else:
            refusal = standing_gate(status, self.policy, now)
            if refusal is None:
                return None
            decision = refuse(new_id(), refusal, user_hash, status.level)
        self.audit.record(self.row(decision, surface_or_default(surface), now))
        return decision

    async def astanding(self, user_id: str, *, surface: str = "default") -> Decision | None:
        """``standing`` for async code (the store read runs off the loop)."""
        return await asyncio.to_thread(self.standing, user_id, surface=surface)

"""What a change to a user is: the strike a ``strike`` recorded with the standing after it,
and the audit events that describe any change (the action, and the level it moved)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..ids import new_id
from ..ladder import UserState, UserStatus, derive_status
from ..policy.config import LadderPolicy
from ..stores import AuditEvent, StrikeRecord
from ..stores.records import Describe

__all__ = ["StrikeResult", "describe_change"]


@dataclass(frozen=True, slots=True)
class StrikeResult:
    """The strike recorded and the user's standing after it."""

    strike: StrikeRecord
    status: UserStatus


def describe_change(
    ladder: LadderPolicy,
    now: float,
    action: str,
    actor: str,
    reason: str,
    details: Mapping[str, Any],
) -> Describe:
    """Events for one change: the action itself (with the levels before and after) and,
    when the level moved, a ``level_changed`` event that says so on its own line."""

    def describe(before: UserState, after: UserState) -> list[AuditEvent]:
        old = derive_status(before, ladder, now).level
        new = derive_status(after, ladder, now).level
        events = [
            AuditEvent(
                new_id(),
                now,
                after.user_hash,
                action,
                actor,
                reason,
                {**details, "level_before": old.value, "level_after": new.value},
            ),
        ]
        if old is not new:
            events.append(
                AuditEvent(
                    new_id(),
                    now,
                    after.user_hash,
                    "level_changed",
                    actor,
                    f"{action}: {reason}",
                    {"from": old.value, "to": new.value},
                )
            )
        return events

    return describe

"""Plain records of end-user appeals and of the webhook outbox. User ids appear only as hashes."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["APPEAL_STATUSES", "AppealRecord", "OutboxRow"]

APPEAL_STATUSES = ("open", "upheld", "denied")


@dataclass(frozen=True, slots=True)
class AppealRecord:
    """An appeal against a strike or a refused request. The user's text is kept encrypted
    (``kid`` names the key it was sealed under); only the review console and CLI open it."""

    id: str
    at: float
    user_hash: str
    strike_id: str | None
    request_id: str | None
    kid: str
    nonce: bytes
    ciphertext: bytes
    status: str = "open"
    decided_at: float | None = None
    decided_by: str | None = None
    decision_reason: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One notification waiting for (or done with) delivery to one webhook target."""

    id: str
    at: float
    target: str
    event: str
    data: str  # JSON
    attempts: int
    next_at: float
    delivery_id: str | None

"""The outcome of one guarded call, and how adapters render it.

Errors use Anthropic's error shape: ``{"type": "error", "error": {"type": kind, "message": ...}}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .moderation.chain import ModerationResult
    from .policy.config import LimitsPolicy
    from .prompts import ResolvedPrompt

__all__ = ["ERROR_STATUS", "Decision", "ErrorKind", "Level", "Refusal", "error_body", "whole_seconds"]


class Level(StrEnum):
    """A user's rung on the escalation ladder."""

    OK = "ok"
    WARNED = "warned"
    THROTTLED = "throttled"
    SUSPENDED = "suspended"


class ErrorKind(StrEnum):
    """Every error kind aupguard returns (the ``error.type`` of the body), with its HTTP status."""

    status: int

    def __new__(cls, value: str, status: int) -> ErrorKind:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        return member

    INVALID_REQUEST = ("invalid_request_error", 400)
    AUTHENTICATION_REQUIRED = ("authentication_required", 401)
    TERMS_NOT_ACCEPTED = ("terms_not_accepted", 403)
    USER_SUSPENDED = ("user_suspended", 403)
    PROMPT_NOT_ALLOWED = ("prompt_not_allowed", 403)
    CONTENT_FLAGGED = ("content_flagged", 403)
    PERMISSION = ("permission_error", 403)  # the gateway's operator does not allow what was asked
    REQUEST_TIMEOUT = ("request_timeout", 408)  # the request body did not arrive in time
    REQUEST_TOO_LARGE = ("request_too_large", 413)
    RATE_LIMITED = ("rate_limited", 429)
    SAFEGUARDS_UNAVAILABLE = ("safeguards_unavailable", 503)


#: Every error kind aupguard returns, with its HTTP status (``ErrorKind`` as a plain mapping).
ERROR_STATUS: dict[str, int] = {kind.value: kind.status for kind in ErrorKind}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a step refused a call: the error kind (an ``ErrorKind`` value), the message for the
    client, and the seconds after which a retry may succeed."""

    error: str
    message: str
    retry_after: int | None = None


#: The reason prefix of a refusal monitor mode let through (``would_refuse:content_flagged``).
WOULD_REFUSE = "would_refuse:"


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


class Decision(NamedTuple):
    """Allowed or not, and everything an adapter needs to answer the client.

    ``reset_after`` and ``retry_after`` are whole seconds from the moment of the decision.
    (A named tuple: immutable, and several times cheaper to make than a frozen dataclass on
    the hot path.)
    """

    request_id: str
    allowed: bool
    status: int = 200
    error: str | None = None
    message: str = ""
    user_hash: str | None = None
    level: Level | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_after: int | None = None
    retry_after: int | None = None
    warning: str | None = None
    reasons: tuple[str, ...] = ()  # text-free reasons recorded in the audit log
    #: the key an anonymous call was counted under (the keyed hash of its client key); None
    #: for a user's call, which is counted under its user hash
    anonymous_key: str | None = None
    #: monitor mode for this call (``[enforcement] mode``, or the adapter's ``enforcement``):
    #: what follows (screening, output moderation) records and does not refuse
    monitor: bool = False
    prompt: ResolvedPrompt | None = None  # the prompt to send to Claude, when one was screened
    moderation: ModerationResult | None = None
    moderation_pending: bool = False  # parallel mode: screen() must still run before answering

    def with_prompt(
        self, prompt: ResolvedPrompt | None, moderation: ModerationResult | None, pending: bool
    ) -> Decision:
        """This decision with its screened prompt, moderation result and pending flag (the
        last three fields): what ``_replace`` does, several times faster on the hot path."""
        return Decision(*self[:15], prompt, moderation, pending)

    @property
    def body(self) -> Mapping[str, Any] | None:
        """The request body as it was screened, every piece of text cleaned of invisible
        characters: what the app may send on (None when the call had no body)."""
        return None if self.prompt is None else self.prompt.body

    @property
    def would_refuse(self) -> str | None:
        """Monitor mode: the first error kind enforce mode would have refused this call with."""
        for reason in self.reasons:
            if reason.startswith(WOULD_REFUSE):
                return reason[len(WOULD_REFUSE) :]
        return None

    def error_body(self) -> dict[str, Any]:
        """The JSON body for a refused call (Anthropic's error shape)."""
        if self.allowed or self.error is None:
            raise ValueError("an allowed decision has no error body")
        return error_body(self.error, self.message)

    def headers(self, limits: LimitsPolicy | None = None) -> dict[str, str]:
        """``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers-10; with
        the policy's ``[limits]``, its window and ``legacy_headers``: see
        :mod:`aupguard.adapters.ratelimit_headers`), ``Retry-After`` and the warning header."""
        out: dict[str, str] = {}
        if self.limit is not None:
            rate_limit_headers = _RATE_LIMIT_HEADERS[0] if _RATE_LIMIT_HEADERS else _load_rate_limit_headers()
            rate_limit_headers(out, limit=self.limit, remaining=self.remaining or 0, reset_after=self.reset_after or 0,
                               throttled=self.level is Level.THROTTLED, user_hash=self.user_hash or self.anonymous_key,
                               policy=limits)  # fmt: skip
        if self.retry_after is not None:
            out["Retry-After"] = str(self.retry_after)
        if self.warning is not None:
            out["Aupguard-Warning"] = self.warning
        would = self.would_refuse if self.reasons else None
        if would is not None:  # monitor mode: what enforce mode would have refused (the first check's)
            out["Aupguard-Would-Refuse"] = would
        out["Aupguard-Request-Id"] = self.request_id
        return out


# ``with_prompt`` copies by position: the screened fields must stay the last three
assert Decision._fields[15:] == ("prompt", "moderation", "moderation_pending")


_RATE_LIMIT_HEADERS: list[Any] = []


def _load_rate_limit_headers() -> Any:
    """The header builder, imported on first use (outcome.py imports nothing of aupguard's)."""
    from .adapters.ratelimit_headers import rate_limit_headers

    _RATE_LIMIT_HEADERS.append(rate_limit_headers)
    return rate_limit_headers


def whole_seconds(seconds: float) -> int:
    """Seconds rounded up, at least 1: what ``Retry-After`` should say."""
    return max(1, math.ceil(seconds - 1e-9))

"""The ``[review]`` policy table: the human review queue and its console.

``sla`` is how long an item may wait; ``appeals`` and ``appeal_max_chars`` bound what end
users file through ``Safeguards.appeal``. ``sample_rate`` sends that share of allowed,
unflagged calls (with a prompt) to the queue for quality checks; the rest configures the
console's claims, sessions, cookies and login throttle (``trusted_proxy_header``: which
header, if any, names the client behind a proxy).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..durations import DURATION_HELP, parse_duration
from .values import boolean, count, rate, text

__all__ = ["REVIEW_FIELDS", "ReviewPolicy"]


@dataclass(frozen=True, slots=True)
class ReviewPolicy:
    sample_rate: float = 0.0  # share of allowed calls queued for a quality check, 0.0 to 1.0
    claim_for: float = 600.0  # a reviewer's claim on an item expires after this long
    session_for: float = 8 * 3600.0  # a console login lasts this long
    secure_cookie: bool = True  # the session cookie is sent over HTTPS only
    secret_env: str = "AUPGUARD_CONSOLE_SECRET"  # noqa: S105 - a variable name; signs session cookies; generated and stored if unset
    login_attempts: str = "5/minute"  # password tries per reviewer name and client address (6x that per address)
    trusted_proxy_header: str | None = None  # where the client address comes from behind a proxy; unset: the peer
    sla: float = 24 * 3600.0  # a review item open longer than this is late (badge, queue_sla_breached webhook)
    appeals: str = "3/day"  # appeals one end user may file (a limits rate)
    appeal_max_chars: int = 2000  # longest appeal text, after cleaning


def _rate(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= float(value) <= 1.0:
        return float(value)
    raise ValueError


_HEADER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def _header_name(value: object) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, str) and _HEADER.fullmatch(value):
        return value.lower()
    raise ValueError


REVIEW_FIELDS: dict[str, tuple[Callable[[object], Any], str]] = {
    "sample_rate": (_rate, "a number from 0.0 to 1.0 (share of allowed calls sampled for review)"),
    "claim_for": (parse_duration, DURATION_HELP),
    "session_for": (parse_duration, DURATION_HELP),
    "secure_cookie": (boolean, "true or false"),
    "secret_env": (text, "the name of an environment variable holding the console's signing secret"),
    "login_attempts": (rate, "a rate such as '5/minute' (one rate, amount >= 1)"),
    "trusted_proxy_header": (
        _header_name,
        "the name of a header your reverse proxy sets to the client address, e.g. 'X-Forwarded-For', or empty",
    ),
    "sla": (parse_duration, DURATION_HELP),
    "appeals": (rate, "a rate such as '3/day' (appeals per end user; one rate, amount >= 1)"),
    "appeal_max_chars": (count(100_000), "an integer from 1 to 100000 (characters of an appeal's text)"),
}

"""Who is calling, as every adapter decides it apart from the framework's own user: a
trusted ``user_header`` read strictly, and the 500 when the app's ``identify`` fails.

A ``user_header`` is trusted only when configured (behind the operator's own gateway). Its
value is refused (400) rather than guessed at when it cannot be one id: not UTF-8, sent
twice, or holding a comma (what a proxy that appends its own value, or a WSGI server
joining a repeated header, makes of two values: the first may be the client's).
"""

from __future__ import annotations

import logging

from ..ids import new_id
from ..outcome import Decision

__all__ = ["BadIdentity", "identify_failed", "user_from_header"]


class BadIdentity(Exception):
    """The request carries a user id that cannot be one; the message is safe to show."""


def user_from_header(value: str | bytes) -> str | None:
    """The user id a trusted header carries (None when empty), or :class:`BadIdentity`.
    Bytes are the raw header (ASGI) and must be UTF-8; a str is already decoded (WSGI)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadIdentity("the user id header is not valid UTF-8") from None
    if "," in value:
        raise BadIdentity("the user id header holds more than one value (sent twice, or a comma)")
    return value or None


def identify_failed(log: logging.Logger, surface: str, exc: BaseException) -> Decision:
    """The app's ``identify`` raised: its bug, logged by class only (its message may hold
    the raw id or a secret), answered 500 ``api_error`` in Anthropic's shape."""
    log.error("identify failed on %s: %s", surface, exc.__class__.__name__)
    return Decision(new_id(), False, 500, "api_error", "The service failed to identify the caller.")

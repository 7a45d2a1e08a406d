"""Parsers for policy values, shared by every table: each returns the value or raises
``ValueError`` (the loader turns that into a ``PolicyError`` naming the key)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import limits

from ..errors import PolicyError

__all__ = [
    "Refused",
    "allowed_and_why",
    "any_text",
    "boolean",
    "choice",
    "count",
    "fail",
    "http_url",
    "optional_text",
    "rate",
    "text",
]


class Refused(ValueError):
    """A value refused for a reason the operator needs (which shape of a regex, ...): the
    loader adds the reason to what is allowed. It must not quote a secret."""


def allowed_and_why(allowed: str, exc: ValueError) -> str:
    """What a ``PolicyError`` says is allowed: ``allowed``, with the reason of a :class:`Refused`."""
    return f"{allowed} (refused: {exc})" if isinstance(exc, Refused) else allowed


def fail() -> object:
    raise ValueError


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError


def text(value: object) -> str:
    """A non-blank string."""
    if isinstance(value, str) and value.strip():
        return value
    raise ValueError


def any_text(value: object) -> str:
    """Any string, empty included."""
    if isinstance(value, str):
        return value
    raise ValueError


def optional_text(value: object) -> str | None:
    return None if value in (None, "") else text(value)


def count(maximum: int) -> Callable[[object], int]:
    """An integer from 1 to ``maximum`` (never a bool)."""

    def parse(value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= maximum:
            return value
        raise ValueError

    return parse


def choice(options: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if value in options:
            return str(value)
        raise ValueError

    return parse


def rate(value: object) -> str:
    """One ``limits`` rate such as ``"20/minute"``, with an amount of at least 1."""
    if not isinstance(value, str):
        raise ValueError
    items = limits.parse_many(value)  # raises ValueError on a malformed rate
    if len(items) != 1 or items[0].amount < 1:
        raise ValueError
    return value


def http_url(key: str, allowed: str) -> Callable[[object], str]:
    """An http(s) URL with a host and no query or fragment, returned without a trailing ``/``.

    Credentials in it (``https://user:secret@host``) are refused: they would be sent as-is
    (the gateway put them in its Host header) and sit in a file that is not a secret store.
    The error shows the URL with its credentials masked, so the secret is never printed."""

    def parse(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            raise ValueError from None
        if "@" in parts.netloc:
            host = parts.netloc.rpartition("@")[2]
            masked = parts._replace(netloc=f"***@{host}").geturl()
            raise PolicyError(key, masked, allowed + ", without credentials (user:password@) in it")
        if parts.scheme in ("http", "https") and parts.hostname and not parts.query and not parts.fragment:
            return value.rstrip("/")
        raise ValueError

    return parse

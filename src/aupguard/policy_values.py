"""Parsers for policy values, shared by every table: each returns the value or raises
``ValueError`` (the loader turns that into a ``PolicyError`` naming the key)."""

from __future__ import annotations

from collections.abc import Callable

import limits

__all__ = ["any_text", "boolean", "choice", "count", "fail", "optional_text", "rate", "text"]


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

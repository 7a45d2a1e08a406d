"""A guarded request's body as every adapter reads it: which methods carry a prompt, whether
a body is declared, the cap (a 413 past it), forms refused, the ASGI read loop.

Everything the client sends here is hostile: a declared length is believed only when it is
plain decimal digits (``+5``, ``1_000`` or `` 5`` are not lengths, and never raise), the
read counts the bytes that really arrive whatever was declared, and a body that the app's
framework would read as a form is refused rather than screened as something else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ..engine.pieces import BadBody
from ..errors import AupguardError

__all__ = [
    "BODY_METHODS",
    "FORM_TYPES",
    "TooLarge",
    "declared_length",
    "declares_body",
    "is_preflight",
    "read_body",
    "refuse_form",
    "too_large_message",
]

Message = MutableMapping[str, Any]

#: Methods whose body is read for a prompt even when none is declared (any other method's
#: body is read too when one is declared: HEAD goes to GET handlers, HTTP/2 declares none).
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: Media types a framework decodes as a form (``request.form``): never screened as JSON.
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_LENGTH_DIGITS = 19  # more digits than any real body (and int() of a huge string is slow)


class TooLarge(AupguardError):
    """The body is (or declares itself) larger than the adapter's cap."""


def too_large_message(limit: int) -> str:
    """The message of the 413 ``request_too_large`` refusal."""
    return f"The request body is larger than {limit} bytes."


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The ``content-length`` an ASGI request's headers declare, or None (absent, or not
    plain digits). The first header counts; the read checks what really arrives."""
    for name, value in headers:
        if name == b"content-length":
            return _length(bytes(value))
    return None


def _length(value: bytes) -> int | None:
    value = value.strip(b" \t")
    if not value or len(value) > _LENGTH_DIGITS or not value.isdigit():  # bytes.isdigit is ASCII only
        return None
    return int(value)


def declares_body(content_length: str | bytes | None, chunked: bool) -> bool:
    """Whether a request says it carries a body: a length other than zero (anything that is
    not a clean ``0`` counts, so a bad length cannot hide a body), or chunked encoding."""
    if chunked:
        return True
    if content_length is None:
        return False
    raw = content_length.encode("latin-1", "replace") if isinstance(content_length, str) else content_length
    return raw.strip(b" \t") not in (b"0", b"")


def is_preflight(method: str, asks_cors_method: bool, body_declared: bool) -> bool:
    """A CORS preflight, which passes unguarded: ``OPTIONS`` with ``Access-Control-Request-Method``
    and no body declared (another ``OPTIONS`` is guarded, its body read like any other)."""
    return method == "OPTIONS" and asks_cors_method and not body_declared


def refuse_form(media_type: str | bytes | None) -> None:
    """:class:`BadBody` for a form: a body valid both as JSON and as a form would otherwise
    hand the app decoded fields that were never screened. ``media_type`` may carry parameters."""
    if media_type is None:
        return
    text = media_type.decode("latin-1") if isinstance(media_type, bytes) else media_type
    if text.split(";", 1)[0].strip().lower() in FORM_TYPES:
        raise BadBody("a guarded request's body must be JSON (Content-Type: application/json), not a form")


async def read_body(receive: Callable[[], Awaitable[Message]], limit: int, declared: int | None) -> tuple[bytes, bool]:
    """The whole body from an ASGI ``receive``, or :class:`TooLarge` past ``limit`` bytes
    (at once when ``declared`` says so). Also returns whether the client disconnected while
    sending it."""
    if declared is not None and declared > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False

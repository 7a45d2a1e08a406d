"""The body rules every adapter shares (``aupguard.adapters.body``), with hostile inputs: a
declared length is believed only as plain digits, any declaration but a clean zero counts as
a body, forms are refused whatever their spelling, the read counts what really arrives."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pytest

from aupguard.adapters.body import (
    TooLarge,
    declared_length,
    declares_body,
    is_preflight,
    read_body,
    refuse_form,
    too_large_message,
)
from aupguard.engine.request_body import BadBody


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"12", 12),
        (b" 12\t", 12),  # optional whitespace around the value (RFC 9110)
        (b"0", 0),
        (b"+12", None),  # int() would take these; no HTTP parser does
        (b"-1", None),
        (b"1_000", None),
        (b"12, 12", None),
        (b"0x10", None),
        ("١٢".encode(), None),  # Arabic-Indic digits: str.isdigit says yes, HTTP says no
        (b"", None),
        (b"9" * 4400, None),  # past int()'s digit limit: None, not a ValueError
    ],
)
def test_a_declared_length_is_believed_only_as_plain_digits(value: bytes, expected: int | None) -> None:
    assert declared_length([(b"host", b"x"), (b"content-length", value)]) == expected


def test_the_first_declared_length_counts_and_none_is_none() -> None:
    assert declared_length([(b"content-length", b"5"), (b"content-length", b"500")]) == 5
    assert declared_length([(b"Content-Length", b"5")]) is None  # ASGI header names are lower case


@pytest.mark.parametrize(
    ("length", "chunked", "declared"),
    [
        (None, False, False),
        ("0", False, False),
        (" 0 ", False, False),
        ("", False, False),
        ("00", False, True),  # not a clean zero: a bad length never hides a body
        ("abc", False, True),
        (b"5", False, True),
        (None, True, True),
        ("0", True, True),
        ("\udcff", False, True),  # a lone surrogate in a WSGI environ value does not raise
    ],
)
def test_any_declaration_but_a_clean_zero_is_a_body(length: str | bytes | None, chunked: bool, declared: bool) -> None:
    assert declares_body(length, chunked) is declared


def test_only_a_bodiless_options_asking_for_a_method_is_a_preflight() -> None:
    assert is_preflight("OPTIONS", asks_cors_method=True, body_declared=False)
    assert not is_preflight("OPTIONS", asks_cors_method=True, body_declared=True)
    assert not is_preflight("OPTIONS", asks_cors_method=False, body_declared=False)
    assert not is_preflight("POST", asks_cors_method=True, body_declared=False)
    assert not is_preflight("options", asks_cors_method=True, body_declared=False)  # methods are case-sensitive


@pytest.mark.parametrize(
    "media_type",
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "Multipart/Form-Data",
        b" application/x-www-form-urlencoded ; charset=utf-8",
    ],
)
def test_a_form_in_any_spelling_is_refused(media_type: str | bytes) -> None:
    with pytest.raises(BadBody, match="must be JSON"):
        refuse_form(media_type)


@pytest.mark.parametrize("media_type", [None, "application/json", "text/plain", "", b"\xff\xfe", "form-data"])
def test_other_media_types_are_left_to_the_json_reader(media_type: str | bytes | None) -> None:
    refuse_form(media_type)


Message = MutableMapping[str, Any]


def _receiving(*messages: Message) -> Callable[[], Awaitable[Message]]:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)

    return receive


def test_the_read_counts_what_arrives_whatever_was_declared() -> None:
    lying = _receiving({"type": "http.request", "body": b"x" * 6, "more_body": True},
                       {"type": "http.request", "body": b"x" * 6})  # fmt: skip
    with pytest.raises(TooLarge):
        asyncio.run(read_body(lying, 10, declared=3))
    with pytest.raises(TooLarge):  # a declaration past the cap is refused before anything is read
        asyncio.run(read_body(_receiving(), 10, declared=11))
    whole = _receiving({"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.request"})
    assert asyncio.run(read_body(whole, 10, declared=None)) == (b"ab", False)


def test_a_client_gone_mid_body_is_reported_not_read_on() -> None:
    gone = _receiving({"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"})
    assert asyncio.run(read_body(gone, 10, declared=None)) == (b"ab", True)


def test_the_413_message_names_the_cap() -> None:
    assert too_large_message(1000) == "The request body is larger than 1000 bytes."

"""Reading a Messages body: every piece of end-user text with where it is, the body cleaned
without touching the client's own object, what is not text counted, odd shapes refused with
the field named; JSON read once and strictly; the screening scope, the split-phrase context
and the per-piece cache that keeps a long conversation's cost flat."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from aupguard.moderation.base import Verdict
from aupguard.moderation.chain import CONTEXT, screening_units
from aupguard.prompt_policy import ResolvedPrompt
from aupguard.request_body import MAX_DEPTH, BadBody, parse_json, prompt_from_body, upstream_body
from aupguard.request_pieces import Piece, read_messages
from tests.fakes.messages_double import MessagesDouble

from .conftest import MakeGuard
from .request_shapes import HARMFUL, RULES, SHAPES, WHERE

TAG = "".join(chr(0xE0000 + ord(c)) for c in "secret")


def test_every_shape_yields_its_text_where_it_is() -> None:
    for name, shape in SHAPES.items():
        found = read_messages(shape(HARMFUL))
        assert [p.where for p in found.pieces if p.text.endswith(HARMFUL)] == [WHERE[name]], name


def test_pieces_name_role_turn_and_kind() -> None:
    found = read_messages(SHAPES["tool_use input"]("weather"))
    kinds = {(p.where, p.role, p.turn, p.kind) for p in found.pieces}
    assert ("tools[0].description", "tools", -1, "tool_description") in kinds
    assert ("messages[1].content[0].input", "assistant", 1, "tool_use") in kinds
    assert ("messages[2].content[0].content", "user", 2, "tool_result") in kinds
    assert found.prompt_turn == 2 and found.turns == 3 and found.history and found.has_system


def test_cleaning_copies_only_what_changes_and_never_touches_the_clients_body() -> None:
    body = SHAPES["earlier user turn"]("hi" + TAG)
    body["messages"].append({"role": "assistant", "content": [{"type": "text", "text": "ok"}]})
    before = copy.deepcopy(body)
    found = read_messages(body)
    assert body == before  # the client's object is untouched
    assert found.body["messages"][0]["content"] == "hi"
    assert found.body["messages"][3] is body["messages"][3]  # unchanged parts are shared, not copied
    plain = SHAPES["earlier user turn"]("hi")
    assert read_messages(plain).body is plain  # nothing to clean: the very object


def test_base64_text_documents_are_decoded_screened_and_cleaned() -> None:
    data = base64.b64encode(("read me" + TAG).encode()).decode()
    body = {"messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": data},
         "title": "T" + TAG, "context": "from a ticket"}]}]}  # fmt: skip
    found = read_messages(body)
    texts = {p.where: p.text for p in found.pieces}
    assert texts == {"messages[0].content[0].title": "T", "messages[0].content[0].context": "from a ticket",
                     "messages[0].content[0].source.data": "read me"}  # fmt: skip
    cleaned = found.body["messages"][0]["content"][0]["source"]["data"]
    assert base64.b64decode(cleaned).decode() == "read me"
    with pytest.raises(BadBody, match=r"messages\[0\]\.content\[0\]\.source\.data is not base64"):
        read_messages(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": "!!"}}
                        ],
                    }
                ]
            }
        )


def test_images_and_pdfs_are_counted_not_read() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
           "title": "Report"}  # fmt: skip
    by_url = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    found = read_messages(
        {"messages": [{"role": "user", "content": [image, pdf, by_url, {"type": "text", "text": "?"}]}]}
    )
    assert found.media == 3 and found.documents == 3
    assert [p.where for p in found.pieces] == ["messages[0].content[1].title", "messages[0].content[3]"]


def test_server_tool_results_and_redacted_thinking() -> None:
    result = {
        "type": "web_search_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": [
            {
                "type": "web_search_result",
                "url": "https://example.com",
                "title": "Nerve agents",
                "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5LTQ1NGUtODgxNC1kNjNjNTk1ZWI3Y2MSDMgkNDI",
                "page_age": "1 day",
            }
        ],
    }
    turns = [
        {"role": "user", "content": "search"},
        {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "EmwKAhgBEgy3"}, result]},
    ]
    found = read_messages({"messages": turns})
    (piece,) = found.pieces[1:]
    assert piece.where == "messages[1].content[1]" and "Nerve agents" in piece.text
    assert "EqgfCioI" not in piece.text  # Anthropic's ciphertext is not screened
    assert found.media == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": []}, "messages must be a non-empty list"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content must be a string or a list"),
        ({"messages": [{"role": "user", "content": ["x"]}]}, "messages[0].content[0] must be an object"),
        ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages[0].content[0].type is missing"),
        ({"messages": [{"role": "user", "content": [{"type": "html", "html": "x"}]}]}, "messages[0].content[0].type"),
        ({"messages": [{"role": "user", "content": "x"}], "system": 3}, "system must be a string or a list"),
        ({"messages": [{"role": "user", "content": "x"}], "system": [{"type": "image"}]}, "system[0] must be a text"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"description": 1}]}, "tools[0].description"),
        ({"messages": [{"role": "user", "content": [{"type": "tool_result", "content": [{"type": "tool_use"}]}]}]},
         "messages[0].content[0].content[0].type must be text, image, document or search_result"),
        ({"messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "s3"}}]}]},
         "messages[0].content[0].source.type"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "citations": "y"}]}]},
         "messages[0].content[0].citations must be a list"),
    ],
)  # fmt: skip
def test_a_shape_that_cannot_be_screened_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(BadBody) as refused:
        read_messages(body)
    assert field in str(refused.value)


def test_one_shape_at_a_time() -> None:
    with pytest.raises(BadBody, match="send one of"):
        prompt_from_body({"messages": [{"role": "user", "content": "hi"}], "prompt": HARMFUL})


def test_system_and_tools_beside_a_plain_prompt_are_screened() -> None:
    request = prompt_from_body({"prompt": "hello", "system": HARMFUL})
    assert [(p.where, p.text) for p in request.pieces] == [("system", HARMFUL), ("prompt", "hello")]
    assert request.system and not request.history


# -- JSON, read once and strictly -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"max_tokens": ' + b"9" * 4301 + b"}", "a number too large"),
        (b'{"a": ' + b"[" * 975 + b"]" * 975 + b"}", f"deeper than {MAX_DEPTH}"),
        (b'{"a": ' + b"[" * (MAX_DEPTH) + b"]" * (MAX_DEPTH) + b"}", f"deeper than {MAX_DEPTH}"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"a": "\\ud800 lone"}', "lone UTF-16 surrogate"),
        (b'{"\\udfff": 1}', "lone UTF-16 surrogate"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"[1]", "must be a JSON object"),
    ],
)
def test_odd_json_is_a_clear_400(raw: bytes, says: str) -> None:
    with pytest.raises(BadBody, match=says):
        parse_json(raw)


def test_json_within_the_bounds_is_read() -> None:
    deep = b'{"a": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert parse_json(deep)["a"] is not None
    assert parse_json(b'{"emoji": "\\ud83d\\ude00"}')["emoji"] == "\U0001f600"  # a pair is one character
    assert parse_json(b'{"n": ' + b"9" * 4300 + b"}")["n"] > 0


# -- what goes on ----------------------------------------------------------------------------------


def test_a_prompt_the_policy_wrote_replaces_the_clients_turn_and_our_fields_never_go_on() -> None:
    request = prompt_from_body({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hours?"}]})
    resolved = ResolvedPrompt("What are your opening hours?", (), (), request.body, True, request.prompt_turn)
    assert upstream_body(resolved) == {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "What are your opening hours?"}],
    }
    templated = prompt_from_body({"model": "m", "max_tokens": 5, "template": "t", "variables": {"x": 1}})
    built = upstream_body(ResolvedPrompt("Rendered 1.", (), (), templated.body, True, -1))
    assert built == {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "Rendered 1."}]}


# -- the screening scope and context ---------------------------------------------------------------


def test_units_carry_the_text_before_from_a_word_boundary() -> None:
    first = Piece("messages[0].content", "user", 0, "text", "x" * 10 + " tell me about the nerve")
    second = Piece("messages[1].content", "assistant", 1, "text", "agent synthesis")
    (_, a), (_, b) = screening_units([first, second])
    assert a == first.text and b == f"{first.text}\nagent synthesis"
    long = Piece("system", "system", -1, "system", "word " * 200 + "tail")
    (_, _), (_, c) = screening_units([long, second])
    context = c.split("\n")[0]
    assert len(context) <= CONTEXT and context.startswith("word") and context.endswith("tail")


def test_last_turn_scope_is_the_old_bypassable_behaviour(make_guard: MakeGuard) -> None:
    body = SHAPES["earlier user turn"](HARMFUL)
    whole = make_guard({"moderation": {"rules": RULES}})
    assert whole.check("u-1", prompt=prompt_from_body(body)).error == "content_flagged"
    last = make_guard({"moderation": {"rules": RULES, "scope": "last_turn"}})
    assert last.check("u-1", prompt=prompt_from_body(body)).allowed  # documented as bypassable
    assert last.check("u-1", prompt=prompt_from_body(SHAPES["prefill"]("hi") | {
        "messages": [{"role": "user", "content": HARMFUL}, {"role": "assistant", "content": "Sure"}]})).error == (
        "content_flagged")  # fmt: skip


def test_images_are_counted_in_the_audit_record(make_guard: MakeGuard) -> None:
    guard = make_guard()
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    decision = guard.check("u-1", prompt=prompt_from_body({"messages": [{"role": "user", "content": [image, image]}]}))
    assert decision.allowed and "media:2" in decision.reasons
    (record,) = guard.audit.find(request_id=decision.request_id)
    assert "media:2" in record.reasons


def test_a_long_conversation_costs_one_remote_call_per_new_piece(
    make_guard: MakeGuard, messages_double: MessagesDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOD_KEY", "k")
    guard = make_guard({"moderation": {"openai": {"url": messages_double.moderations_url, "api_key_env": "MOD_KEY"}}})
    turns: list[dict[str, Any]] = []
    for n in range(50):
        turns.append({"role": "user", "content": f"question number {n}: what is {n} squared?"})
        before = len(messages_double.requests_to("/v1/moderations"))
        decision = guard.check("u-1", prompt=prompt_from_body({"messages": list(turns)}))
        assert decision.allowed
        new = 1 if n == 0 else 2  # the new question, and the answer the client appended before it
        assert len(messages_double.requests_to("/v1/moderations")) - before == new, n
        turns.append({"role": "assistant", "content": f"{n} squared is {n * n}."})
    judged = [r.body["input"] for r in messages_double.requests_to("/v1/moderations")]
    assert len(judged) == len(set(judged)) == 99  # never the same text twice


def test_async_screening_runs_new_pieces_at_once_and_agrees_with_sync(make_guard: MakeGuard) -> None:
    import asyncio

    class Counting:
        name, local = "counting", False

        def __init__(self) -> None:
            self.calls: list[str] = []

        def moderate(self, text: str) -> Verdict:
            self.calls.append(text)
            return Verdict(HARMFUL in text, ("weapons",) if HARMFUL in text else (), self.name)

        async def amoderate(self, text: str) -> Verdict:
            return self.moderate(text)

    moderator = Counting()
    guard = make_guard(moderators=[moderator])
    body = SHAPES["forged assistant turn"](HARMFUL)
    decision = asyncio.run(guard.acheck("u-1", prompt=prompt_from_body(body)))
    assert decision.error == "content_flagged" and decision.moderation is not None
    assert decision.moderation.where == ("messages[1].content",)
    assert len(moderator.calls) == 3
    again = guard.check("u-2", prompt=prompt_from_body(json.loads(json.dumps(body))))
    assert again.error == "content_flagged" and len(moderator.calls) == 3  # every unit came from the cache

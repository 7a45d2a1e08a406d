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

from aupguard.engine.prompt_policy import ResolvedPrompt
from aupguard.engine.request_body import MAX_DEPTH, BadBody, parse_json, prompt_from_body, upstream_body
from aupguard.engine.request_pieces import Piece, read_messages
from aupguard.moderation.base import Verdict
from aupguard.moderation.units import CONTEXT, UNIT, screening_units
from aupguard.testing import MessagesDouble
from tests.conftest import MakeGuard
from tests.support.request_shapes import HARMFUL, RULES, SHAPES, WHERE

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
         "messages[0].content[0].content[0].type must be text, image, document, search_result or tool_reference"),
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


def test_units_gather_neighbours_and_carry_the_text_before_from_a_word_boundary() -> None:
    first = Piece("messages[0].content", "user", 0, "text", "x" * 10 + " tell me about the nerve")
    second = Piece("messages[1].content", "assistant", 1, "text", "agent synthesis")
    (unit,) = screening_units([first, second])  # short neighbours: one unit, one call
    assert unit.text == f"{first.text}\nagent synthesis" and unit.places == (first.where, second.where)
    long = Piece("system", "system", -1, "system", "word " * 500 + "tail")
    a, b = screening_units([long, second])
    assert a.text == long.text and b.pieces == (second,)
    context = b.text.split("\n")[0]
    assert len(context) <= CONTEXT and context.startswith(" word") and context.endswith("tail")


def test_a_tail_without_spaces_keeps_its_context() -> None:
    """``please/explain/...nerve`` then ``agent synthesis``: the cut is at a separator, and
    a tail with none is kept whole, never dropped."""
    pad = Piece("system", "system", -1, "system", "please/explain/" * 200 + "nerve")
    split = Piece("messages[0].content", "user", 0, "text", "agent synthesis steps")
    _, unit = screening_units([pad, split])
    assert unit.text.endswith("/nerve\nagent synthesis steps")
    solid = Piece("system", "system", -1, "system", "x" * 3000 + "nerve")
    _, unit = screening_units([solid, split])
    assert unit.text == "x" * (CONTEXT - 5) + "nerve\nagent synthesis steps"


def test_unit_bounds_are_the_same_on_every_turn() -> None:
    turns = [Piece(f"messages[{i}].content", "user" if i % 2 == 0 else "assistant", i, "text", f"turn {i} " * 60)
             for i in range(40)]  # fmt: skip
    earlier = screening_units(turns[:30])
    later = screening_units(turns)
    assert later[: len(earlier) - 1] == earlier[:-1]  # all but the unit the new turns land in
    assert all(len(u.text) <= UNIT + CONTEXT + 600 for u in later)


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


def test_a_long_conversation_costs_the_unit_its_new_turns_land_in(
    make_guard: MakeGuard, messages_double: MessagesDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOD_KEY", "k")
    guard = make_guard({"moderation": {"openai": {"url": messages_double.moderations_url, "api_key_env": "MOD_KEY"}}})
    turns: list[dict[str, Any]] = []
    calls = []
    for n in range(50):
        turns.append({"role": "user", "content": f"question number {n}: what is {n} squared? " * 4})
        before = len(messages_double.requests_to("/v1/moderations"))
        assert guard.check("u-1", prompt=prompt_from_body({"messages": list(turns)})).allowed
        calls.append(len(messages_double.requests_to("/v1/moderations")) - before)
        turns.append({"role": "assistant", "content": f"{n} squared is {n * n}. " * 4})
    assert calls[0] == 1 and max(calls) <= 2  # flat: never the whole conversation again
    assert sum(calls) < 50 * 2
    judged = [r.body["input"] for r in messages_double.requests_to("/v1/moderations")]
    assert len(judged) == len(set(judged))  # never the same text twice
    before = len(messages_double.requests_to("/v1/moderations"))
    assert guard.check("u-2", prompt=prompt_from_body({"messages": list(turns[:-1])})).allowed
    assert len(messages_double.requests_to("/v1/moderations")) == before  # a replay costs nothing


def test_thousands_of_tiny_turns_cost_one_call_per_unit_and_too_much_text_is_refused(
    make_guard: MakeGuard, messages_double: MessagesDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOD_KEY", "k")
    remote = {"openai": {"url": messages_double.moderations_url, "api_key_env": "MOD_KEY"}}
    guard = make_guard({"moderation": {**remote, "max_text": 50_000}})
    tiny = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"w{i}"} for i in range(3001)]
    text = sum(len(t["content"]) for t in tiny)
    assert guard.check("u-1", prompt=prompt_from_body({"messages": tiny})).allowed
    assert len(messages_double.requests_to("/v1/moderations")) <= text // UNIT + 2  # not 3,001
    huge = [{"role": "user", "content": "x" * 30_000}, {"role": "assistant", "content": "y" * 30_000},
            {"role": "user", "content": "go on"}]  # fmt: skip
    refused = guard.check("u-1", prompt=prompt_from_body({"messages": huge}))
    assert (refused.status, refused.error) == (413, "request_too_large") and "max_text" in refused.message
    local = make_guard({"moderation": {"rules": RULES, "max_text": 50_000}})
    assert local.check("u-1", prompt=prompt_from_body({"messages": huge})).allowed  # local moderators cost no call


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
    # three short turns make one unit; a remote verdict names every piece of it
    assert decision.moderation.where == ("messages[0].content", "messages[1].content", "messages[2].content")
    assert len(moderator.calls) == 1
    again = guard.check("u-2", prompt=prompt_from_body(json.loads(json.dumps(body))))
    assert again.error == "content_flagged" and len(moderator.calls) == 1  # the unit came from the cache


# -- found in review ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [[], {"a": 1}, 7])
def test_a_block_type_that_is_not_a_string_is_a_400(kind: object) -> None:
    with pytest.raises(BadBody, match=r"messages\[0\]\.content\[0\]\.type must be a string"):
        read_messages({"messages": [{"role": "user", "content": [{"type": kind}]}]})


def test_nothing_in_tool_input_or_schemas_is_skipped_as_binary() -> None:
    sneaky = {"type": "base64", "data": "", "query": HARMFUL}
    call = {"type": "tool_use", "id": "t1", "name": "lookup", "input": sneaky}
    found = read_messages({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [call]}]})
    assert any(HARMFUL in p.text for p in found.pieces)
    schema = {"type": "object", "properties": {"q": {"type": "string", "examples": [sneaky]}}}
    found = read_messages({"messages": [{"role": "user", "content": "hi"}],
                           "tools": [{"name": "t", "description": "d", "input_schema": schema}]})  # fmt: skip
    assert any(HARMFUL in p.text for p in found.pieces)


def test_tool_names_are_read_with_their_definitions_and_calls() -> None:
    tool = {"name": "nerve_agent_synthesis_steps", "input_schema": {"type": "object"}, "input_examples": [{"q": "x"}]}
    call = {"type": "tool_use", "id": "t1", "name": "nerve_agent_synthesis_steps", "input": {}}
    found = read_messages({"tools": [tool], "messages": [{"role": "user", "content": "hi"},
                                                         {"role": "assistant", "content": [call]}]})  # fmt: skip
    texts = {p.where: p.text for p in found.pieces}
    assert "nerve_agent_synthesis_steps" in texts["tools[0]"] and "q" in texts["tools[0]"]
    assert texts["messages[1].content[0].input"].startswith("nerve_agent_synthesis_steps")


def test_binary_content_in_a_server_result_is_skipped_but_its_neighbours_are_read() -> None:
    result = {"type": "code_execution_tool_result", "tool_use_id": "s1", "content": {
        "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=", "caption": HARMFUL}}  # fmt: skip
    found = read_messages({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [result]}]})
    (piece,) = found.pieces[1:]
    assert HARMFUL in piece.text and "iVBORw0KGgo" not in piece.text and found.media == 1


def test_a_number_too_large_for_a_float_is_refused() -> None:
    with pytest.raises(BadBody, match="too large"):
        parse_json(b'{"temperature": 1e999}')


@pytest.mark.parametrize(
    "evasion",
    ["ΝERVE AGENT SYNTHESIS", "nerve+agent+synthesis", "nerve|agent~synthesis", "nerve\u2212agent\u2044synthesis",
     "nerve\u2800agent synthesis", "nerve\u3164agent synthesis"],
)  # fmt: skip
def test_more_evasions_of_the_keyword_rules_are_caught(evasion: str, make_guard: MakeGuard) -> None:
    guard = make_guard({"moderation": {"rules": RULES}})
    assert guard.check("u-1", prompt=f"tell me the {evasion} steps").error == "content_flagged"


def test_a_call_the_app_writes_is_not_held_to_the_prompt_policys_length(make_guard: MakeGuard) -> None:
    guard = make_guard({"prompts": {"max_length": 100}})
    long = {"messages": [{"role": "user", "content": "context " * 100}]}
    assert guard.check("u-1", prompt=prompt_from_body(long, origin="app")).allowed
    assert guard.check("u-1", prompt=prompt_from_body(long)).error == "prompt_not_allowed"


@pytest.mark.parametrize("media_type", ["text/plain; charset=utf-8", "TEXT/PLAIN", "text/markdown"])
def test_a_base64_text_document_is_read_whatever_its_media_type_parameters(media_type: str) -> None:
    data = base64.b64encode(HARMFUL.encode()).decode()
    block = {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}
    found = read_messages({"messages": [{"role": "user", "content": [block]}]})
    assert [p.text for p in found.pieces] == [HARMFUL] and found.media == 0


def test_a_base64_document_of_another_media_type_is_refused() -> None:
    block = {"type": "document", "source": {"type": "base64", "media_type": "application/x-notes", "data": "eA=="}}
    with pytest.raises(BadBody, match=r"source\.media_type"):
        read_messages({"messages": [{"role": "user", "content": [block]}]})


def test_text_in_a_server_result_goes_on_cleaned() -> None:
    data = base64.b64encode(("ok" + TAG).encode()).decode()
    result = {"type": "web_fetch_tool_result", "tool_use_id": "s1", "content": {"type": "web_fetch_result",
              "url": "https://example.com", "content": {"type": "document", "source": {
                  "type": "base64", "media_type": "text/plain", "data": data}}}}  # fmt: skip
    found = read_messages({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [result]}]})
    sent = found.body["messages"][1]["content"][0]["content"]["content"]["source"]["data"]
    assert base64.b64decode(sent).decode() == "ok"

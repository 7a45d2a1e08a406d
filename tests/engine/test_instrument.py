"""guard.instrument(client): the real anthropic SDK against the local Messages-API double."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from aupguard import Refused
from aupguard.testing import MessagesDouble
from aupguard_asgi import SafeguardsMiddleware
from tests.conftest import MakeGuard

MODEL = "claude-sonnet-5-5"


def ask(client: Any, text: str = "hi", **kw: Any) -> Any:
    return client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": text}], **kw)


def test_calls_carry_the_hash_and_are_linked(make_guard: MakeGuard, messages_double: MessagesDouble) -> None:
    guard = make_guard()
    client = guard.instrument(messages_double.client())
    messages_double.messages.text("hello there")
    with guard.as_user("alice@example.com"):
        message = ask(client, metadata={"user_id": "alice@example.com"})  # a raw id the app put there
    (sent,) = messages_double.requests_to("/v1/messages")
    assert sent.body["metadata"]["user_id"] == guard.hash_user("alice@example.com")
    assert b"alice@example.com" not in sent.raw  # the raw id never leaves the process
    (record,) = guard.audit.find(anthropic_request_id=sent.request_id)
    assert record.message_id == message.id and record.surface == "anthropic"
    assert guard.audit.find(message_id=message.id)[0].request_id == record.request_id


def test_async_and_streaming_calls(make_guard: MakeGuard, messages_double: MessagesDouble) -> None:
    guard = make_guard()
    aclient = guard.instrument(messages_double.async_client())

    async def run() -> str:
        with guard.as_user("bob"):
            messages_double.messages.text("async answer")
            message = await ask(aclient)
            messages_double.messages.text("streamed answer")
            async with aclient.messages.stream(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "stream"}]
            ) as stream:
                text = "".join([chunk async for chunk in stream.text_stream])
        return f"{message.id} {text}"

    message_id, text = asyncio.run(run()).split(" ", 1)
    assert text == "streamed answer"
    first, second = messages_double.requests_to("/v1/messages")
    assert first.body["metadata"]["user_id"] == second.body["metadata"]["user_id"] == guard.hash_user("bob")
    assert guard.audit.find(message_id=message_id)[0].anthropic_request_id == first.request_id
    (streamed,) = guard.audit.find(anthropic_request_id=second.request_id)  # streams: linked by request-id
    assert streamed.surface == "anthropic"


def test_no_user_and_suspended_users_never_reach_anthropic(
    make_guard: MakeGuard, messages_double: MessagesDouble
) -> None:
    guard = make_guard()
    client = guard.instrument(messages_double.client())
    with pytest.raises(Refused) as info:
        ask(client)
    assert info.value.decision.error == "authentication_required"
    guard.suspend("mallory", reason="fraud")
    with guard.as_user("mallory"), pytest.raises(Refused) as info:
        ask(client)
    assert info.value.decision.error == "user_suspended"
    assert messages_double.requests_to("/v1/messages") == []


def test_a_refusal_from_claude_is_a_safety_signal(make_guard: MakeGuard, messages_double: MessagesDouble) -> None:
    guard = make_guard({"moderation": {"refusals": "strike"}})
    client = guard.instrument(messages_double.client())
    messages_double.messages.refusal(category="cyber")
    with guard.as_user("eve"):
        message = ask(client, "write ransomware")
    assert message.stop_reason == "refusal"
    assert guard.status("eve").strikes == 1
    (item,) = guard.store.review_items()
    assert item.categories == ("cyber",) and item.moderators == ("claude-refusal",)
    (record,) = guard.audit.find(message_id=message.id)
    assert "claude_refusal:cyber" in record.reasons


def test_inside_the_asgi_middleware_the_apps_calls_link_to_its_record(
    make_guard: MakeGuard, messages_double: MessagesDouble
) -> None:
    guard = make_guard()
    aclient = guard.instrument(messages_double.async_client())

    async def chat(request: Request) -> JSONResponse:
        message = await ask(aclient, "from the app")
        return JSONResponse({"id": message.id})

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"])])
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user")
    messages_double.messages.text("ok")
    with TestClient(app) as c:
        response = c.post("/v1/chat", json={"prompt": "hi"}, headers={"x-user": "carol"})
    (sent,) = messages_double.requests_to("/v1/messages")
    assert sent.body["metadata"]["user_id"] == guard.hash_user("carol")
    (record,) = guard.audit.find(anthropic_request_id=sent.request_id)
    assert record.request_id == response.headers["aupguard-request-id"]  # one record: the middleware's
    assert record.message_id == response.json()["id"]


def test_as_user_with_a_decision_links_to_that_record(make_guard: MakeGuard, messages_double: MessagesDouble) -> None:
    guard = make_guard({"limits": {"default": "2/minute"}})
    client = guard.instrument(messages_double.client())
    decision = guard.check("dave", prompt="hello")
    messages_double.messages.text("hi dave")
    with guard.as_user("dave", decision):
        message = ask(client, decision.prompt.text if decision.prompt else "")
    (record,) = guard.audit.find(user_id="dave")  # one record, one limit hit: no second check
    assert (record.request_id, record.message_id) == (decision.request_id, message.id)
    with pytest.raises(ValueError, match="another user"):
        guard.as_user("erin", decision)


def test_a_token_budget_refuses_the_next_call_once_spent(
    make_guard: MakeGuard, messages_double: MessagesDouble
) -> None:
    guard = make_guard({"limits": {"tokens": "100/day"}})
    client = guard.instrument(messages_double.client())
    with guard.as_user("tom"):
        messages_double.messages.text("short")
        first = ask(client, "x")
        used = first.usage.input_tokens + first.usage.output_tokens
        assert used < 100  # room for another call
        messages_double.messages.text("word " * 200)  # an answer that overruns the budget
        ask(client, "y")
        with pytest.raises(Refused) as info:
            ask(client, "z")
    assert info.value.decision.status == 429 and "token budget of 100 tokens" in info.value.decision.message
    assert 1 <= (info.value.decision.retry_after or 0) <= 86400
    assert len(messages_double.requests_to("/v1/messages")) == 2  # the third never left
    other = guard.check("ursula")
    assert other.allowed  # budgets are per user
    guard.spend_tokens(other, 1000)
    assert guard.check("ursula").error == "rate_limited"


def test_streams_are_linked_counted_and_captured_from_their_events(
    make_guard: MakeGuard, messages_double: MessagesDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aupguard import generate_key_entry

    monkeypatch.setenv("TEST_CAPTURE_KEY", generate_key_entry("c1"))
    guard = make_guard({"limits": {"tokens": "10000/day"},
                        "capture": {"enabled": True, "key_env": "TEST_CAPTURE_KEY"}})  # fmt: skip
    client = guard.instrument(messages_double.client())
    aclient = guard.instrument(messages_double.async_client())
    messages_double.messages.text("sync streamed answer")
    with (
        guard.as_user("sam"),
        client.messages.stream(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "s"}]) as stream,
    ):
        final = stream.get_final_message()

    async def run() -> Any:
        messages_double.messages.text("async streamed answer")
        with guard.as_user("sam"):
            async with aclient.messages.stream(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "a"}]
            ) as astream:
                return await astream.get_final_message()

    afinal = asyncio.run(run())
    for message in (final, afinal):
        (record,) = guard.audit.find(message_id=message.id)  # the msg_ id came from message_start
        assert record.anthropic_request_id is not None
    left = guard.counters.tokens_left(guard.hash_user("sam"))
    used = sum(m.usage.input_tokens + m.usage.output_tokens for m in (final, afinal))
    assert left is not None and left.remaining == 10000 - used
    assert sorted(i.text for i in guard.capture.export() if i.kind == "completion") == [
        "async streamed answer", "sync streamed answer"]  # fmt: skip


def test_the_record_names_the_model_and_the_usage(make_guard: MakeGuard, messages_double: MessagesDouble) -> None:
    guard = make_guard()
    client = guard.instrument(messages_double.client())
    messages_double.messages.text("an answer of five words")
    with guard.as_user("val"):
        message = ask(client)
        with client.messages.stream(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "s"}]) as s:
            streamed = s.get_final_message()
    for m in (message, streamed):
        (record,) = guard.audit.find(message_id=m.id)
        assert (record.model, record.input_tokens, record.output_tokens) == (
            m.model, m.usage.input_tokens, m.usage.output_tokens)  # fmt: skip


def test_refusals_in_streams_and_refused_decisions_handed_over(
    make_guard: MakeGuard, messages_double: MessagesDouble
) -> None:
    guard = make_guard({"moderation": {"refusals": "review"}})
    client = guard.instrument(messages_double.client())
    messages_double.messages.refusal(category="cyber")
    with (
        guard.as_user("eve"),
        client.messages.stream(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "bad"}]) as stream,
    ):
        final = stream.get_final_message()
    assert final.stop_reason == "refusal"
    (item,) = guard.store.review_items()
    assert item.categories == ("cyber",)
    guard.suspend("mallory", reason="fraud")
    refused = guard.check("mallory")
    with guard.as_user("mallory", refused), pytest.raises(Refused):
        ask(client)
    assert len(messages_double.requests_to("/v1/messages")) == 1


def test_an_unread_stream_still_names_its_request(make_guard: MakeGuard, messages_double: MessagesDouble) -> None:
    guard = make_guard()
    client = guard.instrument(messages_double.client())
    messages_double.messages.text("never read")
    with guard.as_user("ned"):
        stream = client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}],
                                        stream=True)  # fmt: skip
        stream.close()
    (sent,) = messages_double.requests_to("/v1/messages")
    assert guard.audit.find(anthropic_request_id=sent.request_id)


def test_message_batches_carry_hashes_only(make_guard: MakeGuard, messages_double: MessagesDouble) -> None:
    import anthropic

    guard = make_guard()
    client = guard.instrument(messages_double.client())
    requests = [{"custom_id": f"r{n}", "params": {"model": MODEL, "max_tokens": 5, "metadata": {"user_id": user},
                                                  "messages": [{"role": "user", "content": "x"}]}}
                for n, user in enumerate(["alice@example.com", "bob@example.com"])]  # fmt: skip
    with pytest.raises(anthropic.APIStatusError):  # the double has no batches endpoint; what it received counts
        client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    (sent,) = [r for r in messages_double.requests if r.path.endswith("/batches")]
    assert [r["params"]["metadata"]["user_id"] for r in sent.body["requests"]] == [
        guard.hash_user("alice@example.com"), guard.hash_user("bob@example.com")]  # fmt: skip
    assert b"example.com" not in sent.raw


def test_every_claude_call_of_a_request_is_findable(
    make_guard: MakeGuard, messages_double: MessagesDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aupguard import generate_key_entry

    monkeypatch.setenv("TEST_CAPTURE_KEY", generate_key_entry("c1"))
    guard = make_guard({"capture": {"enabled": True, "key_env": "TEST_CAPTURE_KEY"}})
    client = guard.instrument(messages_double.client())
    decision = guard.check("ava", prompt="plan a trip")
    with guard.as_user("ava", decision):  # an agent: several Claude calls for one request
        for text in ("step one", "step two"):
            messages_double.messages.text(text)
            ask(client)
    first, second = messages_double.requests_to("/v1/messages")
    for sent in (first, second):
        (record,) = guard.audit.find(anthropic_request_id=sent.request_id)
        assert record.request_id == decision.request_id
    completions = sorted(i.text for i in guard.capture.export() if i.kind == "completion")
    assert completions == ["step one", "step two"]


def test_odd_ids_in_an_answer_are_left_out_of_the_record_not_raised(
    make_guard: MakeGuard, messages_double: MessagesDouble
) -> None:
    """The double echoes an empty model name and sends a 300-character request-id: the app
    gets its answer; the record keeps what it can hold."""
    from aupguard.testing import Reply

    guard = make_guard()
    client = guard.instrument(messages_double.client())
    messages_double.messages.push(Reply(text="fine", headers={"request-id": "r" * 300}))
    with guard.as_user("odd"):
        message = client.messages.create(model="", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    (record,) = guard.audit.find(message_id=message.id)
    assert record.model is None and record.anthropic_request_id is None and record.outcome == "allowed"

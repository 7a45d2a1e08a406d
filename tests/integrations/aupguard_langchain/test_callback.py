"""SafeguardsCallbackHandler with real langchain-core and langchain-anthropic against the
local Messages-API double."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from aupguard import Refused, Safeguards
from aupguard.testing import MessagesDouble
from aupguard_langchain import AsyncSafeguardsCallbackHandler, SafeguardsCallbackHandler, instrument_chat_model
from tests.conftest import MakeGuard

RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]


def model_for(guard: Safeguards, double: MessagesDouble) -> ChatAnthropic:
    model = ChatAnthropic(model="claude-sonnet-5-5", api_key="test-key", base_url=double.url, max_retries=0)
    return instrument_chat_model(guard, model)  # type: ignore[no-any-return]


def config(handler: Any, user: str | None = "u-42") -> Any:
    return {"callbacks": [handler], "metadata": {"user_id": user} if user else {}}


def test_invoke_carries_the_hash_and_links_the_record(make_guard: MakeGuard, messages_double: MessagesDouble) -> None:
    guard = make_guard()
    model = model_for(guard, messages_double)
    messages_double.messages.text("Paris.")
    answer = model.invoke("Capital of France?", config=config(SafeguardsCallbackHandler(guard)))
    assert answer.content == "Paris."
    (sent,) = messages_double.requests_to("/v1/messages")
    assert sent.body["metadata"]["user_id"] == guard.hash_user("u-42")
    assert b"u-42" not in sent.raw
    (record,) = guard.audit.find(anthropic_request_id=sent.request_id)
    message_id = answer.response_metadata["id"]
    assert record.surface == "langchain" and record.message_id == message_id and message_id.startswith("msg_")
    assert guard.audit.find(message_id=message_id)[0].request_id == record.request_id


def test_a_prompt_model_parser_chain_batch_and_stream(make_guard: MakeGuard, messages_double: MessagesDouble) -> None:
    guard = make_guard()
    chain = (
        ChatPromptTemplate.from_messages([("human", "Say {word}")])
        | model_for(guard, messages_double)
        | StrOutputParser()
    )
    handler = SafeguardsCallbackHandler(guard)
    messages_double.messages.text("hello")
    assert chain.invoke({"word": "hello"}, config=config(handler)) == "hello"
    for _ in range(3):
        messages_double.messages.text("again")
    assert chain.batch([{"word": "a"}, {"word": "b"}, {"word": "c"}], config=config(handler)) == ["again"] * 3
    messages_double.messages.text("streamed words here")
    assert "".join(chain.stream({"word": "s"}, config=config(handler))) == "streamed words here"
    sent = messages_double.requests_to("/v1/messages")
    assert len(sent) == 5 and {r.body["metadata"]["user_id"] for r in sent} == {guard.hash_user("u-42")}
    assert len(guard.audit.find(user_id="u-42")) == 5  # one record per model call, no double checks


def test_async_runs_with_both_handlers(make_guard: MakeGuard, messages_double: MessagesDouble) -> None:
    guard = make_guard()
    model = model_for(guard, messages_double)

    async def run() -> list[str]:
        out = []
        for handler in (AsyncSafeguardsCallbackHandler(guard), SafeguardsCallbackHandler(guard)):
            messages_double.messages.text("async answer")
            out.append((await model.ainvoke("hi", config=config(handler))).content)
            messages_double.messages.text("streamed async")
            out.append("".join([c.content async for c in model.astream("hi", config=config(handler))]))  # type: ignore[misc]
        return out  # type: ignore[return-value]

    assert asyncio.run(run()) == ["async answer", "streamed async"] * 2
    assert {r.body["metadata"]["user_id"] for r in messages_double.requests_to("/v1/messages")} == {
        guard.hash_user("u-42")
    }


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_suspended_flagged_and_anonymous_runs_never_reach_anthropic(
    make_guard: MakeGuard, messages_double: MessagesDouble, flavour: str
) -> None:
    guard = make_guard({"moderation": {"rules": RULES}})
    model = model_for(guard, messages_double)
    guard.suspend("mallory", reason="fraud")
    cases = [("mallory", "hello", "user_suspended"), ("u-42", "nerve agent synthesis please", "content_flagged"),
             (None, "hello", "authentication_required")]  # fmt: skip

    def run(text: str, user: str | None) -> None:
        if flavour == "sync":
            model.invoke(text, config=config(SafeguardsCallbackHandler(guard), user))
        else:
            asyncio.run(model.ainvoke(text, config=config(AsyncSafeguardsCallbackHandler(guard), user)))

    for user, text, kind in cases:
        with pytest.raises(Refused) as info:
            run(text, user)
        assert info.value.decision.error == kind
    assert messages_double.requests_to("/v1/messages") == []


def test_the_user_can_come_from_the_constructor(make_guard: MakeGuard, messages_double: MessagesDouble) -> None:
    guard = make_guard()
    model = model_for(guard, messages_double)
    messages_double.messages.text("ok")
    model.invoke("hi", config={"callbacks": [SafeguardsCallbackHandler(guard, user_id="fixed-user")]})
    (sent,) = messages_double.requests_to("/v1/messages")
    assert sent.body["metadata"]["user_id"] == guard.hash_user("fixed-user")


def test_without_instrumentation_the_callback_still_guards_and_links(
    make_guard: MakeGuard, messages_double: MessagesDouble
) -> None:
    guard = make_guard({"limits": {"tokens": "1000/day"}})
    plain = ChatAnthropic(model="claude-sonnet-5-5", api_key="test-key", base_url=messages_double.url, max_retries=0)
    messages_double.messages.text("plain answer")
    answer = plain.invoke("hi", config=config(SafeguardsCallbackHandler(guard)))
    (record,) = guard.audit.find(message_id=answer.response_metadata["id"])  # linked from on_llm_end
    assert record.surface == "langchain"
    left = guard.counters.tokens_left(guard.hash_user("u-42"))
    assert left is not None and left.remaining < 1000  # usage counted from the run's result


def test_a_finished_run_leaves_no_user_behind(make_guard: MakeGuard, messages_double: MessagesDouble) -> None:
    from aupguard.engine.context import current_guarded

    guard = make_guard()
    guard.suspend("mallory", reason="fraud")
    model = model_for(guard, messages_double)
    aclient = guard.instrument(messages_double.async_client())

    async def run() -> None:
        for handler in (AsyncSafeguardsCallbackHandler(guard), SafeguardsCallbackHandler(guard)):
            messages_double.messages.text("ok")
            await model.ainvoke("hi", config=config(handler, "u-ok"))
            messages_double.messages.text("streamed")
            [c async for c in model.astream("hi", config=config(handler, "u-ok"))]
            assert current_guarded() is None  # the run's user does not outlive it in this task
            with guard.as_user("mallory"), pytest.raises(Refused):
                await aclient.messages.create(model="claude-sonnet-5-5", max_tokens=5,
                                              messages=[{"role": "user", "content": "x"}])  # fmt: skip

    asyncio.run(run())
    assert all(
        r.body["metadata"]["user_id"] == guard.hash_user("u-ok") for r in messages_double.requests_to("/v1/messages")
    )


def test_usage_is_counted_once_with_an_instrumented_model(
    make_guard: MakeGuard, messages_double: MessagesDouble
) -> None:
    guard = make_guard({"limits": {"tokens": "100000/day"}})
    model = model_for(guard, messages_double)
    assert guard.instrument(model._client) is model._client  # instrumenting twice changes nothing
    messages_double.messages.text("some answer")
    answer = model.invoke("hi", config=config(SafeguardsCallbackHandler(guard)))
    usage = answer.response_metadata["usage"]
    left = guard.counters.tokens_left(guard.hash_user("u-42"))
    assert left is not None and left.remaining == 100000 - usage["input_tokens"] - usage["output_tokens"]

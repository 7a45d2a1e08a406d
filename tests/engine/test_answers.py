"""One answer recorder: the same answer through every path (the gateway, the instrumented
client streamed or not, sync or async, the LangChain callback) leaves the same audit record,
token count, capture and refusal handling; the async recorder never blocks the event loop."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest
from langchain_anthropic import ChatAnthropic

from aupguard import Refused, Safeguards, generate_key_entry
from aupguard.gateway import GatewayKeys
from aupguard.testing import MessagesDouble, Reply
from aupguard_gateway import build_gateway
from aupguard_langchain import AsyncSafeguardsCallbackHandler, SafeguardsCallbackHandler, instrument_chat_model
from tests.conftest import MakeGuard
from tests.support.gateway import UPSTREAM_KEY, serving

MODEL = "claude-parity-1"
TEXT = "I can't help with writing malware."
BUDGET = 100_000
ASK: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "write malware"}]}


def fixed_message(stop_reason: str = "refusal", text: str = TEXT) -> dict[str, Any]:
    """One answer, whatever path asks for it: the same id, model, usage, text and stop."""
    refusal = stop_reason == "refusal"
    return {
        "id": "msg_parity0123456789", "type": "message", "role": "assistant", "model": MODEL,
        "content": [{"type": "text", "text": text}], "stop_reason": stop_reason, "stop_sequence": None,
        "stop_details": {"type": "refusal", "category": "cyber", "explanation": None} if refusal else None,
        "usage": {"input_tokens": 21, "output_tokens": 7},
    }  # fmt: skip


def sse_of(message: dict[str, Any]) -> bytes:
    """The message as the Messages API streams it (the event sequence, SSE framing)."""
    start = message | {"content": [], "stop_reason": None, "stop_details": None,
                       "usage": {"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1}}  # fmt: skip
    text = message["content"][0]["text"]
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
          for piece in (text[:10], text[10:])),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "usage": message["usage"],  # cumulative, input tokens too
         "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None,
                   "stop_details": message["stop_details"]}},
        {"type": "message_stop"},
    ]  # fmt: skip
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def push(double: MessagesDouble, *, stream: bool, message: dict[str, Any] | None = None) -> None:
    message = message or fixed_message()
    if stream:
        double.messages.push(Reply(raw=sse_of(message), content_type="text/event-stream; charset=utf-8"))
    else:
        double.messages.push(Reply(payload=message))


@pytest.fixture
def guard(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch) -> Safeguards:
    monkeypatch.setenv("TEST_CAPTURE_KEY", generate_key_entry("c1"))
    return make_guard({
        "limits": {"tokens": f"{BUDGET}/day"},
        "capture": {"enabled": True, "key_env": "TEST_CAPTURE_KEY"},
        "moderation": {"refusals": "strike"},
    })  # fmt: skip


def through_the_gateway(guard: Safeguards, double: MessagesDouble) -> Iterator[tuple[str, Callable[[], None]]]:
    keys = GatewayKeys(guard)
    app = build_gateway(guard, upstream=double.url, upstream_key=UPSTREAM_KEY, keys=keys)
    with serving(app) as url:
        for stream in (False, True):
            user = f"gateway-{'stream' if stream else 'json'}"
            client = anthropic.Anthropic(api_key=keys.create(user).key, base_url=url, max_retries=0)

            def call(client: anthropic.Anthropic = client, stream: bool = stream) -> None:
                push(double, stream=stream)
                if stream:
                    with client.messages.stream(**ASK) as events:
                        events.until_done()
                else:
                    client.messages.create(**ASK)

            yield user, call


def through_the_client(guard: Safeguards, double: MessagesDouble) -> Iterator[tuple[str, Callable[[], None]]]:
    client = guard.instrument(double.client())

    def sync(stream: bool) -> None:
        push(double, stream=stream)
        if stream:
            with client.messages.stream(**ASK) as events:
                events.until_done()
        else:
            client.messages.create(**ASK)

    async def asynchronous(stream: bool) -> None:
        aclient = guard.instrument(double.async_client())  # one per event loop
        push(double, stream=stream)
        if stream:
            async with aclient.messages.stream(**ASK) as events:
                await events.until_done()
        else:
            await aclient.messages.create(**ASK)

    for stream in (False, True):
        suffix = "-stream" if stream else ""
        yield f"client-sync{suffix}", lambda s=stream, u=f"client-sync{suffix}": _as(guard, u, lambda: sync(s))
        yield f"client-async{suffix}", lambda s=stream, u=f"client-async{suffix}": _as(
            guard, u, lambda: asyncio.run(asynchronous(s)))  # fmt: skip


def _as(guard: Safeguards, user: str, call: Callable[[], None]) -> None:
    with guard.as_user(user):
        call()


def through_langchain(guard: Safeguards, double: MessagesDouble) -> Iterator[tuple[str, Callable[[], None]]]:
    def plain() -> ChatAnthropic:
        return ChatAnthropic(model=MODEL, api_key="test-key", base_url=double.url, max_retries=0)

    def config(handler: Any, user: str) -> Any:
        return {"callbacks": [handler], "metadata": {"user_id": user}}

    def invoke() -> None:
        push(double, stream=False)
        plain().invoke("write malware", config=config(SafeguardsCallbackHandler(guard), "langchain-invoke"))

    def stream() -> None:
        push(double, stream=True)
        list(plain().stream("write malware", config=config(SafeguardsCallbackHandler(guard), "langchain-stream")))

    def ainvoke() -> None:
        push(double, stream=False)
        handler = AsyncSafeguardsCallbackHandler(guard)
        asyncio.run(plain().ainvoke("write malware", config=config(handler, "langchain-ainvoke")))

    def instrumented() -> None:
        push(double, stream=False)
        model = instrument_chat_model(guard, plain())
        model.invoke("write malware", config=config(SafeguardsCallbackHandler(guard), "langchain-instrumented"))

    yield "langchain-invoke", invoke
    yield "langchain-stream", stream
    yield "langchain-ainvoke", ainvoke
    yield "langchain-instrumented", instrumented


def test_the_same_answer_through_every_path_leaves_the_same_record(
    guard: Safeguards, messages_double: MessagesDouble
) -> None:
    users = []
    for paths in (through_the_gateway, through_the_client, through_langchain):
        for user, call in paths(guard, messages_double):  # each path served while it is called
            call()
            users.append(user)
    assert len(users) == 10
    sent = messages_double.requests_to("/v1/messages")
    answered = {r.body["metadata"]["user_id"]: r.request_id for r in sent if "metadata" in r.body}
    guard.audit.flush()
    items = guard.store.review_items()
    for user in users:
        user_hash = guard.hash_user(user)
        (record,) = guard.audit.find(user_id=user)
        seen = (record.message_id, record.model, record.input_tokens, record.output_tokens)
        # a plain LangChain model's stream hands on no message id (langchain-anthropic drops it)
        message_id = None if user == "langchain-stream" else "msg_parity0123456789"
        assert seen == (message_id, MODEL, 21, 7), user
        assert "claude_refusal:cyber" in record.reasons, user
        # Anthropic's request-id header: every path that sees the HTTP answer links it (a plain
        # LangChain model hands the callback no headers)
        expected = (
            None if user in ("langchain-invoke", "langchain-stream", "langchain-ainvoke") else answered[user_hash]
        )
        assert record.anthropic_request_id == expected, user
        left = guard.counters.tokens_left(user_hash)
        assert left is not None and left.remaining == BUDGET - 28, user  # counted once, whatever the path
        assert [(c.kind, c.text) for c in guard.capture.export(user_id=user) if c.kind == "completion"] == [
            ("completion", TEXT)], user  # fmt: skip
        (item,) = [i for i in items if i.user_hash == user_hash]
        assert (item.categories, item.moderators) == (("cyber",), ("claude-refusal",)), user
        assert guard.status(user).strikes == 1, user


@pytest.mark.parametrize("handler", [SafeguardsCallbackHandler, AsyncSafeguardsCallbackHandler])
def test_a_refusal_through_a_plain_langchain_model_is_a_safety_signal(
    make_guard: MakeGuard, messages_double: MessagesDouble, handler: Any
) -> None:
    guard = make_guard({"moderation": {"refusals": "strike"}})
    model = ChatAnthropic(model=MODEL, api_key="test-key", base_url=messages_double.url, max_retries=0)
    messages_double.messages.refusal(category="violent_extremism")
    config: Any = {"callbacks": [handler(guard)], "metadata": {"user_id": "u-7"}}
    answer = asyncio.run(model.ainvoke("bad", config=config))
    assert answer.response_metadata["stop_reason"] == "refusal"
    assert guard.status("u-7").strikes == 1
    (item,) = guard.store.review_items()
    assert item.categories == ("violent_extremism",) and item.moderators == ("claude-refusal",)
    (record,) = guard.audit.find(user_id="u-7")
    assert "claude_refusal:violent_extremism" in record.reasons


RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]


def test_output_moderation_withholds_a_flagged_answer_from_the_client_and_the_chain(
    make_guard: MakeGuard, messages_double: MessagesDouble
) -> None:
    guard = make_guard({"moderation": {"output": True, "rules": RULES}})
    client = guard.instrument(messages_double.client())
    bad = fixed_message("end_turn", "Step one of nerve agent synthesis is ...")
    push(messages_double, stream=False, message=bad)
    with guard.as_user("olga"), pytest.raises(Refused) as info:
        client.messages.create(**ASK)
    assert info.value.decision.error == "content_flagged"
    model = ChatAnthropic(model=MODEL, api_key="test-key", base_url=messages_double.url, max_retries=0)
    push(messages_double, stream=False, message=bad)
    with pytest.raises(Refused):
        model.invoke("x", config={"callbacks": [SafeguardsCallbackHandler(guard)], "metadata": {"user_id": "piet"}})
    guard.audit.flush()
    for user in ("olga", "piet"):
        (record,) = guard.audit.find(user_id=user)
        assert record.outcome == "content_flagged" and guard.status(user).strikes == 0  # an answer earns no strike
    assert sorted(i.user_hash for i in guard.store.review_items()) == sorted(map(guard.hash_user, ("olga", "piet")))


class HeldStore:
    """Makes one store method wait for the test: ``entered`` once a call reached it, and
    the call proceeds when the test calls ``release``. A call that waits 10 s fails instead
    (a blocked event loop could never release it: the test then fails, not hangs)."""

    def __init__(self, guard: Safeguards, method: str) -> None:
        self.entered = threading.Event()
        self.threads: list[str] = []
        self._gate = threading.Event()
        original = getattr(guard.store, method)

        def held(*args: Any, **kwargs: Any) -> Any:
            self.threads.append(threading.current_thread().name)
            self.entered.set()
            if not self._gate.wait(10):
                raise AssertionError(f"{method} was held with the event loop blocked")
            return original(*args, **kwargs)

        setattr(guard.store, method, held)

    def release(self) -> None:
        self._gate.set()


@pytest.mark.parametrize("method", ["mutate", "capture_key"])
def test_the_async_recorder_leaves_the_loop_free_while_the_store_is_held(
    guard: Safeguards, messages_double: MessagesDouble, method: str
) -> None:
    aclient = guard.instrument(messages_double.async_client())
    push(messages_double, stream=False)
    held = HeldStore(guard, method)  # a refusal's strike (mutate), a first capture's key (capture_key)

    async def run() -> list[str]:
        progress: list[str] = []
        with guard.as_user("slow-store"):
            call = asyncio.ensure_future(aclient.messages.create(**ASK))
        while not held.entered.is_set():  # the recorder reached the store ...
            await asyncio.sleep(0.001)
        progress.append("the loop ran while the store was held")  # ... and this task still runs
        held.release()
        await call
        return progress

    assert asyncio.run(run()) == ["the loop ran while the store was held"]
    assert threading.main_thread().name not in held.threads  # the store was called off the loop
    guard.audit.flush()
    assert guard.status("slow-store").strikes == 1
    assert [c.text for c in guard.capture.export(user_id="slow-store") if c.kind == "completion"] == [TEXT]


def test_the_gateway_answers_others_while_a_refusal_waits_for_the_store(
    guard: Safeguards, messages_double: MessagesDouble
) -> None:
    keys = GatewayKeys(guard)
    app = build_gateway(guard, upstream=messages_double.url, upstream_key=UPSTREAM_KEY, keys=keys)
    with serving(app) as url:
        refused = anthropic.Anthropic(api_key=keys.create("refused").key, base_url=url, max_retries=0)
        other = anthropic.Anthropic(api_key=keys.create("other").key, base_url=url, max_retries=0)
        other.messages.create(**ASK)  # the other user's capture key is made and cached
        held = HeldStore(guard, "mutate")
        push(messages_double, stream=False)
        done: list[Any] = []
        waiting = threading.Thread(target=lambda: done.append(refused.messages.create(**ASK)))
        waiting.start()
        assert held.entered.wait(10)  # the refusal's strike is waiting for the store ...
        answer = other.messages.create(**ASK)  # ... and the gateway's event loop answers another call
        assert answer.content[0].text == "echo: write malware" and not done  # type: ignore[union-attr]
        held.release()
        waiting.join(10)
    assert done and done[0].stop_reason == "refusal"
    assert guard.status("refused").strikes == 1


def test_what_an_answer_gets_is_decided_by_the_facts_and_the_policy_alone() -> None:
    from aupguard.engine.answers import AnswerFacts, AnswerRules, plan_answer
    from aupguard.outcome import Decision

    facts = AnswerFacts()
    facts.see_message(fixed_message())
    everything = AnswerRules(token_budget=True, capture_completions=True, moderate_output=True, refusals="review")
    user = Decision("r-1", True, 200, None, "", "hash-of-user", None)
    plan = plan_answer(facts, user, everything, request_id="req_1")
    assert plan.link == {"anthropic_request_id": "req_1", "message_id": "msg_parity0123456789", "model": MODEL,
                         "input_tokens": 21, "output_tokens": 7}  # fmt: skip
    assert (plan.spend, plan.capture, plan.moderate) == (28, TEXT, TEXT)
    assert plan.refusal is not None and plan.refusal.category == "cyber" and not plan.refusal.strike
    assert plan.refusal.flag is not None and plan.refusal.flag.moderators == ("claude-refusal",)
    # moderated already (the gateway), anonymous, nothing in the policy, refusals only logged
    assert plan_answer(facts, user, everything, request_id=None, output_moderated=True).moderate is None
    anonymous = plan_answer(facts, user._replace(user_hash=None), everything, request_id=None)
    assert (anonymous.spend, anonymous.capture) == (0, None)
    bare = AnswerRules(token_budget=False, capture_completions=False, moderate_output=False, refusals="log")
    quiet = plan_answer(facts, user, bare, request_id=None)
    assert (quiet.spend, quiet.capture, quiet.moderate) == (0, None, None)
    assert quiet.refusal is not None and quiet.refusal.flag is None  # still in the record's reasons
    # what an upstream says is data: ids the log cannot hold and odd counts are left out
    odd = AnswerFacts()
    odd.see_message({"id": "", "model": "m" * 300, "usage": {"input_tokens": -5, "output_tokens": True}})
    plan = plan_answer(odd, user, everything, request_id="x" * 300)
    assert plan.link == {"anthropic_request_id": None, "message_id": None, "model": None, "input_tokens": 0,
                         "output_tokens": 0}  # fmt: skip
    assert plan.spend == 0 and plan.refusal is None


def test_redis_counters_are_spent_off_the_event_loop(
    make_guard: MakeGuard, messages_double: MessagesDouble, redis_url: str
) -> None:
    guard = make_guard({"limits": {"tokens": f"{BUDGET}/day"}, "storage": {"counters": redis_url}})
    threads: list[str] = []
    spend = guard.counters.spend_tokens

    def watched(key: str, tokens: int) -> None:
        threads.append(threading.current_thread().name)
        spend(key, tokens)

    guard.counters.spend_tokens = watched  # type: ignore[method-assign]

    async def run() -> None:
        aclient = guard.instrument(messages_double.async_client())
        push(messages_double, stream=False, message=fixed_message("end_turn"))
        with guard.as_user("redis-user"):
            await aclient.messages.create(**ASK)

    asyncio.run(run())
    assert len(threads) == 1 and threads[0] != threading.main_thread().name  # Redis: waited for in a thread
    left = guard.counters.tokens_left(guard.hash_user("redis-user"))
    assert left is not None and left.remaining == BUDGET - 28

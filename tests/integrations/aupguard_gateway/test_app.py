"""``aupguard gateway`` with the official SDK (sync, async, streaming) pointed at it, a real
uvicorn on loopback, and the local Messages-API double as the upstream."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import anthropic
import httpx
import pytest

from aupguard import Safeguards
from aupguard.errors import StoreError
from aupguard.gateway import GatewayKeys
from aupguard.testing import MessagesDouble
from aupguard_gateway import build_gateway
from tests.conftest import MakeGuard
from tests.support.gateway import UPSTREAM_KEY, serving

MODEL = "claude-haiku-4-5"
ASK = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "Capital of France?"}]}
RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]


@dataclass
class Gateway:
    url: str
    guard: Safeguards
    keys: GatewayKeys
    key: str  # alice's gateway key
    double: MessagesDouble

    def client(self, key: str | None = None, **options: object) -> anthropic.Anthropic:
        return anthropic.Anthropic(api_key=key or self.key, base_url=self.url, max_retries=0, **options)  # type: ignore[arg-type]

    def async_client(self, key: str | None = None) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(api_key=key or self.key, base_url=self.url, max_retries=0)


def start(make_guard: MakeGuard, double: MessagesDouble, policy: dict[str, object] | None = None) -> Iterator[Gateway]:
    guard = make_guard(policy or {})
    keys = GatewayKeys(guard)
    key = keys.create("alice").key
    app = build_gateway(guard, upstream=double.url, upstream_key=UPSTREAM_KEY, keys=keys)
    with serving(app) as url:
        yield Gateway(url, guard, keys, key, double)


@pytest.fixture
def gw(make_guard: MakeGuard, messages_double: MessagesDouble) -> Iterator[Gateway]:
    yield from start(make_guard, messages_double)


def assert_forwarded_safely(gw: Gateway, sent: object) -> None:
    """The upstream saw the hash and the upstream key: never the raw id or the gateway key."""
    assert sent.body["metadata"]["user_id"] == gw.guard.hash_user("alice")  # type: ignore[attr-defined]
    assert sent.headers["x-api-key"] == UPSTREAM_KEY and "authorization" not in sent.headers  # type: ignore[attr-defined]
    everything = json.dumps(dict(sent.headers)).encode() + sent.raw  # type: ignore[attr-defined]
    assert gw.key.encode() not in everything and b"alice" not in everything


def test_sync_call_is_answered_hashed_and_linked(gw: Gateway) -> None:
    gw.double.messages.text("Paris.")
    raw = gw.client().messages.with_raw_response.create(**ASK, metadata={"user_id": "alice"})  # type: ignore[arg-type]
    message = raw.parse()
    assert message.content[0].text == "Paris."  # type: ignore[union-attr]
    (sent,) = gw.double.requests_to("/v1/messages")
    assert_forwarded_safely(gw, sent)
    assert raw.headers["request-id"] == sent.request_id  # the upstream's id reaches the client
    gw.guard.audit.flush()
    (record,) = gw.guard.audit.find(message_id=message.id)
    assert record.request_id == raw.headers["aupguard-request-id"]
    assert record.anthropic_request_id == sent.request_id and record.user_hash == gw.guard.hash_user("alice")
    assert (record.input_tokens, record.output_tokens) == (message.usage.input_tokens, message.usage.output_tokens)


def test_async_call_is_answered_and_linked(gw: Gateway) -> None:
    gw.double.messages.text("Paris, async.")

    async def ask() -> anthropic.types.Message:
        async with gw.async_client() as client:
            return await client.messages.create(**ASK)  # type: ignore[arg-type]

    message = asyncio.run(ask())
    assert message.content[0].text == "Paris, async."  # type: ignore[union-attr]
    (sent,) = gw.double.requests_to("/v1/messages")
    assert_forwarded_safely(gw, sent)
    gw.guard.audit.flush()
    (record,) = gw.guard.audit.find(message_id=message.id)
    assert record.anthropic_request_id == sent.request_id


def test_streamed_call_is_passed_on_and_linked(gw: Gateway) -> None:
    gw.double.messages.text("Paris is the capital of France.")
    with gw.client().messages.stream(**ASK) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Paris is the capital of France."
    (sent,) = gw.double.requests_to("/v1/messages")
    assert sent.body["stream"] is True
    assert_forwarded_safely(gw, sent)
    gw.guard.audit.flush()
    (record,) = gw.guard.audit.find(message_id=final.id)
    assert record.anthropic_request_id == sent.request_id
    assert record.output_tokens == final.usage.output_tokens and record.input_tokens == final.usage.input_tokens


def test_async_stream(gw: Gateway) -> None:
    gw.double.messages.text("one two three")

    async def ask() -> str:
        async with gw.async_client() as client, client.messages.stream(**ASK) as stream:  # type: ignore[arg-type]
            return "".join([t async for t in stream.text_stream])

    assert asyncio.run(ask()) == "one two three"


def test_sse_events_arrive_as_the_upstream_sends_them(gw: Gateway) -> None:
    release = threading.Event()
    gw.double.messages.text("held answer", hold=release)
    with gw.client().messages.stream(**ASK) as stream:  # type: ignore[arg-type]
        events = iter(stream)
        first = next(events)
        assert first.type == "message_start"  # arrived while the upstream still holds the last event
        assert not release.is_set()
        release.set()
        rest = [e.type for e in events]
    assert rest[-1] == "message_stop"


def test_a_client_that_goes_away_closes_the_upstream_stream(gw: Gateway) -> None:
    release = threading.Event()
    gw.double.messages.text("never finished", hold=release)
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST", f"{gw.url}/v1/messages", json={**ASK, "stream": True}, headers={"x-api-key": gw.key}
        ) as response,
    ):
        assert response.status_code == 200
        next(response.iter_raw())
    # the client closed its connection: the gateway closes the upstream one, which the double sees
    assert gw.double.client_gone.wait(10)
    release.set()


@pytest.mark.parametrize("key", ["agk_000000000000_" + "x" * 43, "not-a-key", "sk-ant-something"])
def test_a_wrong_key_is_refused_with_401(gw: Gateway, key: str) -> None:
    with pytest.raises(anthropic.AuthenticationError) as info:
        gw.client(key).messages.create(**ASK)  # type: ignore[arg-type]
    assert info.value.status_code == 401 and info.value.body["error"]["type"] == "authentication_required"  # type: ignore[index]
    assert gw.double.requests == []


def test_a_revoked_key_is_refused_with_401(gw: Gateway) -> None:
    gw.client().messages.create(**ASK)  # type: ignore[arg-type]
    (info,) = gw.keys.list("alice")
    gw.keys.revoke(info.key_id)
    with pytest.raises(anthropic.AuthenticationError):
        gw.client().messages.create(**ASK)  # type: ignore[arg-type]
    assert len(gw.double.requests) == 1


def test_a_bearer_token_works_too(gw: Gateway) -> None:
    response = httpx.post(f"{gw.url}/v1/messages", json=ASK, headers={"authorization": f"Bearer {gw.key}"})
    assert response.status_code == 200 and response.json()["type"] == "message"
    assert httpx.post(f"{gw.url}/v1/messages", json=ASK).status_code == 401


def test_a_suspended_user_gets_403_before_the_upstream_sees_anything(gw: Gateway) -> None:
    gw.guard.suspend("alice", reason="test")
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        gw.client().messages.create(**ASK)  # type: ignore[arg-type]
    assert info.value.body["error"]["type"] == "user_suspended"  # type: ignore[index]
    assert gw.double.requests == []


@pytest.mark.parametrize("status", [529, 500, 400, 429])
def test_upstream_errors_pass_through_with_status_and_shape(gw: Gateway, status: int) -> None:
    gw.double.messages.error(status, message="upstream says no", headers={"retry-after": "7"})
    with pytest.raises(anthropic.APIStatusError) as info:
        gw.client().messages.create(**ASK)  # type: ignore[arg-type]
    error = info.value
    assert error.status_code == status and error.body["error"]["message"] == "upstream says no"  # type: ignore[index]
    assert error.body["type"] == "error" and error.response.headers["retry-after"] == "7"  # type: ignore[index]
    if status == 529:
        assert error.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    (sent,) = gw.double.requests
    assert error.request_id == sent.request_id
    gw.guard.audit.flush()
    (record,) = gw.guard.audit.find(anthropic_request_id=sent.request_id)
    assert record.status == status and f"upstream_error:{status}" in record.reasons


def test_count_tokens_is_forwarded(gw: Gateway) -> None:
    counted = gw.client().messages.count_tokens(model=MODEL, messages=ASK["messages"])  # type: ignore[arg-type]
    (sent,) = gw.double.requests_to("/v1/messages/count_tokens")
    assert counted.input_tokens == len(sent.raw) // 4 + 1
    assert sent.headers["x-api-key"] == UPSTREAM_KEY and "metadata" not in sent.body
    with pytest.raises(anthropic.AuthenticationError):
        gw.client("nope").messages.count_tokens(model=MODEL, messages=ASK["messages"])  # type: ignore[arg-type]


def test_count_tokens_refuses_a_suspended_user_without_calling_the_upstream(gw: Gateway) -> None:
    gw.guard.suspend("alice", reason="test", until=time.time() + 2 * 86_400)
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        gw.client().messages.count_tokens(model=MODEL, messages=ASK["messages"])  # type: ignore[arg-type]
    assert info.value.body["error"]["type"] == "user_suspended"  # type: ignore[index]
    assert int(info.value.response.headers["retry-after"]) > 86_400
    assert gw.double.requests_to("/v1/messages/count_tokens") == []
    gw.guard.audit.flush()
    (record,) = gw.guard.audit.find(user_id="alice")
    assert (record.outcome, record.surface, record.status) == ("user_suspended", "/v1/messages/count_tokens", 403)
    gw.guard.reinstate("alice")
    assert gw.client().messages.count_tokens(model=MODEL, messages=ASK["messages"]).input_tokens > 0  # type: ignore[arg-type]
    gw.guard.audit.flush()
    assert len(gw.guard.audit.find(user_id="alice")) == 1  # an allowed count leaves no record


def test_count_tokens_answers_503_when_the_store_cannot_be_read(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    def store_down(user_hash: str, **kwargs: object) -> object:
        raise StoreError("connection refused", transient=True)

    monkeypatch.setattr(gw.guard.store, "count_strikes", store_down)  # the exact strike count is read
    with pytest.raises(anthropic.InternalServerError) as info:
        gw.client().messages.count_tokens(model=MODEL, messages=ASK["messages"])  # type: ignore[arg-type]
    assert info.value.status_code == 503 and info.value.body["error"]["type"] == "safeguards_unavailable"  # type: ignore[index]
    assert info.value.response.headers["retry-after"] == "1"
    assert gw.double.requests_to("/v1/messages/count_tokens") == []
    gw.guard.audit.flush()
    (record,) = gw.guard.audit.find(user_id="alice")
    assert (record.outcome, record.status) == ("safeguards_unavailable", 503)


@pytest.fixture
def output_moderated(make_guard: MakeGuard, messages_double: MessagesDouble) -> Iterator[Gateway]:
    """A gateway whose policy moderates Claude's answers too (``[moderation] output = true``)."""
    yield from start(make_guard, messages_double, {"moderation": {"rules": RULES, "output": True}})


FLAGGED_ANSWER = "Sure. The first step of nerve agent synthesis is one you should never take."


def test_a_flagged_answer_is_withheld_with_403_and_queued_without_a_strike(output_moderated: Gateway) -> None:
    gw = output_moderated
    gw.double.messages.text(FLAGGED_ANSWER)
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        gw.client().messages.create(**ASK)  # type: ignore[arg-type]
    assert info.value.body["error"]["type"] == "content_flagged"  # type: ignore[index]
    assert "nerve" not in json.dumps(info.value.body)  # the answer itself never reaches the client
    gw.guard.audit.flush()
    (record,) = gw.guard.audit.find(user_id="alice")
    assert (record.outcome, record.status) == ("content_flagged", 403) and record.message_id  # linked all the same
    (item,) = gw.guard.store.review_items()
    assert item.explanation == "output" and item.strike_id is None
    assert gw.guard.status("alice").strikes == 0
    gw.double.messages.text("Paris.")
    assert gw.client().messages.create(**ASK).content[0].text == "Paris."  # type: ignore[arg-type, union-attr]


def test_a_flagged_stream_ends_in_an_error_event_and_the_upstream_is_closed(output_moderated: Gateway) -> None:
    gw = output_moderated
    harmless = "word " * 120  # more than one 512-character window passes before the flag
    release = threading.Event()  # the upstream holds its last events until released
    gw.double.messages.text(harmless + FLAGGED_ANSWER + " More text follows" + " and more" * 100, hold=release)
    seen: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as info,  # the error comes mid-stream
        gw.client().messages.stream(**ASK) as stream,  # type: ignore[arg-type]
    ):
        seen.extend(stream.text_stream)
    assert info.value.body["error"]["type"] == "content_flagged"  # type: ignore[index]
    relayed = "".join(seen)
    # windows of 512 characters are judged as they fill, so at most one window passes before
    # the cut: the flag sits in the second window, and nothing from its end on is relayed
    assert relayed.startswith("word word") and len(relayed) < 2 * 512 and relayed.count("and more") < 100
    assert gw.double.client_gone.wait(10)  # the gateway closed the upstream stream: generation stops
    release.set()
    gw.guard.audit.flush()
    (record,) = gw.guard.audit.find(user_id="alice")
    assert (record.outcome, record.status) == ("content_flagged", 403)
    (item,) = gw.guard.store.review_items()
    assert item.explanation == "output" and item.strike_id is None


def test_the_end_of_a_streamed_answer_is_judged_before_the_message_ends(output_moderated: Gateway) -> None:
    gw = output_moderated
    gw.double.messages.text(FLAGGED_ANSWER)  # shorter than a window: judged when its text has ended
    with pytest.raises(anthropic.APIStatusError) as info, gw.client().messages.stream(**ASK) as stream:  # type: ignore[arg-type]
        for _ in stream:
            pass
    assert info.value.body["error"]["type"] == "content_flagged"  # type: ignore[index]
    gw.double.messages.text("A clean answer, streamed to its end.")
    with gw.client().messages.stream(**ASK) as stream:  # type: ignore[arg-type]
        assert "".join(stream.text_stream) == "A clean answer, streamed to its end."
        assert stream.get_final_message().stop_reason == "end_turn"


def test_anthropic_headers_pass_through(gw: Gateway) -> None:
    beta = "interleaved-thinking-2025-05-14"  # allowed by default ([gateway] betas)
    gw.client(default_headers={"anthropic-beta": beta}).messages.create(**ASK)  # type: ignore[arg-type]
    (sent,) = gw.double.requests
    assert sent.headers["anthropic-beta"] == beta and sent.headers["anthropic-version"]


def test_unknown_paths_answer_in_anthropic_shape(gw: Gateway) -> None:
    response = httpx.get(f"{gw.url}/v1/models", headers={"x-api-key": gw.key})
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"
    assert gw.double.requests == []


def test_secrets_and_raw_ids_never_reach_the_logs(gw: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gw.double.messages.error(529)
    with pytest.raises(anthropic.APIStatusError):
        gw.client().messages.create(**ASK)  # type: ignore[arg-type]
    gw.client().messages.create(**ASK)  # type: ignore[arg-type]
    with pytest.raises(anthropic.AuthenticationError):
        gw.client("agk_bad").messages.create(**ASK)  # type: ignore[arg-type]
    logged = caplog.text + repr(gw.guard.policy)
    assert UPSTREAM_KEY not in logged and gw.key not in logged and "alice" not in logged


@pytest.fixture
def moderated(make_guard: MakeGuard, messages_double: MessagesDouble) -> Iterator[Gateway]:
    yield from start(make_guard, messages_double, {"moderation": {"rules": RULES, "mode": "parallel"}})


def test_parallel_moderation_holds_the_stream_until_the_verdict(moderated: Gateway) -> None:
    gw = moderated
    flagged = {**ASK, "messages": [{"role": "user", "content": "explain nerve agent synthesis"}]}
    with pytest.raises(anthropic.PermissionDeniedError) as info, gw.client().messages.stream(**flagged) as stream:  # type: ignore[arg-type]
        list(stream)
    assert info.value.body["error"]["type"] == "content_flagged"  # type: ignore[index]
    assert gw.guard.status("alice").strikes == 1
    with gw.client().messages.stream(**ASK) as stream:  # type: ignore[arg-type]
        assert "".join(stream.text_stream) == "echo: Capital of France?"


def test_capture_keeps_prompt_and_streamed_completion(
    make_guard: MakeGuard, messages_double: MessagesDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aupguard import generate_key_entry

    monkeypatch.setenv("TEST_CAPTURE_KEY", generate_key_entry("c1"))
    for gw in start(make_guard, messages_double, {"capture": {"enabled": True, "key_env": "TEST_CAPTURE_KEY"}}):
        gw.double.messages.text("Paris, captured.")
        with gw.client().messages.stream(**ASK) as stream:  # type: ignore[arg-type]
            stream.until_done()
        gw.guard.audit.flush()
        captured = {c.kind: c.text for c in gw.guard.capture.export()}
        assert captured == {"prompt": "Capital of France?", "completion": "Paris, captured."}


@pytest.mark.parametrize("stream", [False, True])
def test_claudes_refusal_through_the_gateway_is_a_safety_signal(
    make_guard: MakeGuard, messages_double: MessagesDouble, stream: bool
) -> None:
    for gw in start(make_guard, messages_double, {"moderation": {"refusals": "strike"}}):
        gw.double.messages.refusal(category="cyber")
        if stream:
            with gw.client().messages.stream(**ASK) as events:  # type: ignore[arg-type]
                message = events.get_final_message()
        else:
            message = gw.client().messages.create(**ASK)  # type: ignore[arg-type]
        assert message.stop_reason == "refusal"
        gw.guard.audit.flush()
        (item,) = [e.item for e in gw.guard.store.queue_page()]
        assert item.categories == ("cyber",) and item.moderators == ("claude-refusal",)
        assert gw.guard.status("alice").strikes == 1
        (record,) = gw.guard.audit.find(message_id=message.id)
        assert "claude_refusal:cyber" in record.reasons


def test_upstream_cookies_are_neither_kept_nor_passed_on(gw: Gateway) -> None:
    from aupguard.testing import Reply

    gw.double.messages.push(Reply(text="first", headers={"set-cookie": "__cf_bm=abc; Path=/"}))
    first = httpx.post(f"{gw.url}/v1/messages", json=ASK, headers={"x-api-key": gw.key})
    assert first.status_code == 200 and "set-cookie" not in first.headers
    gw.client().messages.create(**ASK)  # type: ignore[arg-type]
    assert ["cookie" in sent.headers for sent in gw.double.requests] == [False, False]  # one user's cookie, no other's


def test_an_upstream_answer_with_odd_ids_is_passed_on_and_recorded_without_them(gw: Gateway) -> None:
    """Found by fuzzing: the double echoes an empty model name; the audit log cannot hold it,
    so the record leaves it out instead of the gateway failing the answer."""
    gw.double.messages.text("fine")
    raw = gw.client().messages.with_raw_response.create(**{**ASK, "model": ""})  # type: ignore[arg-type]
    assert raw.http_response.status_code == 200
    gw.guard.audit.flush()
    (record,) = gw.guard.audit.find(request_id=raw.headers["aupguard-request-id"])
    assert record.outcome == "allowed" and record.model is None and record.anthropic_request_id is not None


def test_an_upstream_request_id_the_log_cannot_hold_is_not_linked(gw: Gateway) -> None:
    from aupguard.testing import Reply

    gw.double.messages.push(Reply(text="fine", headers={"request-id": "r" * 300}))
    raw = gw.client().messages.with_raw_response.create(**ASK)  # type: ignore[arg-type]
    assert raw.http_response.status_code == 200
    gw.guard.audit.flush()
    (record,) = gw.guard.audit.find(request_id=raw.headers["aupguard-request-id"])
    assert record.outcome == "allowed" and record.anthropic_request_id is None and record.message_id is not None

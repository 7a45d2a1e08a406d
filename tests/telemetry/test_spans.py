"""OpenTelemetry spans with the real SDK and its in-memory exporter: a span per guarded call
(refused ones too), per remote moderator call, and per instrumented Claude call (GenAI
conventions); never a raw user id, prompt or completion text unless ``[otel] capture_content``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.testclient import TestClient

from aupguard import Refused
from aupguard.telemetry import active_tracer, use_tracer_provider
from aupguard.testing import MessagesDouble
from tests.conftest import MakeGuard
from tests.integrations.aupguard_asgi import test_middleware as test_asgi

RAW_USER = "alice@example.com"
PROMPT = "what is the capital of burkina faso, unique-prompt-9c1d"
ANSWER = "ouagadougou, unique-answer-41aa"
BLOCKED = "please explain nerve agent synthesis to me"
RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]
MODEL = "claude-sonnet-5-5"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        use_tracer_provider(None)
        provider.shutdown()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def everything_recorded(exporter: InMemorySpanExporter) -> str:
    """Every attribute, event and status of every span, as one text to search."""
    out = []
    for span in exporter.get_finished_spans():
        out.append(span.name)
        out.append(json.dumps({k: v for k, v in (span.attributes or {}).items()}, default=list, ensure_ascii=False))
        out += [json.dumps(dict(e.attributes or {}), default=list, ensure_ascii=False) for e in span.events]
        out.append(str(span.status.description))
    return "\n".join(out)


def assert_nothing_private(exporter: InMemorySpanExporter, *texts: str) -> None:
    recorded = everything_recorded(exporter)
    assert exporter.get_finished_spans()
    for text in (RAW_USER, *texts):
        assert text not in recorded


# -- the guarded call ------------------------------------------------------------------------


def test_an_allowed_call_has_a_span_with_the_decision(make_guard: MakeGuard, spans: InMemorySpanExporter) -> None:
    guard = make_guard({"moderation": {"rules": RULES}, "limits": {"default": "5/minute"}})
    decision = guard.check(RAW_USER, surface="/v1/chat", prompt=PROMPT)
    (span,) = named(spans, "aupguard.check")
    attributes = dict(span.attributes or {})
    assert attributes["aupguard.decision"] == "allowed" and attributes["aupguard.status_code"] == 200
    assert attributes["aupguard.request_id"] == decision.request_id
    assert attributes["aupguard.user.hash"] == attributes["enduser.pseudo.id"] == guard.hash_user(RAW_USER)
    assert (attributes["aupguard.surface"], attributes["aupguard.level"]) == ("/v1/chat", "ok")
    assert (attributes["aupguard.rate_limit.limit"], attributes["aupguard.rate_limit.remaining"]) == (5, 4)
    assert attributes["aupguard.moderation.action"] == "none"
    assert list(attributes["aupguard.moderation.ran"]) == ["rules"]  # type: ignore[arg-type]
    assert len(attributes["aupguard.moderation.latency_ms"]) == 1  # type: ignore[arg-type]
    assert span.status.status_code is StatusCode.UNSET
    assert_nothing_private(spans, PROMPT)


def test_a_blocked_call_has_a_span_saying_refused_and_why(make_guard: MakeGuard, spans: InMemorySpanExporter) -> None:
    guard = make_guard({"moderation": {"rules": RULES}})
    decision = guard.check(RAW_USER, prompt=BLOCKED)
    assert decision.error == "content_flagged"
    (span,) = named(spans, "aupguard.check")
    attributes = dict(span.attributes or {})
    assert attributes["aupguard.decision"] == "refused" and attributes["aupguard.status_code"] == 403
    assert attributes["aupguard.error"] == attributes["error.type"] == "content_flagged"
    assert list(attributes["aupguard.moderation.categories"]) == ["weapons"]  # type: ignore[arg-type]
    assert list(attributes["aupguard.moderation.flagged_by"]) == ["rules"]  # type: ignore[arg-type]
    assert attributes["aupguard.moderation.action"] == "block"
    assert "flagged:weapons" in attributes["aupguard.reasons"]  # type: ignore[operator]
    assert span.status.status_code is StatusCode.ERROR and span.status.description == "refused: content_flagged"
    assert_nothing_private(spans, BLOCKED, "nerve agent")


def test_refusals_before_the_engine_and_without_an_account_have_spans(
    make_guard: MakeGuard, spans: InMemorySpanExporter
) -> None:
    guard = make_guard()
    guard.check(None, surface="/v1/chat")
    guard.refusal(RAW_USER, "/v1/upload", "request_too_large", "too big")
    anonymous, too_large = named(spans, "aupguard.check")
    assert dict(anonymous.attributes or {})["error.type"] == "authentication_required"
    assert "aupguard.user.hash" not in (anonymous.attributes or {})
    attributes = dict(too_large.attributes or {})
    assert (attributes["error.type"], attributes["aupguard.surface"]) == ("request_too_large", "/v1/upload")
    assert attributes["aupguard.user.hash"] == guard.hash_user(RAW_USER)
    assert_nothing_private(spans)


def test_asgi_requests_have_spans_under_the_callers_trace(make_guard: MakeGuard, spans: InMemorySpanExporter) -> None:
    guard = make_guard(test_asgi.POLICY)
    guard.accept_terms(RAW_USER, "v1")
    with TestClient(test_asgi.build_app(guard, test_asgi.Probe())) as client:
        ok = client.post("/v1/chat", json={"prompt": PROMPT}, headers={"x-user": RAW_USER})
        bad = client.post("/v1/chat", content=b"{not json", headers={"x-user": RAW_USER})
        flagged = client.post("/v1/chat", json={"prompt": BLOCKED}, headers={"x-user": RAW_USER})
    assert (ok.status_code, bad.status_code, flagged.status_code) == (200, 400, 403)
    checks = named(spans, "aupguard.check")
    outcomes = [dict(s.attributes or {}).get("error.type", "allowed") for s in checks]
    assert outcomes == ["allowed", "invalid_request_error", "content_flagged"]
    assert all(dict(s.attributes or {})["aupguard.surface"] == "/v1/chat" for s in checks)
    assert_nothing_private(spans, PROMPT, BLOCKED)


def test_the_prompt_is_recorded_only_with_capture_content(make_guard: MakeGuard, spans: InMemorySpanExporter) -> None:
    guard = make_guard({"otel": {"capture_content": True}})
    guard.check(RAW_USER, prompt=PROMPT)
    (span,) = named(spans, "aupguard.check")
    assert dict(span.attributes or {})["aupguard.prompt"] == PROMPT
    assert RAW_USER not in everything_recorded(spans)  # capture_content is about text, never the raw id


# -- remote moderators -----------------------------------------------------------------------


def test_remote_moderator_calls_are_client_spans_inside_the_check(
    make_guard: MakeGuard, messages_double: MessagesDouble, spans: InMemorySpanExporter
) -> None:
    guard = make_guard({"moderation": {"openai": {"url": messages_double.moderations_url}, "retries": 1}})
    messages_double.moderations.verdict(True, ["harassment"], {"harassment": 0.97})
    guard.check(RAW_USER, prompt="you are worthless, unique-insult-5b2e")
    (moderator,) = named(spans, "aupguard.moderator openai")
    (check,) = named(spans, "aupguard.check")
    assert moderator.kind is SpanKind.CLIENT and moderator.parent is not None
    assert moderator.parent.span_id == check.context.span_id
    attributes = dict(moderator.attributes or {})
    assert attributes["aupguard.moderator.flagged"] is True
    assert list(attributes["aupguard.moderator.categories"]) == ["harassment"]  # type: ignore[arg-type]
    assert attributes["server.address"] == "127.0.0.1"
    assert list(dict(check.attributes or {})["aupguard.moderation.ran"]) == ["openai"]  # type: ignore[arg-type]
    messages_double.moderations.error(500)
    messages_double.moderations.error(503)
    guard.check(RAW_USER, prompt="second text, unique-second-8e0f")
    failed = named(spans, "aupguard.moderator openai")[-1]
    assert dict(failed.attributes or {})["error.type"] == "http 503"
    assert failed.status.status_code is StatusCode.ERROR
    assert [dict(e.attributes or {})["error.type"] for e in failed.events] == ["http 500", "http 503"]
    assert_nothing_private(spans, "unique-insult-5b2e", "unique-second-8e0f")


def test_claude_moderator_calls_are_spans_in_async_code(
    make_guard: MakeGuard, messages_double: MessagesDouble, spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "test-key")
    guard = make_guard({"moderation": {"claude": {"base_url": messages_double.url,
                                                  "api_key_env": "TEST_ANTHROPIC_KEY"}}})  # fmt: skip
    messages_double.messages.text('{"violation": false, "categories": [], "explanation": "fine"}')
    decision = asyncio.run(guard.acheck(RAW_USER, prompt=PROMPT))
    assert decision.allowed
    (moderator,) = named(spans, "aupguard.moderator claude")
    assert dict(moderator.attributes or {})["aupguard.moderator.flagged"] is False
    assert dict(moderator.attributes or {})["aupguard.moderator.type"] == "ClaudeModerator"
    (check,) = named(spans, "aupguard.check")
    assert moderator.parent is not None and moderator.parent.span_id == check.context.span_id
    assert_nothing_private(spans, PROMPT)


def test_a_parallel_verdict_has_its_own_screen_span(
    make_guard: MakeGuard, messages_double: MessagesDouble, spans: InMemorySpanExporter
) -> None:
    guard = make_guard({"moderation": {"openai": {"url": messages_double.moderations_url}, "mode": "parallel"}})
    messages_double.moderations.verdict(True, ["harassment"], {"harassment": 0.97})

    async def run() -> str | None:
        pending = await guard.acheck(RAW_USER, prompt=PROMPT, defer_moderation=True)
        assert pending.moderation_pending
        return (await guard.ascreen(pending)).error

    assert asyncio.run(run()) == "content_flagged"
    (check,) = named(spans, "aupguard.check")
    (screen,) = named(spans, "aupguard.screen")
    (moderator,) = named(spans, "aupguard.moderator openai")
    assert dict(check.attributes or {})["aupguard.moderation.pending"] is True
    assert dict(screen.attributes or {})["error.type"] == "content_flagged"
    assert moderator.parent is not None and moderator.parent.span_id == screen.context.span_id
    assert_nothing_private(spans, PROMPT)


# -- the instrumented client -----------------------------------------------------------------


def ask(client: Any, text: str = PROMPT, **kw: Any) -> Any:
    return client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": text}], **kw)


def test_instrumented_calls_are_genai_client_spans(
    make_guard: MakeGuard, messages_double: MessagesDouble, spans: InMemorySpanExporter
) -> None:
    guard = make_guard()
    client = guard.instrument(messages_double.client())
    messages_double.messages.text(ANSWER)
    with guard.as_user(RAW_USER):
        message = ask(client, system="You are terse, unique-system-2d7c")
    (span,) = named(spans, f"chat {MODEL}")
    (check,) = named(spans, "aupguard.check")
    attributes = dict(span.attributes or {})
    assert span.kind is SpanKind.CLIENT
    assert (attributes["gen_ai.operation.name"], attributes["gen_ai.provider.name"]) == ("chat", "anthropic")
    assert (attributes["gen_ai.request.model"], attributes["gen_ai.request.max_tokens"]) == (MODEL, 50)
    assert attributes["gen_ai.response.id"] == message.id
    assert attributes["gen_ai.usage.input_tokens"] == message.usage.input_tokens
    assert attributes["gen_ai.usage.output_tokens"] == message.usage.output_tokens
    assert list(attributes["gen_ai.response.finish_reasons"]) == ["end_turn"]  # type: ignore[arg-type]
    assert attributes["aupguard.request_id"] == dict(check.attributes or {})["aupguard.request_id"]
    assert dict(check.attributes or {})["aupguard.surface"] == "anthropic"
    assert_nothing_private(spans, PROMPT, ANSWER, "unique-system-2d7c")


def test_streams_end_their_span_when_read_and_async_works_too(
    make_guard: MakeGuard, messages_double: MessagesDouble, spans: InMemorySpanExporter
) -> None:
    guard = make_guard()
    aclient = guard.instrument(messages_double.async_client())

    async def run() -> str:
        with guard.as_user(RAW_USER):
            messages_double.messages.text(ANSWER)
            async with aclient.messages.stream(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": PROMPT}]
            ) as stream:
                text = "".join([chunk async for chunk in stream.text_stream])
                final = await stream.get_final_message()
        return f"{final.id} {text}"

    message_id, text = asyncio.run(run()).split(" ", 1)
    assert text == ANSWER
    (span,) = named(spans, f"chat {MODEL}")
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.response.id"] == message_id and attributes["gen_ai.usage.output_tokens"] > 0  # type: ignore[operator]
    assert_nothing_private(spans, PROMPT, ANSWER)


def test_upstream_errors_and_refused_calls(
    make_guard: MakeGuard, messages_double: MessagesDouble, spans: InMemorySpanExporter
) -> None:
    guard = make_guard({"moderation": {"rules": RULES}})
    client = guard.instrument(messages_double.client(max_retries=0))
    messages_double.messages.error(529, "overloaded_error")
    with guard.as_user(RAW_USER), pytest.raises(Exception, match=r"529|overloaded"):
        ask(client)
    (span,) = named(spans, f"chat {MODEL}")
    assert dict(span.attributes or {})["error.type"] == "529" and span.status.status_code is StatusCode.ERROR
    with guard.as_user(RAW_USER), pytest.raises(Refused):
        ask(client, BLOCKED)
    assert len(named(spans, f"chat {MODEL}")) == 1  # a refused call never reaches Claude: no client span
    refused = named(spans, "aupguard.check")[-1]
    assert dict(refused.attributes or {})["error.type"] == "content_flagged"
    assert_nothing_private(spans, PROMPT, BLOCKED)


def test_messages_are_recorded_only_with_capture_content(
    make_guard: MakeGuard, messages_double: MessagesDouble, spans: InMemorySpanExporter
) -> None:
    guard = make_guard({"otel": {"capture_content": True}})
    client = guard.instrument(messages_double.client())
    messages_double.messages.text(ANSWER)
    with guard.as_user(RAW_USER):
        ask(client, system="You are terse.")
    (span,) = named(spans, f"chat {MODEL}")
    attributes = dict(span.attributes or {})
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}
    ]
    assert json.loads(str(attributes["gen_ai.system_instructions"])) == [{"type": "text", "content": "You are terse."}]
    output = json.loads(str(attributes["gen_ai.output.messages"]))
    assert output[0]["parts"] == [{"type": "text", "content": ANSWER}] and output[0]["finish_reason"] == "end_turn"
    assert RAW_USER not in everything_recorded(spans)


# -- no provider, no package -----------------------------------------------------------------


def test_no_tracer_without_a_provider(make_guard: MakeGuard) -> None:
    assert active_tracer() is None  # the API's proxy provider: nothing would be recorded
    assert make_guard().check(RAW_USER).allowed


def test_everything_works_without_opentelemetry_installed(tmp_path: Any) -> None:
    script = f"""
import sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
from aupguard import Safeguards, Policy
from aupguard.telemetry import active_tracer
assert active_tracer() is None
guard = Safeguards(Policy.from_mapping({{"moderation": {{"rules": {RULES!r}}}}}, env={{}}),
                   store="sqlite:///{tmp_path / "a.db"}")
assert guard.check("u-1", prompt="hello").allowed
assert guard.check("u-1", prompt={BLOCKED!r}).error == "content_flagged"
guard.close()
print("ok")
"""
    env = {"AUPGUARD_HASH_KEY": "k1:" + "A" * 43, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_the_otel_table_is_validated() -> None:
    from aupguard import Policy
    from aupguard.errors import PolicyError

    assert Policy().otel.capture_content is False
    with pytest.raises(PolicyError, match=r"otel\.capture_content"):
        Policy.from_mapping({"otel": {"capture_content": "yes please"}}, env={})
    with pytest.raises(PolicyError, match=r"otel\.sample"):
        Policy.from_mapping({"otel": {"sample": 1}}, env={})

"""``[enforcement] mode = "monitor"``: every check runs and is recorded, nothing the policy
decides is refused, answers say ``Aupguard-Would-Refuse``, strikes are recorded as monitored
(they never climb the ladder), review items are still queued; malformed bodies stay refused."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from aupguard import Safeguards
from aupguard.engine.monitor import MONITORED_STRIKE, would_refuse
from aupguard.errors import PolicyError
from aupguard.review.report import violation_report
from tests.conftest import MakeGuard
from tests.integrations.aupguard_asgi import test_middleware as test_asgi

RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]
FLAGGED = "explain nerve agent synthesis"


def monitoring(make_guard: MakeGuard, **tables: object) -> Safeguards:
    policy = {"enforcement": {"mode": "monitor"}, "moderation": {"rules": RULES}, **tables}
    return make_guard(policy)


def test_a_flag_is_recorded_and_queued_but_not_enforced(make_guard: MakeGuard) -> None:
    guard = monitoring(make_guard, ladder={"warn": 1, "throttle": 2, "suspend": 3})
    decisions = [guard.check("u-1", prompt=FLAGGED) for _ in range(5)]
    assert all(d.allowed and d.status == 200 for d in decisions)
    assert {would_refuse(d) for d in decisions} == {"content_flagged"}
    assert decisions[0].headers()["Aupguard-Would-Refuse"] == "content_flagged"
    status = guard.status("u-1")
    assert (status.level.value, status.strikes) == ("ok", 0)  # monitored strikes do not climb the ladder
    strikes = guard.strikes("u-1")
    assert len(strikes) == 5 and all(s.void_reason == MONITORED_STRIKE for s in strikes)
    assert len(guard.store.review_items()) == 5  # the reviewers still see every flag
    guard.audit.flush()
    (record,) = guard.audit.find(request_id=decisions[0].request_id)
    assert record.outcome == "allowed" and "would_refuse:content_flagged" in record.reasons
    (row,) = violation_report(guard)
    assert (row.level, row.strikes, row.monitored, row.would_level) == ("ok", 0, 5, "suspended")


def test_a_suspended_user_is_still_counted_and_screened(make_guard: MakeGuard) -> None:
    guard = monitoring(make_guard, limits={"default": "3/minute"})
    guard.suspend("u-2", reason="test")
    first = guard.check("u-2", prompt="hello")
    assert first.allowed and would_refuse(first) == "user_suspended" and first.remaining == 2
    flagged = guard.check("u-2", prompt=FLAGGED)
    assert flagged.allowed and "would_refuse:content_flagged" in flagged.reasons
    assert would_refuse(flagged) == "user_suspended"  # the first check that would have refused
    guard.check("u-2", prompt="hello")
    limited = guard.check("u-2", prompt="hello")
    assert limited.allowed and limited.remaining == 0 and "would_refuse:rate_limited" in limited.reasons


def test_account_terms_and_prompt_policy_refusals_are_let_through(make_guard: MakeGuard) -> None:
    guard = monitoring(
        make_guard,
        terms={"version": "v1"},
        prompts={"mode": "allowlist", "allowlist": ["What is the capital of France?"]},
    )
    anonymous = guard.check(None, prompt="What is the capital of France?")
    assert anonymous.allowed and would_refuse(anonymous) == "authentication_required"
    assert anonymous.user_hash is None
    no_terms = guard.check("u-3", prompt="What is the capital of France?")
    assert no_terms.allowed and would_refuse(no_terms) == "terms_not_accepted"
    guard.accept_terms("u-3", "v1")
    off_list = guard.check("u-3", prompt=FLAGGED)  # not allowlisted, and flagged: both recorded
    assert off_list.allowed and would_refuse(off_list) == "prompt_not_allowed"
    assert "would_refuse:content_flagged" in off_list.reasons
    assert off_list.prompt is not None and off_list.prompt.text == FLAGGED  # screened as the app's own call


def test_enforce_mode_is_the_default_and_the_mode_is_validated(make_guard: MakeGuard) -> None:
    guard = make_guard({"moderation": {"rules": RULES}})
    refused = guard.check("u-4", prompt=FLAGGED)
    assert (refused.status, refused.error) == (403, "content_flagged")
    assert "Aupguard-Would-Refuse" not in refused.headers() and guard.status("u-4").strikes == 1
    from aupguard import Policy

    with pytest.raises(PolicyError, match=r"enforcement\.mode"):
        Policy.from_mapping({"enforcement": {"mode": "observe"}}, env={})


def test_asgi_answers_carry_the_header_and_bad_bodies_stay_refused(make_guard: MakeGuard) -> None:
    guard = monitoring(make_guard, terms={"version": "v1"})
    guard.accept_terms("alice", "v1")
    with TestClient(test_asgi.build_app(guard, test_asgi.Probe())) as client:
        flagged = client.post("/v1/chat", json={"prompt": FLAGGED}, headers={"x-user": "alice"})
        bad = client.post("/v1/chat", content=b"{not json", headers={"x-user": "alice"})
        anonymous = client.post("/v1/chat", json={"prompt": "hi"})
    assert flagged.status_code == 200 and flagged.headers["aupguard-would-refuse"] == "content_flagged"
    assert flagged.json()["echo"] == {"prompt": FLAGGED}  # the app answered
    assert bad.status_code == 400  # a body that cannot be read is refused in both modes
    assert anonymous.status_code == 200 and anonymous.headers["aupguard-would-refuse"] == "authentication_required"


def test_doctor_says_which_mode_is_on(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from aupguard.cli.main import main

    folder = Path(str(tmp_path))
    for mode in ("monitor", "enforce"):
        policy = folder / f"{mode}.toml"
        policy.write_text(f'[enforcement]\nmode = "{mode}"\n', encoding="utf-8")
        main(["--policy", str(policy), "--store", "memory://", "doctor"])
        out = capsys.readouterr().out
        assert ("MONITOR mode" in out) is (mode == "monitor")
        assert ("Enforcement: enforce mode" in out) is (mode == "enforce")


def test_the_check_span_says_what_would_have_been_refused(make_guard: MakeGuard) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from aupguard.telemetry import use_tracer_provider

    exporter, provider = InMemorySpanExporter(), TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_tracer_provider(provider)
    try:
        monitoring(make_guard).check("u-5", prompt=FLAGGED)
    finally:
        use_tracer_provider(None)
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["aupguard.decision"] == "allowed"
    assert list(attributes["aupguard.would_refuse"]) == ["content_flagged"]  # type: ignore[arg-type]


# -- per adapter: one app, one mount or one route at a time ---------------------------------


def _enforcing(make_guard: MakeGuard) -> Safeguards:
    return make_guard({"moderation": {"rules": RULES}, "ladder": {"warn": 1, "throttle": 2, "suspend": 3}})


def test_a_call_can_be_monitored_under_an_enforcing_policy_and_the_reverse(make_guard: MakeGuard) -> None:
    guard = _enforcing(make_guard)
    monitored = [guard.check("u-5", prompt=FLAGGED, enforcement="monitor") for _ in range(4)]
    assert all(d.allowed and would_refuse(d) == "content_flagged" for d in monitored)
    assert guard.status("u-5").strikes == 0  # the monitored strikes never count
    assert guard.check("u-5", prompt=FLAGGED).error == "content_flagged"  # the policy's own mode still enforces
    assert guard.status("u-5").strikes == 1
    watching = monitoring(make_guard)
    assert watching.check("u-6", prompt=FLAGGED, enforcement="enforce").error == "content_flagged"
    with pytest.raises(ValueError, match="enforcement"):
        guard.check("u-5", enforcement="observe")


def test_a_parallel_verdict_follows_the_mode_of_its_call(make_guard: MakeGuard) -> None:
    guard = make_guard({"moderation": {"rules": RULES, "mode": "parallel"}})
    pending = guard.check("u-7", prompt=FLAGGED, defer_moderation=True, enforcement="monitor")
    assert pending.moderation_pending
    screened = guard.screen(pending)
    assert screened.allowed and "would_refuse:content_flagged" in screened.reasons
    assert guard.status("u-7").strikes == 0


def test_the_asgi_middleware_takes_an_enforcement_of_its_own(make_guard: MakeGuard) -> None:
    guard = _enforcing(make_guard)
    with TestClient(test_asgi.build_app(guard, test_asgi.Probe(), enforcement="monitor")) as client:
        flagged = client.post("/v1/chat", json={"prompt": FLAGGED}, headers={"x-user": "alice"})
    assert flagged.status_code == 200 and flagged.headers["aupguard-would-refuse"] == "content_flagged"
    assert guard.status("alice").strikes == 0
    with TestClient(test_asgi.build_app(guard, test_asgi.Probe())) as client:  # the policy's mode elsewhere
        assert client.post("/v1/chat", json={"prompt": FLAGGED}, headers={"x-user": "alice"}).status_code == 403
    with pytest.raises(ValueError, match="enforcement"):
        test_asgi.build_app(guard, test_asgi.Probe(), enforcement="off").build_middleware_stack()


def test_the_flask_extension_takes_an_enforcement_per_app_and_per_view(make_guard: MakeGuard) -> None:
    from flask import Flask, jsonify

    from aupguard_flask import FlaskSafeguards

    guard = _enforcing(make_guard)
    app = Flask(__name__)
    ext = FlaskSafeguards(app, safeguards=guard, user_header="x-user", routes=["/enforced"])

    @app.post("/enforced")
    def enforced() -> object:
        return jsonify(ok=True)

    @app.post("/watched")
    @ext.guard(enforcement="monitor")
    def watched() -> object:
        return jsonify(ok=True)

    client = app.test_client()
    body, who = {"prompt": FLAGGED}, {"x-user": "bob"}
    watched_answer = client.post("/watched", json=body, headers=who)
    assert watched_answer.status_code == 200 and watched_answer.headers["Aupguard-Would-Refuse"] == "content_flagged"
    assert client.post("/enforced", json=body, headers=who).status_code == 403
    with pytest.raises(TypeError, match="enforcement"):
        FlaskSafeguards(Flask("other"), safeguards=guard, enforcement="observe")


def test_the_langchain_handler_takes_an_enforcement(make_guard: MakeGuard) -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from aupguard_langchain import SafeguardsCallbackHandler

    guard = _enforcing(make_guard)
    model = FakeListChatModel(responses=["fine"])
    handler = SafeguardsCallbackHandler(guard, enforcement="monitor")
    answer = model.invoke(FLAGGED, config={"callbacks": [handler], "metadata": {"user_id": "carol"}})
    assert answer.content == "fine" and guard.status("carol").strikes == 0
    with pytest.raises(ValueError, match="enforcement"):
        SafeguardsCallbackHandler(guard, enforcement="observe")


def test_the_fastapi_dependency_takes_an_enforcement(make_guard: MakeGuard) -> None:
    from fastapi import Depends, FastAPI

    from aupguard_fastapi import guard_dependency, install

    guard = _enforcing(make_guard)
    app = FastAPI()
    install(app)

    def current_user() -> str:
        return "dave"

    watched = guard_dependency(guard, user=Depends(current_user), enforcement="monitor")

    @app.post("/chat")
    async def chat(decision: object = Depends(watched)) -> dict[str, bool]:
        return {"ok": True}

    with TestClient(app) as client:
        answer = client.post("/chat", json={"prompt": FLAGGED})
    assert answer.status_code == 200 and answer.headers["aupguard-would-refuse"] == "content_flagged"
    assert guard.status("dave").strikes == 0
    with pytest.raises(ValueError, match="enforcement"):
        guard_dependency(guard, user=Depends(current_user), enforcement="observe")


def test_the_gateway_serves_a_monitored_flag_and_says_what_enforce_mode_would_do(
    make_guard: MakeGuard, messages_double: object
) -> None:
    """Through the gateway, in monitor mode: a flagged prompt reaches Claude and its answer
    carries ``Aupguard-Would-Refuse``; the strike is recorded as monitored; a malformed body is
    still a 400; a suspended user is still served, and said to be."""
    from tests.integrations.aupguard_gateway.test_app import start

    serving = start(make_guard, messages_double, {"enforcement": {"mode": "monitor"}, "moderation": {"rules": RULES}})  # type: ignore[arg-type]
    gateway = next(serving)  # the server runs while the generator is held
    try:
        _through_the_gateway(gateway)
    finally:
        serving.close()


def _through_the_gateway(gateway: Any) -> None:
    from tests.integrations.aupguard_gateway.test_app import ASK

    flagged = {**ASK, "messages": [{"role": "user", "content": FLAGGED}]}
    raw = gateway.client().messages.with_raw_response.create(**flagged)  # type: ignore[arg-type]
    assert raw.http_response.status_code == 200 and raw.headers["aupguard-would-refuse"] == "content_flagged"
    assert raw.parse().content  # Claude answered
    strikes = gateway.guard.strikes("alice")
    assert len(strikes) == 1 and strikes[0].void_reason == MONITORED_STRIKE
    gateway.guard.suspend("alice", reason="test")
    served = gateway.client().messages.with_raw_response.create(**ASK)  # type: ignore[arg-type]
    assert served.http_response.status_code == 200 and served.headers["aupguard-would-refuse"] == "user_suspended"
    import httpx

    bad = httpx.post(f"{gateway.url}/v1/messages", content=b"{not json",
                     headers={"x-api-key": gateway.key, "content-type": "application/json"})  # fmt: skip
    assert bad.status_code == 400

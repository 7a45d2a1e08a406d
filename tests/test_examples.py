"""The example chat services run, offline and against the local Messages-API double."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.fakes.messages_double import MessagesDouble

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(EXAMPLES))


def _json(response: Any) -> Any:
    """The JSON body of an httpx (Starlette test client) or werkzeug (Flask) response."""
    return response.get_json() if hasattr(response, "get_json") else response.json()


def user_headers(module: ModuleType, user: str) -> dict[str, str]:
    """How the example knows its user: a bearer token its own auth dependency checks
    (FastAPI), or the trusted ``x-user`` header of a service behind a gateway (the others)."""
    if hasattr(module, "token_for"):
        return {"authorization": f"Bearer {module.token_for(user)}"}
    return {"x-user": user}


@pytest.mark.parametrize("name", ["starlette_app", "fastapi_app", "flask_app"])
def test_offline_demo_answers_flags_and_suspends(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    module = load(name)
    guard = module.demo_guard(tmp_path)
    guard.suspend("mallory", reason="demo")
    app = module.build_app(guard)
    alice, mallory = user_headers(module, "alice"), user_headers(module, "mallory")
    with app.test_client() if name == "flask_app" else TestClient(app) as client:
        ok = client.post("/v1/chat", json={"prompt": "What is the capital of France?"}, headers=alice)
        assert ok.status_code == 200 and _json(ok)["text"].startswith("[offline stand-in model")
        flagged = client.post("/v1/chat", json={"prompt": "Explain nerve agent synthesis"}, headers=alice)
        assert (flagged.status_code, _json(flagged)["error"]["type"]) == (403, "content_flagged")
        suspended = client.post("/v1/chat", json={"prompt": "Hello"}, headers=mallory)
        assert (suspended.status_code, _json(suspended)["error"]["type"]) == (403, "user_suspended")
        assert client.post("/v1/chat", json={"prompt": "Hello"}).status_code == 401
    assert guard.status("alice").strikes == 1
    guard.close()


@pytest.mark.parametrize("name", ["fastapi_app", "flask_app"])
def test_with_an_api_key_the_example_calls_claude_with_the_hashed_user(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, messages_double: MessagesDouble
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", messages_double.url)
    module = load(name)
    guard = module.demo_guard(tmp_path)
    messages_double.messages.text("Paris.")
    app = module.build_app(guard)
    with app.test_client() if name == "flask_app" else TestClient(app) as client:
        response = client.post("/v1/chat", json={"prompt": "Capital of France?"}, headers=user_headers(module, "alice"))
    assert response.status_code == 200 and _json(response)["text"] == "Paris."
    (sent,) = messages_double.requests_to("/v1/messages")
    assert sent.body["metadata"]["user_id"] == guard.hash_user("alice")  # hashed, never the raw id
    (record,) = guard.audit.find(message_id=_json(response)["message_id"])
    assert record.anthropic_request_id == sent.request_id
    assert record.request_id == response.headers["aupguard-request-id"]  # the middleware's own record
    guard.close()


def test_langchain_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, messages_double: MessagesDouble) -> None:
    from langchain_anthropic import ChatAnthropic

    module = load("langchain_chain")
    guard = module.demo_guard(tmp_path)
    model = ChatAnthropic(model="claude-sonnet-5-5", api_key="test-key", base_url=messages_double.url, max_retries=0)
    chain = module.build_chain(guard, model)
    messages_double.messages.text("Paris is the capital.")
    assert module.ask(guard, chain, "alice", "Capital of France?") == "Paris is the capital."
    assert module.ask(guard, chain, "alice", "Explain nerve agent synthesis").startswith("refused: 403 content_flagged")
    (sent,) = messages_double.requests_to("/v1/messages")
    assert sent.body["metadata"]["user_id"] == guard.hash_user("alice")
    guard.close()


def test_fastapi_demo_serves_the_console_with_a_one_time_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from aupguard.cli.demo import demo_reviewer

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("AUPGUARD_CAPTURE_KEY", raising=False)
    module = load("fastapi_app")
    guard = module.demo_guard(tmp_path, console=True)
    module.seed(guard)
    name, password = demo_reviewer(guard)
    _, second = demo_reviewer(guard)
    assert second != password  # a new password each run: the printed one is the only copy
    entries = guard.store.queue_page()
    assert len(entries) == 3 and {e.item.user_hash for e in entries} == {
        guard.hash_user("trent"),
        guard.hash_user("peggy"),
    }
    with TestClient(module.build_app(guard)) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/aupguard/login").text)
        assert token is not None
        form = {"csrf": token.group(1), "name": name}
        assert client.post("/aupguard/login", data={**form, "password": password}).status_code == 401
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/aupguard/login").text)
        assert token is not None
        assert (
            client.post("/aupguard/login", data={"csrf": token.group(1), "name": name, "password": second}).status_code
            == 200
        )
        peggy = next(e for e in entries if e.item.user_hash == guard.hash_user("peggy"))
        page = client.get(f"/aupguard/items/{peggy.item.id}").text
        assert "&lt;script&gt;alert(" in page and "<script>" not in page  # the captured prompt, escaped
    guard.close()


def test_gateway_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, messages_double: MessagesDouble) -> None:
    from .gateway_helpers import UPSTREAM_KEY, serving

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    module = load("gateway")
    guard = module.demo_guard(tmp_path)
    alice, mallory = module.issue_key(guard, "alice"), module.issue_key(guard, "mallory")
    guard.suspend("mallory", reason="demo")
    messages_double.messages.text("Paris.")
    app = module.build_app(guard, upstream=messages_double.url, upstream_key=UPSTREAM_KEY)
    with serving(app) as url:
        assert module.ask(url, alice, "Capital of France?") == "Paris."
        assert module.ask(url, alice, "Explain nerve agent synthesis") == "refused: 403 content_flagged"
        assert module.ask(url, mallory, "Hello") == "refused: 403 user_suspended"
        assert module.ask(url, "agk_wrong", "Hello") == "refused: 401 authentication_required"
    (sent,) = messages_double.requests_to("/v1/messages")
    assert sent.body["metadata"]["user_id"] == guard.hash_user("alice") and sent.headers["x-api-key"] == UPSTREAM_KEY
    assert guard.status("alice").strikes == 1
    guard.close()

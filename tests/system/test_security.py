"""Security review, as tests: raw user ids, hash and capture keys, API keys and prompt text
never reach logs, client answers, metrics, the store's files or outbound requests (beyond what
each outbound request must carry); a header naming a user is ignored unless configured;
secrets are compared in constant time."""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from aupguard import generate_key_entry
from aupguard.engine.context import current_guarded
from aupguard.testing import MessagesDouble
from aupguard_asgi import SafeguardsMiddleware
from tests.conftest import MakeGuard

ROOT = Path(__file__).resolve().parents[2]
RAW_USER = "raw-user-4417@example.com"
PROMPT = "ZEBRA-PROMPT-7731 tell me a story"
API_KEY = "sk-ant-SECRET-9911-apikey"
MODERATION_KEY = "sk-mod-SECRET-5522-modkey"
RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]


def _secret_of(entry: str) -> str:
    return entry.split(":")[1]


@pytest.fixture
def scene(
    make_guard: MakeGuard, messages_double: MessagesDouble, monkeypatch: pytest.MonkeyPatch, key_entry: str,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> dict[str, Any]:  # fmt: skip
    """One guarded app exercised through every path that logs or answers: allowed (with a
    Claude call), flagged, malformed, rate limited, a moderator failing, a bad user id."""
    capture_entry = generate_key_entry("c1")
    monkeypatch.setenv("SEC_CAPTURE_KEY", capture_entry)
    monkeypatch.setenv("SEC_MODERATION_KEY", MODERATION_KEY)
    guard = make_guard({
        "moderation": {"rules": RULES, "fail": "open",
                       "openai": {"url": messages_double.moderations_url, "api_key_env": "SEC_MODERATION_KEY"}},
        "capture": {"enabled": True, "key_env": "SEC_CAPTURE_KEY"},
        "limits": {"default": "6/minute"},
    })  # fmt: skip
    claude = guard.instrument(messages_double.async_client(api_key=API_KEY))

    async def chat(request: Request) -> JSONResponse:
        guarded = current_guarded()
        assert guarded is not None and guarded.decision.prompt is not None
        message = await claude.messages.create(
            model="claude-sonnet-5-5", max_tokens=50,
            messages=[{"role": "user", "content": guarded.decision.prompt.text}],
        )  # fmt: skip
        return JSONResponse({"id": message.id})

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"])])
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user")
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    with TestClient(app, raise_server_exceptions=False) as client:

        def send(user: bytes | str, **kw: Any) -> int:
            raw = user.encode() if isinstance(user, str) else user
            response = client.post("/v1/chat", headers=[(b"x-user", raw)], **kw)  # type: ignore[arg-type]
            answers.append(f"{response.status_code} {dict(response.headers)} {response.text}")
            return response.status_code

        assert send(RAW_USER, json={"prompt": PROMPT}) == 200
        assert send(RAW_USER, json={"prompt": f"{PROMPT} nerve agent synthesis"}) == 403
        assert send(RAW_USER, content=b'{"prompt": "' + PROMPT.encode() + b'"') == 400
        messages_double.moderations.error(500, message="moderator down")
        assert send(RAW_USER, json={"prompt": PROMPT + " again"}) == 200  # fail open, logged
        assert send(RAW_USER + "x" * 2000, json={"prompt": PROMPT}) == 400  # an id too long to be one
        statuses = [send(RAW_USER, json={"prompt": f"{PROMPT} {n}"}) for n in range(6)]
        assert 429 in statuses
    guard.close()
    return {
        "guard": guard,
        # every record aupguard logs, at any level, and everything WARNING and up from any logger
        # (the SDK's and httpx's own DEBUG lines show request bodies: that is their switch, not ours)
        "logs": "\n".join(
            f"{r.name} {r.getMessage()} {r.exc_text or ''}"
            for r in caplog.records
            if r.name.startswith("aupguard") or r.levelno >= logging.WARNING
        ),
        "aupguard_logged": sum(r.name.startswith("aupguard") for r in caplog.records),
        "answers": "\n".join(answers),
        "metrics": guard.metrics.render(),
        "outbound": messages_double.requests,
        "files": b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()),
        "secrets": {"hash key": _secret_of(key_entry), "capture key": _secret_of(capture_entry)},
    }


def test_raw_user_ids_appear_nowhere(scene: dict[str, Any]) -> None:
    assert scene["aupguard_logged"] >= 1  # the scan read real log lines (the moderator failure)
    for where in ("logs", "answers", "metrics"):
        assert RAW_USER not in scene[where], where
    assert RAW_USER.encode() not in scene["files"]
    for request in scene["outbound"]:
        assert RAW_USER.encode() not in request.raw and RAW_USER not in str(request.headers)
    hashed = scene["guard"].hash_user(RAW_USER)
    sent = [r.body["metadata"]["user_id"] for r in scene["outbound"] if r.path == "/v1/messages"]
    assert sent and set(sent) == {hashed}  # Anthropic gets the keyed hash, never the id


def test_keys_appear_nowhere(scene: dict[str, Any]) -> None:
    for name, secret in scene["secrets"].items():
        for where in ("logs", "answers", "metrics"):
            assert secret not in scene[where], (name, where)
        assert secret.encode() not in scene["files"], name
        assert all(secret.encode() not in r.raw and secret not in str(r.headers) for r in scene["outbound"]), name
    for key in (API_KEY, MODERATION_KEY):
        for where in ("logs", "answers", "metrics"):
            assert key not in scene[where], where
        assert all(key.encode() not in r.raw for r in scene["outbound"])  # never in a body
    claude_calls = [r for r in scene["outbound"] if r.path == "/v1/messages"]
    moderation_calls = [r for r in scene["outbound"] if r.path != "/v1/messages"]
    assert {r.headers.get("authorization") for r in claude_calls} == {f"Bearer {API_KEY}"}  # where it belongs
    assert {r.headers.get("authorization") for r in moderation_calls} == {f"Bearer {MODERATION_KEY}"}
    assert all(API_KEY not in str(r.headers) for r in moderation_calls)


def test_prompt_text_stays_out_of_logs_answers_metrics_and_files(scene: dict[str, Any]) -> None:
    marker = PROMPT.split()[0]
    for where in ("logs", "answers", "metrics"):
        assert marker not in scene[where], where
    assert marker.encode() not in scene["files"]  # captured text is ciphertext at rest, audit rows hold none
    assert any(marker.encode() in r.raw for r in scene["outbound"])  # it goes to Claude, as it must


def test_a_user_header_is_ignored_unless_configured(make_guard: MakeGuard) -> None:
    guard = make_guard()

    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"])])
    app.add_middleware(SafeguardsMiddleware, safeguards=guard)  # no user_header: only scope["user"]
    with TestClient(app) as client:
        for header in ("x-user", "x-user-id", "x-forwarded-user", "remote-user"):
            response = client.post("/v1/chat", headers={header: "admin"}, json={"prompt": "hi"})
            assert response.status_code == 401, header


def test_flask_ignores_a_user_header_unless_configured(make_guard: MakeGuard) -> None:
    from flask import Flask

    from aupguard_flask import FlaskSafeguards

    app = Flask("spoof")
    FlaskSafeguards(app, safeguards=make_guard())  # no user_header; Flask-Login is not set up here
    app.add_url_rule("/v1/chat", view_func=lambda: {"ok": True}, methods=["POST"])
    client = app.test_client()
    for header in ("X-User", "X-User-Id", "X-Forwarded-User", "Remote-User"):
        response = client.post("/v1/chat", headers={header: "admin"}, json={"prompt": "hi"})
        assert response.status_code == 401, header


_SECRET_WORDS = ("secret", "token", "csrf", "password", "signature", "mac", "digest", "api_key", "key_hash")


def _secretish(node: ast.expr) -> str | None:
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
    if name is not None and any(word in name.lower() for word in _SECRET_WORDS):
        return name
    return None


def test_secrets_are_compared_in_constant_time() -> None:
    """No ``==`` / ``!=`` between values named like secrets in the shipped code: those go
    through ``hmac.compare_digest``."""
    found: list[str] = []
    files = [*ROOT.joinpath("src").rglob("*.py"), *ROOT.joinpath("integrations").rglob("*.py")]
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                operands = [node.left, *node.comparators]
                if any(isinstance(o, ast.Constant) and o.value is None for o in operands):
                    continue
                names = [n for n in map(_secretish, operands) if n]
                if names:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {names}")
    assert found == []
    assert len(files) > 50  # the scan saw the code

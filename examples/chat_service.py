"""The example chat service behind examples/starlette_app.py, fastapi_app.py and flask_app.py
(not run on its own).

One endpoint, ``POST /v1/chat`` with ``{"prompt": "..."}`` (or Anthropic's ``messages``),
answered by Claude when ``ANTHROPIC_API_KEY`` is set, and otherwise by an offline stand-in
model that says so in every answer. aupguard's middleware guards it; the app calls Claude
through ``guard.instrument(...)``, which sends the hashed user id as ``metadata.user_id``
and links Anthropic's ids to the guarded request's audit record.

Identity comes from an ``X-User`` header here, which is only acceptable for a demo: a real
service takes it from its own authentication.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aupguard import Keyring, Policy, Safeguards, generate_key_entry
from aupguard.engine.context import current_guarded

OFFLINE_LABEL = "[offline stand-in model: set ANTHROPIC_API_KEY for real answers]"
MODEL = "claude-haiku-4-5"

DEMO_POLICY = {
    "identity": {"require_account": True},
    "ladder": {"window": "30d", "warn": 1, "throttle": 3, "suspend": 5, "suspend_for": "7d"},
    "limits": {"default": "30/minute", "throttled": "5/minute"},
    "moderation": {
        "mode": "before",
        "rules": [
            {"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"],
             "patterns": [r"\bbuild (a|an) (bomb|explosive)\b"]},
            {"category": "cyber", "action": "block", "keywords": ["ransomware builder"]},
        ],
    },
}  # fmt: skip


def _demo_key(directory: Path, name: str, kid: str) -> str:
    key_file = directory / name
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(generate_key_entry(kid) + "\n")
    return key_file.read_text()


def demo_guard(directory: Path, *, console: bool = False) -> Safeguards:
    """An engine on embedded defaults in ``directory``, with a demo key kept there. With
    ``console``: prompts are captured (demo capture key kept there too) for the review
    console, whose cookie may travel over plain HTTP on localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    text = os.environ.get("AUPGUARD_HASH_KEY", "")
    if not text.strip():
        text = _demo_key(directory, "hash-key", "demo")
    ring = Keyring.parse(text, source="demo key")
    policy = dict(DEMO_POLICY)
    if console:
        os.environ.setdefault("AUPGUARD_CAPTURE_KEY", _demo_key(directory, "capture-key", "cdemo").strip())
        policy |= {"capture": {"enabled": True}, "review": {"secure_cookie": False}}
    store = f"sqlite:///{directory / 'aupguard.db'}"  # the file `aupguard demo --dir` uses: one store, one key
    return Safeguards(Policy.from_mapping(policy, env={}), store=store, keyring=ring)


def suspend_mallory(guard: Safeguards) -> None:
    """The suspended user of the third curl line."""
    if guard.status("mallory").level.value != "suspended":
        guard.suspend("mallory", reason="demo: repeated violations", actor="demo")


def print_try(url: str, *, user_header: str = "x-user") -> None:
    """The port and three ready-to-paste curl lines: allowed, flagged, suspended."""
    json_h = "-H 'content-type: application/json'"
    print(f"\naupguard demo chat on {url}")
    if not os.environ.get("ANTHROPIC_API_KEY"):
        print(f"  {OFFLINE_LABEL}")
    print("Try, in another terminal:")
    print(f"  curl -s {url} {json_h} -H '{user_header}: alice' -d '{{\"prompt\": \"What is the capital of France?\"}}'")
    print(f"  curl -s {url} {json_h} -H '{user_header}: alice' -d '{{\"prompt\": \"Explain nerve agent synthesis\"}}'")
    print(f"  curl -s {url} {json_h} -H '{user_header}: mallory' -d '{{\"prompt\": \"Hello\"}}'")
    print("(allowed; flagged: 403 content_flagged and a strike; suspended: 403 user_suspended).", flush=True)


def offline(prompt: str) -> dict[str, Any]:
    return {"model": "offline-stand-in", "text": f"{OFFLINE_LABEL} You said: {prompt[:200]}"}


async def answer(guard: Safeguards, prompt: str) -> dict[str, Any]:
    """Claude's answer (or the stand-in's). The instrumented client sends the hashed user id
    and links Anthropic's ids to the guarded request's audit record."""
    key = os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        return offline(prompt)
    import anthropic

    client = guard.instrument(anthropic.AsyncAnthropic(api_key=key))
    message = await client.messages.create(model=MODEL, max_tokens=500, messages=[{"role": "user", "content": prompt}])
    return {"model": message.model, "text": "".join(getattr(b, "text", "") for b in message.content),
            "message_id": message.id}  # fmt: skip


def answer_sync(guard: Safeguards, prompt: str) -> dict[str, Any]:
    """``answer`` for sync frameworks (Flask)."""
    key = os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        return offline(prompt)
    import anthropic

    client = guard.instrument(anthropic.Anthropic(api_key=key))
    message = client.messages.create(model=MODEL, max_tokens=500, messages=[{"role": "user", "content": prompt}])
    return {"model": message.model, "text": "".join(getattr(b, "text", "") for b in message.content),
            "message_id": message.id}  # fmt: skip


def prompt_of() -> str:
    guarded = current_guarded()
    return guarded.decision.prompt.text if guarded and guarded.decision.prompt else ""

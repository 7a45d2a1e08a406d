"""The Messages-API gateway: apps you cannot change (or that are not written in Python) get
every safeguard by pointing the official SDK's ``base_url`` at it.

Run::

    .venv/bin/python examples/gateway.py [--port 8080]

With ``ANTHROPIC_API_KEY`` set, Claude's API is the upstream; without it, the chat demo's
offline stand-in model answers (a small Messages API on another local port, labelled in
every answer). It prints gateway keys for the demo users ``alice`` and ``mallory``
(suspended) and three curl lines to paste; an app calls
``anthropic.Anthropic(api_key=<that key>, base_url="http://127.0.0.1:8080")``, exactly as
:func:`ask` does. The same thing from the command line: ``aupguard gateway-keys create --user alice``
and ``aupguard gateway``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path

import anthropic
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chat_service import MODEL, OFFLINE_LABEL, demo_guard, offline, suspend_mallory

from aupguard import Safeguards
from aupguard.gateway import GatewayKeys
from aupguard_gateway import build_gateway


def build_app(guard: Safeguards, *, upstream: str | None = None, upstream_key: str | None = None) -> Starlette:
    """The gateway on the demo engine (rules moderation, the ladder, limits, audit)."""
    return build_gateway(guard, upstream=upstream, upstream_key=upstream_key)


def issue_key(guard: Safeguards, user: str) -> str:
    return GatewayKeys(guard).create(user).key


def ask(base_url: str, key: str, prompt: str) -> str:
    """What any app does: the official SDK, its ``base_url`` at the gateway, a gateway key."""
    client = anthropic.Anthropic(api_key=key, base_url=base_url, max_retries=0)
    try:
        message = client.messages.create(model=MODEL, max_tokens=200, messages=[{"role": "user", "content": prompt}])
    except anthropic.APIStatusError as exc:
        error = exc.body.get("error", {}) if isinstance(exc.body, dict) else {}
        return f"refused: {exc.status_code} {error.get('type')}"
    return "".join(block.text for block in message.content if block.type == "text")


def stand_in_upstream() -> str:
    """The offline stand-in model behind a minimal Messages API (no streaming), served on a
    free local port in a thread; returns its base URL."""
    import socket

    import uvicorn

    async def messages(request: Request) -> JSONResponse:
        body = await request.json()
        if body.get("stream"):
            error = {"type": "invalid_request_error", "message": "the offline stand-in does not stream"}
            return JSONResponse({"type": "error", "error": error}, status_code=400)
        turns = body.get("messages") or [{}]
        content = turns[-1].get("content", "")
        prompt = content if isinstance(content, str) else " ".join(b.get("text", "") for b in content)
        message = {
            "id": f"msg_offline{uuid.uuid4().hex[:16]}", "type": "message", "role": "assistant", "model": MODEL,
            "content": [{"type": "text", "text": offline(prompt)["text"]}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": len(prompt.split()), "output_tokens": 12},
        }  # fmt: skip
        return JSONResponse(message, headers={"request-id": f"req_offline{uuid.uuid4().hex[:16]}"})

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}"


def curl_lines(url: str, alice: str, mallory: str) -> list[str]:
    def line(key: str, prompt: str) -> str:
        body = f'{{"model": "{MODEL}", "max_tokens": 200, "messages": [{{"role": "user", "content": "{prompt}"}}]}}'
        return (f"curl -s {url}/v1/messages -H 'x-api-key: {key}' -H 'anthropic-version: 2023-06-01' "
                f"-H 'content-type: application/json' -d '{body}'")  # fmt: skip

    return [line(alice, "What is the capital of France?"), line(alice, "Explain nerve agent synthesis"),
            line(mallory, "Hello")]  # fmt: skip


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--upstream", help="default: [gateway] upstream, Anthropic's API")
    args = parser.parse_args()
    guard = demo_guard(Path(".aupguard/gateway-demo"))
    upstream, upstream_key = args.upstream, None
    if not os.environ.get("ANTHROPIC_API_KEY") and upstream is None:
        upstream, upstream_key = stand_in_upstream(), "offline"
        print(OFFLINE_LABEL)
    alice, mallory = issue_key(guard, "alice"), issue_key(guard, "mallory")
    suspend_mallory(guard)
    url = f"http://127.0.0.1:{args.port}"
    print(f"aupguard gateway on {url} (upstream {upstream or guard.policy.gateway.upstream})")
    print(f"gateway keys (shown once): alice {alice}  mallory (suspended) {mallory}")
    print("Try, in another terminal:")
    for line in curl_lines(url, alice, mallory):
        print(f"  {line}")
    print("(allowed; flagged: 403 content_flagged and a strike; suspended: 403 user_suspended).")
    print(f"An app: anthropic.Anthropic(api_key=<alice's key>, base_url={url!r}). Ctrl-C stops.\n", flush=True)
    app = build_app(guard, upstream=upstream, upstream_key=upstream_key)
    try:
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    finally:
        guard.close()


if __name__ == "__main__":
    main()

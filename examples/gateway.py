"""The Messages-API gateway: apps you cannot change (or that are not written in Python) get
every safeguard by pointing the official SDK's ``base_url`` at it.

Run (Claude's API as the upstream)::

    export AUPGUARD_HASH_KEY="$(.venv/bin/aupguard key generate)" ANTHROPIC_API_KEY=sk-ant-...
    .venv/bin/python examples/gateway.py            # serves http://127.0.0.1:8080

It prints a gateway key for the demo user ``alice``; an app then calls
``anthropic.Anthropic(api_key=<that key>, base_url="http://127.0.0.1:8080")``, exactly as
:func:`ask` does. The same thing from the command line: ``aupguard keys create --user alice``
and ``aupguard gateway``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anthropic
from chat_service import MODEL, demo_guard
from starlette.applications import Starlette

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


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--upstream", help="default: [gateway] upstream, Anthropic's API")
    args = parser.parse_args()
    guard = demo_guard(Path(".aupguard/gateway-demo"))
    print(f"gateway key for alice (shown once): {issue_key(guard, 'alice')}")
    try:
        uvicorn.run(build_app(guard, upstream=args.upstream), host="127.0.0.1", port=args.port, log_level="warning")
    finally:
        guard.close()


if __name__ == "__main__":
    main()

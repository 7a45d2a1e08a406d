"""A small chat service on Starlette, guarded by aupguard.

Run: .venv/bin/python examples/starlette_app.py [--port 8000]. It prints its URL and three
curl lines to paste: an allowed prompt, a flagged one and a suspended user's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chat_service import answer, demo_guard, print_try, prompt_of, suspend_mallory

from aupguard import Safeguards
from aupguard_asgi import SafeguardsMiddleware


def build_app(guard: Safeguards) -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        return JSONResponse(await answer(guard, prompt_of()))

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"])])
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user", routes=["/v1/*"])
    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    guard = demo_guard(Path(".aupguard/starlette-demo"))
    suspend_mallory(guard)
    print_try(f"http://127.0.0.1:{args.port}/v1/chat")
    print("Ctrl-C stops.\n", flush=True)
    try:
        uvicorn.run(build_app(guard), host="127.0.0.1", port=args.port, log_level="warning")
    finally:
        guard.close()


if __name__ == "__main__":
    main()

"""A small chat service on Starlette, guarded by aupguard. Run: python examples/starlette_app.py"""

from __future__ import annotations

import sys
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chat_service import answer, demo_guard, prompt_of

from aupguard import Safeguards
from aupguard_asgi import SafeguardsMiddleware


def build_app(guard: Safeguards) -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        return JSONResponse(await answer(guard, prompt_of()))

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"])])
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user", routes=["/v1/*"])
    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(build_app(demo_guard(Path(".aupguard/starlette-demo"))), host="127.0.0.1", port=8000)

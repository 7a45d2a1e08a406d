"""The app the multi-worker tests serve with 4 uvicorn workers (``asgi_app``) and 4 gunicorn
workers (``flask_app``). Policy from ``AUPGUARD_POLICY`` (PostgreSQL store, Redis counters);
the user comes from the trusted ``X-User`` header; each answer names the worker's pid."""

from __future__ import annotations

import os

from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aupguard import Policy, Safeguards
from aupguard_asgi import SafeguardsMiddleware
from aupguard_flask import FlaskSafeguards

guard = Safeguards(Policy.from_toml(os.environ["AUPGUARD_POLICY"]))


async def chat(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid()})


asgi_app = Starlette(routes=[Route("/chat", chat, methods=["POST"])])
asgi_app.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="X-User", routes=["/chat"])

flask_app = Flask(__name__)
FlaskSafeguards(flask_app, safeguards=guard, user_header="X-User", routes=["/chat"])


@flask_app.post("/chat")
def flask_chat() -> dict[str, int]:
    return {"pid": os.getpid()}

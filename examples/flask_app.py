"""The chat service of examples/fastapi_app.py, on Flask. Run: python examples/flask_app.py"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from flask import Flask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chat_service import answer_sync, demo_guard, prompt_of

from aupguard import Safeguards
from aupguard_flask import FlaskSafeguards


def build_app(guard: Safeguards) -> Flask:
    app = Flask("aupguard-demo-chat")

    @app.post("/v1/chat")
    def chat() -> Any:
        return answer_sync(guard, prompt_of())

    FlaskSafeguards(app, safeguards=guard, user_header="X-User", routes=["/v1/*"])
    return app


if __name__ == "__main__":
    build_app(demo_guard(Path(".aupguard/flask-demo"))).run(host="127.0.0.1", port=8001)

"""The chat service of examples/fastapi_app.py, on Flask.

Run: .venv/bin/python examples/flask_app.py [--port 8001]. It prints its URL and three curl
lines to paste: an allowed prompt, a flagged one and a suspended user's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flask import Flask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chat_service import answer_sync, demo_guard, print_try, prompt_of, suspend_mallory

from aupguard import Safeguards
from aupguard_flask import FlaskSafeguards


def build_app(guard: Safeguards) -> Flask:
    app = Flask("aupguard-demo-chat")

    @app.post("/v1/chat")
    def chat() -> Any:
        return answer_sync(guard, prompt_of())

    FlaskSafeguards(app, safeguards=guard, user_header="X-User", routes=["/v1/*"])
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    guard = demo_guard(Path(".aupguard/flask-demo"))
    suspend_mallory(guard)
    print_try(f"http://127.0.0.1:{args.port}/v1/chat")
    print("Ctrl-C stops (Flask's development server: use gunicorn in production).\n", flush=True)
    try:
        build_app(guard).run(host="127.0.0.1", port=args.port)
    finally:
        guard.close()


if __name__ == "__main__":
    main()

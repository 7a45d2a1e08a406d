"""A real uvicorn server on 127.0.0.1 in a thread, for the gateway's tests and example."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

UPSTREAM_KEY = "sk-upstream-secret-0123456789"


@contextlib.contextmanager
def serving(app: Any, **config: Any) -> Iterator[str]:
    """Serve ``app`` (with its lifespan) until the block ends; yields its base URL.
    ``config``: more ``uvicorn.Config`` options (``root_path="/api"`` is ``--root-path``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY then
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        raise RuntimeError("the gateway did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()

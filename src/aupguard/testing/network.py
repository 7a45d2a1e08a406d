"""Loopback helpers for tests that start servers: a free port on 127.0.0.1, and a wait until
something listens on one (an app under uvicorn, a redis-server of the test's own)."""

from __future__ import annotations

import socket
import time

__all__ = ["free_port", "wait_port"]


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Return once ``127.0.0.1:port`` accepts a connection; RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")

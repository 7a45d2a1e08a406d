"""What every test double served on 127.0.0.1 shares: a server in a thread of its own, its
URL, and the record of the requests it received (safe to read from any thread)."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Any, TypeVar

from .scripting import RecordedRequest

__all__ = ["ServedDouble"]

D = TypeVar("D", bound="ServedDouble")


class ServedDouble:
    """``start()`` binds a free port on 127.0.0.1 (``url``); ``requests`` is the record.
    Subclasses say which server they run (``make_server``)."""

    def __init__(self) -> None:
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def make_server(self) -> ThreadingHTTPServer:
        raise NotImplementedError

    def start(self: D) -> D:
        self._server = self.make_server()
        # a short poll interval: stop() waits for one poll, and tests start and stop doubles often
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self.after_shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def after_shutdown(self) -> None:
        """Between the server's shutdown and its close (a double that holds connections open
        wakes them here)."""

    def __enter__(self: D) -> D:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the double first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

"""A webhook receiver on 127.0.0.1 for the notification tests: records every delivery (headers
and body); can hang (each request waits until released), be stopped and started again on
the same port."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Receiver"]


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Condition()
        self.hang = False
        self.release = threading.Event()
        self.entered = threading.Event()  # a request reached the handler (and, hanging, waits)
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/aupguard"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.entered.set()
                if receiver.hang:
                    receiver.release.wait(30)
                    return  # no answer: the sender's timeout ends the attempt
                with receiver.arrived:
                    receiver.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    receiver.arrived.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self) -> list[dict[str, Any]]:
        with self.arrived:
            return [json.loads(body) for _, body in self.deliveries]

    def events(self) -> list[dict[str, Any]]:
        return [event for body in self.bodies() for event in body["events"]]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until ``count`` events arrived (across deliveries); return them."""
        with self.arrived:
            arrived = self.arrived.wait_for(
                lambda: sum(len(json.loads(b)["events"]) for _, b in self.deliveries) >= count, timeout
            )
        assert arrived, f"{count} events expected, {len(self.events())} arrived"
        return self.events()

"""What ``FlaskSafeguards`` adds to a Flask request, next to Flask-Limiter, in one process run.

Three Flask apps with the same ``POST /v1/chat`` view (it reads ``request.get_json()`` and
answers a small JSON object), driven the same way: the WSGI app called directly, one environ
per request prepared beforehand with werkzeug's ``EnvironBuilder`` (outside the timing), a
``start_response`` that records the status, the body iterable consumed and closed. No server
and no network, so what differs between the apps is what each extension costs.

* ``bare``: the Flask app alone;
* ``flask-limiter``: ``Limiter(key_func=<the x-user header>, app=app, storage_uri="memory://",
  headers_enabled=True)`` and ``@limiter.limit`` on the view (the default fixed window; it
  writes its ``X-RateLimit-*`` headers);
* ``aupguard``: ``FlaskSafeguards(app, safeguards=guard, user_header="x-user", routes=["/v1/*"])``
  on embedded defaults (a fresh SQLite store in a temporary directory, ``memory://`` counters),
  a policy with ``limits.default`` as high as Flask-Limiter's limit and 50
  ``[[moderation.rules]]`` keywords (``mode = "before"``), one known user. Each request runs
  identity, the keyed hash, the status, the throttle, body read and prompt extraction, rules
  moderation, the ``RateLimit-*`` headers and the audit record;
* ``floor``: a ``before_request`` hook that reads and parses the body and takes one ``limits``
  hit (aupguard's moving window and memory storage), an ``after_request`` hook that adds the
  ``RateLimit-*`` headers, and nothing else: the part of any extension's cost that comes before
  a single safeguard. The summary says how much of the goal it takes and what is left.

Every request's prompt is ~200 characters of benign text that ends in its own sequence
number, so no request hits the moderation verdict cache; all three apps get the same bodies,
of the same length. Counters (aupguard's and Flask-Limiter's) are reset before every run, so
each run starts from an empty window.

The audit writer thread runs while the requests do, so an aupguard run's time includes
draining the audit queue of the records it made. Runs rotate the order of the apps. Reported:
the median µs per request of each app, each extension's overhead over the bare app, the ratio
of aupguard's overhead to Flask-Limiter's (issue 17's goal: at most 0.5), and how many
storage operations Flask-Limiter makes per request (each one a round trip with a remote
store). Afterwards the engine is closed, the store reopened, and the user's audit records
counted: one per guarded request.

Run with ``python bench/bench_flask.py`` (``--profile`` adds a cProfile of the aupguard app's
requests) or through ``make bench``.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from wsgiref.types import WSGIApplication, WSGIEnvironment

from flask import Flask, Response, g, request
from flask_limiter import Limiter
from werkzeug.test import EnvironBuilder

from _harness import AUPGUARD, BARE, FLOOR, RATE, USER, FloorLimiter, Reply, WebBench, run_bench
from aupguard import Safeguards
from aupguard_flask import FlaskSafeguards

__all__ = ["main"]

PATH = "/v1/chat"
STORAGE_PROBE = 20  # requests over which Flask-Limiter's storage operations are counted

LIMITER = "flask-limiter"

# the storage methods a limits strategy calls; counted to see Flask-Limiter's round trips per request
STORAGE_METHODS = (
    "incr",
    "decr",
    "get",
    "get_expiry",
    "clear",
    "acquire_entry",
    "get_moving_window",
    "acquire_sliding_window_entry",
    "get_sliding_window",
)


# -- the apps ----------------------------------------------------------------------------


def _answer() -> dict[str, Any]:
    data = request.get_json()
    return {"id": "msg_bench", "type": "message", "chars": len(data["prompt"])}


def bare_app() -> Flask:
    app = Flask("bench_bare")
    app.add_url_rule(PATH, "chat", _answer, methods=["POST"])
    return app


def _user_key() -> str:
    return request.headers.get("x-user") or "anonymous"


def limiter_app() -> tuple[Flask, Limiter]:
    app = Flask("bench_flask_limiter")
    limiter = Limiter(key_func=_user_key, app=app, storage_uri="memory://", headers_enabled=True)

    @limiter.limit(RATE)
    def limited_chat() -> dict[str, Any]:
        return _answer()

    app.add_url_rule(PATH, "chat", limited_chat, methods=["POST"])
    return app, limiter


def aupguard_app(guard: Safeguards) -> Flask:
    app = Flask("bench_aupguard")
    app.add_url_rule(PATH, "chat", _answer, methods=["POST"])
    FlaskSafeguards(app, safeguards=guard, user_header="x-user", routes=["/v1/*"])
    return app


def floor_app(limiter: FloorLimiter) -> Flask:
    """The least a guard can do (see ``FloorLimiter``) in the shape the extension must have:
    a ``before_request`` hook that reads and parses the body (cached for the view) and takes one
    limits hit for the ``x-user`` header, an ``after_request`` hook that adds the headers."""
    app = Flask("bench_floor")
    app.add_url_rule(PATH, "chat", _answer, methods=["POST"])

    @app.before_request
    def check() -> None:
        json.loads(request.get_data(cache=True))
        g.floor_headers = limiter.headers(request.headers.get("x-user") or "anonymous")

    @app.after_request
    def add_headers(response: Response) -> Response:
        for name, value in g.floor_headers:
            response.headers.add(name, value)
        return response

    return app


# -- the driver --------------------------------------------------------------------------


def environ(body: bytes, user: str = USER) -> WSGIEnvironment:
    """One request's WSGI environ (its own ``wsgi.input``), built before the timing starts."""
    builder = EnvironBuilder(
        path=PATH,
        method="POST",
        base_url="http://bench.local/",
        headers=[("x-user", user)],
        content_type="application/json",
        data=body,
    )
    try:
        return builder.get_environ()
    finally:
        builder.close()


def _write(data: bytes) -> None:  # the legacy ``write`` callable; Flask never calls it
    raise AssertionError("unexpected write()")


def _consume(result: Iterable[bytes]) -> bytes:
    try:
        return b"".join(result)
    finally:
        close: Callable[[], object] | None = getattr(result, "close", None)
        if close is not None:
            close()


def drive(app: WSGIApplication, environs: Sequence[WSGIEnvironment]) -> tuple[int, int]:
    """Call ``app`` once per environ; the time it took (ns) and how many answered 200."""
    statuses: list[str] = []
    record = statuses.append

    def start_response(
        status: str,
        headers: list[tuple[str, str]],
        exc_info: tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None] | None = None,
    ) -> Callable[[bytes], object]:
        record(status)
        return _write

    t0 = time.perf_counter_ns()
    for env in environs:
        _consume(app(env, start_response))
    elapsed = time.perf_counter_ns() - t0
    return elapsed, sum(1 for s in statuses if s.startswith("200 "))


def one_request(app: WSGIApplication, payload: bytes, user: str = USER) -> Reply:
    """One request, with the whole reply kept (for the set-up checks, not timed)."""
    reply = Reply()

    def start_response(
        status: str,
        headers: list[tuple[str, str]],
        exc_info: tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None] | None = None,
    ) -> Callable[[bytes], object]:
        reply.status = int(status.split(" ", 1)[0])
        reply.headers = {k.lower(): v for k, v in headers}
        return _write

    reply.body = _consume(app(environ(payload, user), start_response))
    return reply


# -- the bench ---------------------------------------------------------------------------


class Bench(WebBench[WSGIApplication]):
    """The three apps, each able to time ``n`` requests from an empty rate-limit window."""

    prog, tmp_prefix = "bench/bench_flask.py", "aupguard-bench-flask-"
    label, interface, name_width = "flask", "WSGI", 14
    rival, rival_label = LIMITER, "Flask-Limiter"
    goal = 0.5  # issue 17: at most half of Flask-Limiter's overhead

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        limited, self.limiter = limiter_app()
        self.apps = {
            BARE: bare_app(),
            LIMITER: limited,
            FLOOR: floor_app(self.floor),
            AUPGUARD: aupguard_app(self.guard),
        }
        self.storage_calls: Counter[str] = Counter()

    def request(self, app: WSGIApplication, payload: bytes, user: str = USER) -> Reply:
        return one_request(app, payload, user)

    def batch(self, app: WSGIApplication, payloads: Sequence[bytes]) -> Callable[[], tuple[int, int]]:
        environs = [environ(body) for body in payloads]
        return lambda: drive(app, environs)

    def setup(self) -> None:
        super().setup()
        self.storage_calls = self.limiter_storage_calls()

    def limiter_storage_calls(self, n: int = STORAGE_PROBE) -> Counter[str]:
        """Flask-Limiter's storage operations over ``n`` requests (outermost calls only: what a
        remote store would see as round trips), by method name."""
        storage = self.limiter.storage
        calls: Counter[str] = Counter()
        depth = 0

        def counting(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                nonlocal depth
                if depth == 0:
                    calls[name] += 1
                depth += 1
                try:
                    return method(*args, **kwargs)
                finally:
                    depth -= 1

            return wrapper

        wrapped = [name for name in STORAGE_METHODS if hasattr(storage, name)]
        for name in wrapped:
            setattr(storage, name, counting(name, getattr(storage, name)))
        try:
            _, ok = self.batch(self.apps[LIMITER], self.fresh_bodies(n))()
        finally:
            for name in wrapped:
                delattr(storage, name)  # the class's method again
        if ok != n:
            raise RuntimeError(f"{LIMITER}: {n - ok} of {n} requests did not answer 200")
        return calls

    def reset_others(self) -> None:
        self.limiter.reset()

    def notes(self) -> Iterable[str]:
        per_request = sum(self.storage_calls.values()) / STORAGE_PROBE
        detail = ", ".join(f"{name} {n / STORAGE_PROBE:g}" for name, n in sorted(self.storage_calls.items()))
        yield f"flask-limiter: {per_request:g} storage operations per request ({detail})"


def main(argv: Sequence[str] | None = None) -> int:
    return run_bench(Bench, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

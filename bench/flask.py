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
  moderation, the ``RateLimit-*`` headers and the audit record.

Every request's prompt is ~200 characters of benign text that ends in its own sequence
number, so no request hits the moderation verdict cache; all three apps get the same bodies,
of the same length. Counters (aupguard's and Flask-Limiter's) are reset before every run, so
each run starts from an empty window.

The audit writer thread runs while the requests do, so an aupguard run's time includes
draining the audit queue of the records it made. Runs rotate the order of the apps. Reported:
the median µs per request of each app, each extension's overhead over the bare app, the ratio
of aupguard's overhead to Flask-Limiter's (the issue's goal: at most 0.3), and how many
storage operations Flask-Limiter makes per request (each one a round trip with a remote
store). Afterwards the engine is closed, the store reopened, and the user's audit records
counted: one per guarded request.

Run with ``python bench/flask.py`` (``--profile`` adds a cProfile of the aupguard app's
requests) or through ``make bench``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import random
import statistics
import string
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from types import TracebackType
from typing import Any
from wsgiref.types import WSGIApplication, WSGIEnvironment

# This file is named flask.py: run as a script, its folder is first on sys.path and ``import
# flask`` (here and in the extensions) would find this file instead of Flask. Leave the folder out
# while the imports below run (bench/run.py loads this file by path, under another name). For
# the same reason ruff (``src`` includes bench/) files ``flask`` among the first-party imports.
_HERE = Path(__file__).resolve().parent
_SAVED_PATH = list(sys.path)
for _entry in [p for p in sys.path if Path(p or ".").resolve() == _HERE]:
    sys.path.remove(_entry)

from flask_limiter import Limiter  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from aupguard import Keyring, Policy, Safeguards, generate_key_entry  # noqa: E402
from aupguard_flask import FlaskSafeguards  # noqa: E402
from flask import Flask, request  # noqa: E402

sys.path[:] = _SAVED_PATH

__all__ = ["main"]

USER = "user-1"
PROBE_USER = "probe-user"  # sends one flagged prompt at setup; kept apart from USER's records
PATH = "/v1/chat"
RATE = "1000000/minute"  # high enough that every request in the bench is allowed
RULES = 50
STORAGE_PROBE = 20  # requests over which Flask-Limiter's storage operations are counted
GOAL = 0.3  # the goal: aupguard's overhead at most 0.3× Flask-Limiter's

BARE, LIMITER, AUPGUARD = "bare", "flask-limiter", "aupguard"

# ~200 characters of benign text; a 9-digit sequence number makes every prompt new
PROMPT = (
    "Please summarise the attached quarterly report in three short bullet points for the product "
    "team, covering revenue, churn and the plans for the next release, in a friendly tone. Ticket "
)

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


def policy_toml() -> str:
    """``[limits]`` and 50 ``[[moderation.rules]]``, one keyword phrase each (``block``)."""
    rng = random.Random(7)

    def word() -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 10)))

    keywords = ["pipe bomb", "nerve agent", "credit card dump", "ransomware builder"]
    keywords += [f"{word()} {word()}" for _ in range(RULES - len(keywords))]
    lines = [
        "[limits]",
        f"default = {json.dumps(RATE)}",
        'throttled = "1000/minute"',
        "",
        "[moderation]",
        'mode = "before"',
    ]
    for i, keyword in enumerate(keywords):
        lines += ["", "[[moderation.rules]]", f'category = "cat{i % 12}"', 'action = "block"']
        lines.append(f"keywords = [{json.dumps(keyword)}]")
    return "\n".join(lines) + "\n"


def aupguard_app(guard: Safeguards) -> Flask:
    app = Flask("bench_aupguard")
    app.add_url_rule(PATH, "chat", _answer, methods=["POST"])
    FlaskSafeguards(app, safeguards=guard, user_header="x-user", routes=["/v1/*"])
    return app


# -- the driver --------------------------------------------------------------------------


@dataclass(slots=True)
class Reply:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


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


def bodies(numbers: Sequence[int]) -> list[bytes]:
    """One JSON body per request, all of the same length, each with a new prompt."""
    return [json.dumps({"prompt": f"{PROMPT}{n:09d}"}).encode() for n in numbers]


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


@dataclass(frozen=True, slots=True)
class Run:
    calls: int
    loop_ns: int  # the requests themselves
    drain_ns: int  # then writing the audit records they queued (aupguard only)
    backlog: int  # audit records still queued when the requests ended

    @property
    def per_call_us(self) -> float:
        return (self.loop_ns + self.drain_ns) / self.calls / 1000

    @property
    def loop_per_call_us(self) -> float:
        return self.loop_ns / self.calls / 1000


class Bench:
    """The three apps, each able to time ``n`` requests from an empty rate-limit window."""

    def __init__(self, tmp: Path) -> None:
        policy_file = tmp / "aupguard.toml"
        policy_file.write_text(policy_toml(), encoding="utf-8")
        self.policy = Policy.from_toml(policy_file, env={})
        self.keyring = Keyring.parse(generate_key_entry(), source="bench")
        self.store_uri = f"sqlite:///{tmp / 'bench.db'}"
        self.guard = Safeguards(self.policy, store=self.store_uri, counters="memory://", keyring=self.keyring)
        limited, self.limiter = limiter_app()
        self.apps: dict[str, WSGIApplication] = {BARE: bare_app(), LIMITER: limited, AUPGUARD: aupguard_app(self.guard)}
        self.numbers = count()
        self.guarded_calls = 0  # requests USER made through the aupguard app

    def check_setup(self) -> None:
        """Each app answers as it should: 200, the extensions' headers, the probe prompt flagged."""
        limit = RATE.split("/")[0]
        for name, app in self.apps.items():
            pair = bodies([next(self.numbers), next(self.numbers)])
            replies = [one_request(app, body) for body in pair]
            for reply in replies:
                if reply.status != 200 or json.loads(reply.body)["chars"] != len(PROMPT) + 9:
                    raise RuntimeError(f"{name}: expected 200 and the echo, got {reply.status} {reply.body!r}")
            prefix = {LIMITER: "x-ratelimit-", AUPGUARD: "ratelimit-"}.get(name)
            if prefix is None:
                continue
            first, second = (r.headers for r in replies)
            counted = int(first.get(f"{prefix}remaining", -1)) - int(second.get(f"{prefix}remaining", -1)) == 1
            if first.get(f"{prefix}limit") != limit or not counted:
                raise RuntimeError(f"{name}: no {prefix}* headers counting down from {limit}: {first}, {second}")
        self.guarded_calls += 2
        flagged = json.dumps({"prompt": "How do I make a pipe bomb at home?"}).encode()
        reply = one_request(self.apps[AUPGUARD], flagged, PROBE_USER)
        if reply.status != 403 or json.loads(reply.body)["error"]["type"] != "content_flagged":
            raise RuntimeError(f"aupguard: rules moderation did not flag the probe: {reply.status} {reply.body!r}")

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
            environs = [environ(body) for body in bodies([next(self.numbers) for _ in range(n)])]
            _, ok = drive(self.apps[LIMITER], environs)
        finally:
            for name in wrapped:
                delattr(storage, name)  # the class's method again
        if ok != n:
            raise RuntimeError(f"{LIMITER}: {n - ok} of {n} requests did not answer 200")
        return calls

    def _settle(self) -> None:
        """The same start for every run: no queued audit records, empty windows, no garbage."""
        self.guard.audit.flush()
        self.guard.counters.reset()
        self.limiter.reset()
        gc.collect()

    def environs(self, n: int) -> list[WSGIEnvironment]:
        return [environ(body) for body in bodies([next(self.numbers) for _ in range(n)])]

    def run(self, name: str, n: int) -> Run:
        environs = self.environs(n)
        self._settle()
        loop, ok = drive(self.apps[name], environs)
        if ok != n:
            raise RuntimeError(f"{name}: {n - ok} of {n} requests did not answer 200")
        if name != AUPGUARD:
            return Run(n, loop, 0, 0)
        backlog = self.guard.audit.pending()
        t0 = time.perf_counter_ns()
        if not self.guard.audit.flush():
            raise RuntimeError("the audit queue did not drain within 30 s")
        self.guarded_calls += n
        return Run(n, loop, time.perf_counter_ns() - t0, backlog)

    def count_audit_records(self) -> tuple[int, float]:
        """Close the engine (flushing the queue), reopen the store, count USER's records."""
        t0 = time.perf_counter()
        self.guard.close()
        close_s = time.perf_counter() - t0
        with Safeguards(self.policy, store=self.store_uri, counters="memory://", keyring=self.keyring) as reopened:
            return len(reopened.audit.find(user_id=USER, limit=10**9)), close_s

    def close(self) -> None:
        self.guard.close()


def measure(bench: Bench, *, reps: int, calls: int, warmup: int) -> dict[str, list[Run]]:
    for name in bench.apps:  # first requests set each app up, load the user, warm caches
        bench.run(name, warmup)
    results: dict[str, list[Run]] = {name: [] for name in bench.apps}
    order = list(bench.apps)
    for rep in range(reps):
        # rotate the order so that no app always runs right after another
        for name in order[rep % len(order) :] + order[: rep % len(order)]:
            results[name].append(bench.run(name, calls))
    return results


def report(results: dict[str, list[Run]], *, reps: int, calls: int) -> dict[str, float]:
    print(
        f"flask: µs per request, median of {reps} runs × {calls:,} requests, in-process WSGI calls "
        "(the aupguard runs include draining the audit queue)"
    )
    header = f"  {'':<14} {'median':>8} {'best':>8} {'worst':>8} {'calls only':>11} {'queued':>7} {'overhead':>9}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    medians = {name: statistics.median(r.per_call_us for r in runs) for name, runs in results.items()}
    for name, runs in results.items():
        per_call = [r.per_call_us for r in runs]
        loop_only = statistics.median(r.loop_per_call_us for r in runs)
        queued = f"{statistics.median(r.backlog for r in runs):,.0f}" if name == AUPGUARD else "-"
        overhead = f"{medians[name] - medians[BARE]:+.1f}" if name != BARE else "-"
        print(
            f"  {name:<14} {medians[name]:>8.1f} {min(per_call):>8.1f} {max(per_call):>8.1f} "
            f"{loop_only:>11.1f} {queued:>7} {overhead:>9}"
        )
    return medians


def profile_aupguard(bench: Bench, calls: int, top: int = 30) -> None:
    """cProfile of the aupguard app's requests (deterministic, so it inflates call-heavy code)."""
    environs = bench.environs(calls)
    bench._settle()
    profiler = cProfile.Profile()
    profiler.enable()
    drive(bench.apps[AUPGUARD], environs)
    profiler.disable()
    bench.guarded_calls += calls
    bench.guard.audit.flush()
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    total = sum(v[2] for _, v in rows)
    print(f"\ncProfile of {calls:,} aupguard requests ({total / calls * 1e6:.1f} µs per request profiled); top {top}")
    print(f"  {'own µs/req':>10} {'cum µs/req':>10} {'calls/req':>9}  function")
    for (path, line, func), (_, ncalls, tottime, cumtime, _) in rows[:top]:
        where = func if path == "~" else f"{Path(path).parent.name}/{Path(path).name}:{line} {func}"
        print(f"  {tottime / calls * 1e6:>10.2f} {cumtime / calls * 1e6:>10.2f} {ncalls / calls:>9.2f}  {where}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/flask.py", description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the aupguard requests")
    args = parser.parse_args([] if argv is None else argv)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aupguard-bench-flask-") as tmp:
        bench = Bench(Path(tmp))
        try:
            bench.check_setup()
            storage_calls = bench.limiter_storage_calls()
            results = measure(bench, reps=args.reps, calls=args.calls, warmup=args.warmup)
            medians = report(results, reps=args.reps, calls=args.calls)
            if args.profile:
                profile_aupguard(bench, args.calls)
            expected = bench.guarded_calls
            written, close_s = bench.count_audit_records()
        finally:
            bench.close()

    per_request = sum(storage_calls.values()) / STORAGE_PROBE
    detail = ", ".join(f"{name} {n / STORAGE_PROBE:g}" for name, n in sorted(storage_calls.items()))
    print(f"flask-limiter: {per_request:g} storage operations per request ({detail})")
    ok = written == expected
    print(
        f"audit: {written:,} records for {USER} after close ({close_s * 1000:.0f} ms), "
        f"{expected:,} guarded requests made (warm-up included): {'none dropped' if ok else 'MISMATCH'}"
    )
    bare = medians[BARE]
    limiter, guard = medians[LIMITER] - bare, medians[AUPGUARD] - bare
    ratio = guard / limiter if limiter > 0 else float("inf")
    verdict = "within" if ratio <= GOAL else "OVER"
    print(
        f"flask: bare {bare:.0f} µs, Flask-Limiter {limiter:+.0f} µs, aupguard {guard:+.0f} µs → "
        f"{ratio:.2f}× Flask-Limiter's overhead (goal ≤ {GOAL:g}×: {verdict}) [{time.perf_counter() - started:.1f} s]"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

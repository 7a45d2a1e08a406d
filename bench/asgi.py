"""What ``SafeguardsMiddleware`` adds to a Starlette request, next to slowapi, in one process run.

Three apps with the same ``POST /v1/chat`` route (it reads the JSON body and answers a small
``JSONResponse``), driven the same way: the ASGI app called directly, one fresh scope per
request, a ``receive`` that hands over the body once and a ``send`` that checks the status.
No server and no network, so what differs between the apps is what each guard costs.

* ``bare``: the Starlette app alone;
* ``slowapi``: as slowapi's quick start has it, ``@limiter.limit`` on the route,
  ``app.state.limiter``, the ``RateLimitExceeded`` handler; ``memory://`` storage, keyed by
  the ``x-user`` header, ``headers_enabled=True`` (it writes its ``X-RateLimit-*`` headers);
* ``aupguard``: ``SafeguardsMiddleware(user_header="x-user", routes=["/v1/*"])`` on embedded
  defaults (a fresh SQLite store in a temporary directory, ``memory://`` counters), a policy
  with ``limits.default`` as high as slowapi's limit and 50 ``[[moderation.rules]]`` keywords
  (``mode = "before"``), one known user. Each request runs identity, the keyed hash, the
  status, the throttle, body read and prompt extraction, rules moderation, the replay, the
  ``RateLimit-*`` headers and the audit record.

Every request's prompt is ~200 characters of benign text that ends in its own sequence
number, so no request hits the moderation verdict cache (apps see new prompts); all three
apps get the same bodies, of the same length. Counters (aupguard's and slowapi's) are reset
before every run, so each run starts from an empty window (``limits``' in-memory moving
window costs more the fuller it is; see ``bench/engine.py``).

The audit writer thread runs while the requests do, so an aupguard run's time includes
draining the audit queue of the records it made. Runs rotate the order of the apps. Reported:
the median µs per request of each app, each guard's overhead over the bare app, and the ratio
of aupguard's overhead to slowapi's (the issue's goal: at most 0.5). Afterwards the engine is
closed, the store reopened, and the user's audit records counted: one per guarded request.

Run with ``python bench/asgi.py`` (``--profile`` adds a cProfile of the aupguard app's
requests) or through ``make bench``.
"""

from __future__ import annotations

import argparse
import asyncio
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from aupguard import Keyring, Policy, Safeguards, generate_key_entry
from aupguard_asgi import SafeguardsMiddleware

__all__ = ["main"]

USER = "user-1"
PROBE_USER = "probe-user"  # sends one flagged prompt at setup; kept apart from USER's records
PATH = "/v1/chat"
RATE = "1000000/minute"  # high enough that every request in the bench is allowed
RULES = 50
GOAL = 0.5  # the goal: aupguard's overhead at most half of slowapi's

BARE, SLOWAPI, AUPGUARD = "bare", "slowapi", "aupguard"

# ~200 characters of benign text; a 9-digit sequence number makes every prompt new
PROMPT = (
    "Please summarise the attached quarterly report in three short bullet points for the product "
    "team, covering revenue, churn and the plans for the next release, in a friendly tone. Ticket "
)
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": PATH,
    "raw_path": PATH.encode(),
    "root_path": "",
    "query_string": b"",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 50000),
}


# -- the apps ----------------------------------------------------------------------------


def _answer(data: Any) -> JSONResponse:
    return JSONResponse({"id": "msg_bench", "type": "message", "chars": len(data["prompt"])})


async def chat(request: Request) -> Response:
    return _answer(await request.json())


def bare_app() -> Starlette:
    return Starlette(routes=[Route(PATH, chat, methods=["POST"])])


def _user_key(request: Request) -> str:
    return request.headers.get("x-user") or "anonymous"


def slowapi_app() -> tuple[Starlette, Limiter]:
    limiter = Limiter(key_func=_user_key, headers_enabled=True, storage_uri="memory://")

    @limiter.limit(RATE)
    async def limited_chat(request: Request) -> Response:
        return _answer(await request.json())

    app = Starlette(routes=[Route(PATH, limited_chat, methods=["POST"])])
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
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


def aupguard_app(guard: Safeguards) -> Starlette:
    middleware = [Middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user", routes=["/v1/*"])]
    return Starlette(routes=[Route(PATH, chat, methods=["POST"])], middleware=middleware)


# -- the driver --------------------------------------------------------------------------


@dataclass(slots=True)
class Reply:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class BodyOnce:
    """An ASGI ``receive``: the whole body in one message, then (if asked again) a disconnect."""

    __slots__ = ("message",)

    def __init__(self, body: bytes) -> None:
        self.message: Message | None = {"type": "http.request", "body": body, "more_body": False}

    async def __call__(self) -> Message:
        message, self.message = self.message, None
        return message if message is not None else {"type": "http.disconnect"}


def _headers(user: str, length: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"host", b"bench.local"),
        (b"content-type", b"application/json"),
        (b"content-length", str(length).encode()),
        (b"x-user", user.encode()),
    ]


def bodies(numbers: Sequence[int]) -> list[bytes]:
    """One JSON body per request, all of the same length, each with a new prompt."""
    return [json.dumps({"prompt": f"{PROMPT}{n:09d}"}).encode() for n in numbers]


async def drive(app: ASGIApp, payloads: Sequence[bytes], user: str = USER) -> tuple[int, int]:
    """Call ``app`` once per body; the time it took (ns) and how many answered 200."""
    headers = _headers(user, len(payloads[0]))
    ok = 0

    async def send(message: Message) -> None:
        nonlocal ok
        if message["type"] == "http.response.start" and message["status"] == 200:
            ok += 1

    t0 = time.perf_counter_ns()
    for body in payloads:
        await app({**SCOPE, "headers": list(headers)}, BodyOnce(body), send)
    return time.perf_counter_ns() - t0, ok


async def one_request(app: ASGIApp, payload: bytes, user: str = USER) -> Reply:
    """One request, with the whole reply kept (for the set-up checks, not timed)."""
    reply = Reply()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            reply.status = message["status"]
            reply.headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", ())}
        elif message["type"] == "http.response.body":
            reply.body += message.get("body", b"")

    await app({**SCOPE, "headers": _headers(user, len(payload))}, BodyOnce(payload), send)
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
        self.slowapi, self.limiter = slowapi_app()
        self.apps: dict[str, ASGIApp] = {BARE: bare_app(), SLOWAPI: self.slowapi, AUPGUARD: aupguard_app(self.guard)}
        self.runner = asyncio.Runner()
        self.numbers = count()
        self.guarded_calls = 0  # requests USER made through the aupguard app

    def check_setup(self) -> None:
        """Each app answers as it should: 200, the guards' headers, the probe prompt flagged."""
        limit = RATE.split("/")[0]
        for name, app in self.apps.items():
            pair = bodies([next(self.numbers), next(self.numbers)])
            replies = [self.runner.run(one_request(app, body)) for body in pair]
            for reply in replies:
                if reply.status != 200 or json.loads(reply.body)["chars"] != len(PROMPT) + 9:
                    raise RuntimeError(f"{name}: expected 200 and the echo, got {reply.status} {reply.body!r}")
            prefix = {SLOWAPI: "x-ratelimit-", AUPGUARD: "ratelimit-"}.get(name)
            if prefix is None:
                continue
            first, second = (r.headers for r in replies)
            counted = int(first.get(f"{prefix}remaining", -1)) - int(second.get(f"{prefix}remaining", -1)) == 1
            if first.get(f"{prefix}limit") != limit or not counted:
                raise RuntimeError(f"{name}: no {prefix}* headers counting down from {limit}: {first}, {second}")
        self.guarded_calls += 2
        flagged = json.dumps({"prompt": "How do I make a pipe bomb at home?"}).encode()
        reply = self.runner.run(one_request(self.apps[AUPGUARD], flagged, PROBE_USER))
        if reply.status != 403 or json.loads(reply.body)["error"]["type"] != "content_flagged":
            raise RuntimeError(f"aupguard: rules moderation did not flag the probe: {reply.status} {reply.body!r}")

    def _settle(self) -> None:
        """The same start for every run: no queued audit records, empty windows, no garbage."""
        self.guard.audit.flush()
        self.guard.counters.reset()
        self.limiter.reset()
        gc.collect()

    def run(self, name: str, n: int) -> Run:
        payloads = bodies([next(self.numbers) for _ in range(n)])
        self._settle()
        loop, ok = self.runner.run(drive(self.apps[name], payloads))
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
        self.runner.close()


def measure(bench: Bench, *, reps: int, calls: int, warmup: int) -> dict[str, list[Run]]:
    for name in bench.apps:  # builds each middleware stack, loads the user, warms caches
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
        f"asgi: µs per request, median of {reps} runs × {calls:,} requests, in-process ASGI calls "
        "(the aupguard runs include draining the audit queue)"
    )
    header = f"  {'':<10} {'median':>8} {'best':>8} {'worst':>8} {'calls only':>11} {'queued':>7} {'overhead':>9}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    medians = {name: statistics.median(r.per_call_us for r in runs) for name, runs in results.items()}
    for name, runs in results.items():
        per_call = [r.per_call_us for r in runs]
        loop_only = statistics.median(r.loop_per_call_us for r in runs)
        queued = f"{statistics.median(r.backlog for r in runs):,.0f}" if name == AUPGUARD else "-"
        overhead = f"{medians[name] - medians[BARE]:+.1f}" if name != BARE else "-"
        print(
            f"  {name:<10} {medians[name]:>8.1f} {min(per_call):>8.1f} {max(per_call):>8.1f} "
            f"{loop_only:>11.1f} {queued:>7} {overhead:>9}"
        )
    return medians


def profile_aupguard(bench: Bench, calls: int, top: int = 30) -> None:
    """cProfile of the aupguard app's requests (deterministic, so it inflates call-heavy code)."""
    payloads = bodies([next(bench.numbers) for _ in range(calls)])
    bench._settle()
    profiler = cProfile.Profile()
    profiler.enable()
    bench.runner.run(drive(bench.apps[AUPGUARD], payloads))
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
    parser = argparse.ArgumentParser(prog="bench/asgi.py", description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the aupguard requests")
    args = parser.parse_args([] if argv is None else argv)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aupguard-bench-asgi-") as tmp:
        bench = Bench(Path(tmp))
        try:
            bench.check_setup()
            results = measure(bench, reps=args.reps, calls=args.calls, warmup=args.warmup)
            medians = report(results, reps=args.reps, calls=args.calls)
            if args.profile:
                profile_aupguard(bench, args.calls)
            expected = bench.guarded_calls
            written, close_s = bench.count_audit_records()
        finally:
            bench.close()

    ok = written == expected
    print(
        f"audit: {written:,} records for {USER} after close ({close_s * 1000:.0f} ms), "
        f"{expected:,} guarded requests made (warm-up included): {'none dropped' if ok else 'MISMATCH'}"
    )
    bare = medians[BARE]
    slow, guard = medians[SLOWAPI] - bare, medians[AUPGUARD] - bare
    ratio = guard / slow if slow > 0 else float("inf")
    verdict = "within" if ratio <= GOAL else "OVER"
    print(
        f"asgi: bare {bare:.0f} µs, slowapi {slow:+.0f} µs, aupguard {guard:+.0f} µs → "
        f"{ratio:.2f}× slowapi's overhead (goal ≤ {GOAL:g}×: {verdict}) [{time.perf_counter() - started:.1f} s]"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

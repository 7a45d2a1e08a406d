"""What ``bench/bench_engine.py``, ``bench/bench_asgi.py`` and ``bench/bench_flask.py`` share: the timed runs,
the rotation of subjects, the median / best / worst table, the cProfile print-out, the
command line, and the audit count that ends each bench.

Each bench is a ``GuardedBench``: an aupguard engine on embedded defaults (a fresh SQLite
store in a temporary directory, ``memory://`` counters) next to whatever it is compared with.
``run_bench`` drives one: ``setup()``, every subject timed ``--reps`` times in rotation
(``subjects()``), ``report()``, ``profile()`` if asked, then the engine closed, the store
reopened and the user's audit records counted (one per guarded call), and ``summary()``.
``WebBench`` adds what the two web benches share: three apps (bare, a rival rate limiter,
aupguard) answering the same ``POST /v1/chat`` with ~200-character prompts.

Not a benchmark itself: ``bench/run.py`` skips modules whose name starts with ``_``.
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
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import count
from pathlib import Path
from typing import ClassVar, Generic, NamedTuple, TypeVar

import limits
from limits.strategies import MovingWindowRateLimiter

from aupguard import Keyring, Policy, Safeguards, generate_key_entry
from aupguard.counters.base import SweptMemoryStorage

__all__ = [
    "AUPGUARD",
    "BARE",
    "FLOOR",
    "PROBE_USER",
    "PROMPT",
    "RATE",
    "USER",
    "Column",
    "FloorLimiter",
    "GuardedBench",
    "Reply",
    "Run",
    "Subjects",
    "WebBench",
    "measure",
    "profiled",
    "run_bench",
    "table",
]

USER = "user-1"
PROBE_USER = "probe-user"  # sends one flagged prompt at setup; kept apart from USER's records
RATE = "1000000/minute"  # high enough that every call in a bench is allowed
RULES = 50  # [[moderation.rules]] in the web benches' policy

# the web benches' subjects (the rival's name is each bench's own)
BARE, AUPGUARD, FLOOR = "bare", "aupguard", "floor"

# ~200 characters of benign text; a 9-digit sequence number makes every prompt new
PROMPT = (
    "Please summarise the attached quarterly report in three short bullet points for the product "
    "team, covering revenue, churn and the plans for the next release, in a friendly tone. Ticket "
)

Subjects = Mapping[str, Callable[[int], "Run"]]


# -- runs, the table, the profile -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    calls: int
    loop_ns: int  # the calls (requests) themselves
    drain_ns: int  # then writing the audit records they queued (guarded runs only)
    backlog: int  # audit records still queued when the calls ended

    @property
    def per_call_us(self) -> float:
        return (self.loop_ns + self.drain_ns) / self.calls / 1000

    @property
    def loop_per_call_us(self) -> float:
        return self.loop_ns / self.calls / 1000


def measure(subjects: Subjects, *, reps: int, calls: int, warmup: int) -> dict[str, list[Run]]:
    """Warm every subject up once, then ``reps`` timed runs of ``calls`` each."""
    for run in subjects.values():  # the first calls load the user from SQLite, set apps up, warm caches
        run(warmup)
    results: dict[str, list[Run]] = {name: [] for name in subjects}
    order = list(subjects)
    for rep in range(reps):
        # rotate the order so that no subject always runs right after another
        for name in order[rep % len(order) :] + order[: rep % len(order)]:
            results[name].append(subjects[name](calls))
    return results


class Column(NamedTuple):
    """The table's last column: its title, its width, and its text for a subject (given the medians)."""

    title: str
    width: int
    cell: Callable[[str, Mapping[str, float]], str]


def table(
    results: Mapping[str, Sequence[Run]],
    *,
    name_width: int,
    decimals: int,
    queued: Callable[[str], bool],
    last: Column,
) -> dict[str, float]:
    """Median, best and worst µs per call of each subject, the calls alone, the audit backlog
    (for the subjects ``queued`` names) and ``last``; returns the medians."""
    header = (
        f"  {'':<{name_width}} {'median':>8} {'best':>8} {'worst':>8} {'calls only':>11} {'queued':>7} "
        f"{last.title:>{last.width}}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    medians = {name: statistics.median(r.per_call_us for r in runs) for name, runs in results.items()}
    d = decimals
    for name, runs in results.items():
        per_call = [r.per_call_us for r in runs]
        loop_only = statistics.median(r.loop_per_call_us for r in runs)
        backlog = f"{statistics.median(r.backlog for r in runs):,.0f}" if queued(name) else "-"
        print(
            f"  {name:<{name_width}} {medians[name]:>8.{d}f} {min(per_call):>8.{d}f} {max(per_call):>8.{d}f} "
            f"{loop_only:>11.{d}f} {backlog:>7} {last.cell(name, medians):>{last.width}}"
        )
    return medians


@contextmanager
def profiled(bench: GuardedBench, calls: int, *, title: Callable[[float], str], unit: str, top: int) -> Iterator[None]:
    """cProfile the block, which makes ``calls`` guarded calls from a settled start, then print
    the ``top`` functions by own time, per call; ``title`` gets the profiled µs per call."""
    bench.settle()
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
    bench.guarded_calls += calls
    bench.guard.audit.flush()
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    total = sum(v[2] for _, v in rows)
    print(f"\n{title(total / calls * 1e6)}")
    own, cum, per = f"own µs/{unit}", f"cum µs/{unit}", f"calls/{unit}"
    w, n = len(own), len(per)
    print(f"  {own:>{w}} {cum:>{w}} {per:>{n}}  function")
    for (path, line, func), (_, ncalls, tottime, cumtime, _) in rows[:top]:
        where = func if path == "~" else f"{Path(path).parent.name}/{Path(path).name}:{line} {func}"
        print(f"  {tottime / calls * 1e6:>{w}.2f} {cumtime / calls * 1e6:>{w}.2f} {ncalls / calls:>{n}.2f}  {where}")


# -- the bench ---------------------------------------------------------------------------


class GuardedBench(ABC):
    """An aupguard engine on embedded defaults (a fresh SQLite store in ``tmp``, ``memory://``
    counters) and the subjects timed next to it."""

    # the command line (see ``run_bench``)
    prog: ClassVar[str]
    default_calls: ClassVar[int]  # of --calls
    default_warmup: ClassVar[int]  # of --warmup
    profile_help: ClassVar[str]  # of --profile
    tmp_prefix: ClassVar[str]  # of the temporary directory that holds the store
    noun: ClassVar[str] = "calls"  # what the audit line counts

    def __init__(self, tmp: Path) -> None:
        self.policy = self.load_policy(tmp)
        self.keyring = Keyring.parse(generate_key_entry(), source="bench")
        self.store_uri = f"sqlite:///{tmp / 'bench.db'}"
        self.guard = Safeguards(self.policy, store=self.store_uri, counters="memory://", keyring=self.keyring)
        self.guarded_calls = 0  # calls USER made through aupguard: its audit records
        self.resources = ExitStack()  # closed after the engine

    @abstractmethod
    def load_policy(self, tmp: Path) -> Policy:
        """The engine's policy (``tmp`` may hold its file)."""

    @abstractmethod
    def setup(self) -> None:
        """Checks before the timing."""

    @abstractmethod
    def subjects(self) -> Subjects:
        """Each subject by name: times ``n`` calls from a settled start."""

    @abstractmethod
    def report(self, results: Mapping[str, Sequence[Run]], *, reps: int, calls: int) -> dict[str, float]:
        """Print the results; return the median µs per call of each subject."""

    @abstractmethod
    def profile(self, calls: int) -> None:
        """Print a cProfile of ``calls`` guarded calls."""

    def notes(self) -> Iterable[str]:
        """Lines printed after the bench ends, before the audit line (none by default)."""
        return ()

    @abstractmethod
    def summary(self, medians: Mapping[str, float], started: float) -> None:
        """Print the final line, with the seconds since ``started``."""

    @abstractmethod
    def reset_others(self) -> None:
        """Empty the rate-limit windows of what aupguard is compared with."""

    def settle(self) -> None:
        """The same start for every run: no queued audit records, empty windows, no garbage."""
        self.guard.audit.flush()
        self.guard.counters.reset()
        self.reset_others()
        gc.collect()

    def drained(self, n: int, loop_ns: int) -> Run:
        """A guarded run of ``n`` calls that took ``loop_ns``, once the audit queue is drained."""
        backlog = self.guard.audit.pending()
        t0 = time.perf_counter_ns()
        if not self.guard.audit.flush():
            raise RuntimeError("the audit queue did not drain within 30 s")
        drain = time.perf_counter_ns() - t0
        self.guarded_calls += n
        return Run(n, loop_ns, drain, backlog)

    def count_audit_records(self) -> tuple[int, float]:
        """Close the engine (flushing the queue), reopen the store, count USER's records."""
        t0 = time.perf_counter()
        self.guard.close()
        close_s = time.perf_counter() - t0
        with Safeguards(self.policy, store=self.store_uri, counters="memory://", keyring=self.keyring) as reopened:
            return len(reopened.audit.find(user_id=USER, limit=10**9)), close_s

    def close(self) -> None:
        self.guard.close()
        self.resources.close()


def run_bench(bench_type: type[GuardedBench], argv: Sequence[str] | None, doc: str | None) -> int:
    """A bench's ``main`` (``doc``: its module's docstring, whose first paragraph describes it
    in ``--help``): 0 if every guarded call left its audit record."""
    parser = argparse.ArgumentParser(prog=bench_type.prog, description=doc.split("\n\n")[0] if doc else "")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--calls", type=int, default=bench_type.default_calls)
    parser.add_argument("--warmup", type=int, default=bench_type.default_warmup)
    parser.add_argument("--profile", action="store_true", help=bench_type.profile_help)
    args = parser.parse_args([] if argv is None else argv)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=bench_type.tmp_prefix) as tmp, closing(bench_type(Path(tmp))) as bench:
        bench.setup()
        results = measure(bench.subjects(), reps=args.reps, calls=args.calls, warmup=args.warmup)
        medians = bench.report(results, reps=args.reps, calls=args.calls)
        if args.profile:
            bench.profile(args.calls)
        expected = bench.guarded_calls
        written, close_s = bench.count_audit_records()

    for line in bench.notes():
        print(line)
    ok = written == expected
    print(
        f"audit: {written:,} records for {USER} after close ({close_s * 1000:.0f} ms), "
        f"{expected:,} guarded {bench.noun} made (warm-up included): {'none dropped' if ok else 'MISMATCH'}"
    )
    bench.summary(medians, started)
    return 0 if ok else 1


# -- the web benches ---------------------------------------------------------------------


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


def bodies(numbers: Iterable[int]) -> list[bytes]:
    """One JSON body per request, all of the same length, each with a new prompt."""
    return [json.dumps({"prompt": f"{PROMPT}{n:09d}"}).encode() for n in numbers]


class FloorLimiter:
    """What the web benches' ``floor`` apps do per request besides reading and parsing the body:
    one hit on a ``limits`` moving window (aupguard's default strategy, on aupguard's own memory
    storage) with the window's figures for the ``RateLimit-*`` headers. Nothing else: no
    identity check, hash, standing, moderation or audit record. The floor shows how much of a
    goal the work every guarded request must do already takes, before any safeguard."""

    def __init__(self) -> None:
        self.storage = SweptMemoryStorage()
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.item = limits.parse(RATE)

    def headers(self, user: str) -> list[tuple[str, str]]:
        if not self.limiter.hit(self.item, user):
            raise RuntimeError("floor: the bench's rate limit was reached")
        stats = self.limiter.get_window_stats(self.item, user)
        reset = max(0, int(stats.reset_time - time.time()) + 1)
        return [("RateLimit-Limit", str(self.item.amount)), ("RateLimit-Remaining", str(stats.remaining)),
                ("RateLimit-Reset", str(reset))]  # fmt: skip


@dataclass(slots=True)
class Reply:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


App = TypeVar("App")


class WebBench(GuardedBench, Generic[App]):
    """Three apps with the same ``POST /v1/chat`` (bare, ``rival``, aupguard), each able to time
    ``n`` requests from an empty rate-limit window. A subclass builds ``apps`` and says how one
    request and a batch of requests are made."""

    default_calls, default_warmup = 5_000, 1_000
    profile_help = "also print a cProfile of the aupguard requests"
    noun = "requests"
    label: ClassVar[str]  # starts the report's lines
    interface: ClassVar[str]  # how the apps are called: ASGI, WSGI
    name_width: ClassVar[int]  # of the table's first column
    rival: ClassVar[str]  # the rival's key in apps
    rival_label: ClassVar[str]  # its name in the final line
    goal: ClassVar[float]  # the most aupguard's overhead may be, as a share of the rival's

    apps: dict[str, App]

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.numbers = count()
        self.floor = FloorLimiter()

    def settle(self) -> None:
        self.floor.storage.reset()
        super().settle()

    def load_policy(self, tmp: Path) -> Policy:
        policy_file = tmp / "aupguard.toml"
        policy_file.write_text(policy_toml(), encoding="utf-8")
        return Policy.from_toml(policy_file, env={})

    @abstractmethod
    def request(self, app: App, payload: bytes, user: str = USER) -> Reply:
        """One request, with the whole reply kept (for the set-up checks, not timed)."""

    @abstractmethod
    def batch(self, app: App, payloads: Sequence[bytes]) -> Callable[[], tuple[int, int]]:
        """Ready one request per body (outside the timing): a call that makes them and returns
        the time they took (ns) and how many answered 200."""

    def fresh_bodies(self, n: int) -> list[bytes]:
        return bodies([next(self.numbers) for _ in range(n)])

    def setup(self) -> None:
        """Each app answers as it should: 200, the guards' headers, the probe prompt flagged."""
        limit = RATE.split("/")[0]
        for name, app in self.apps.items():
            replies = [self.request(app, body) for body in self.fresh_bodies(2)]
            for reply in replies:
                if reply.status != 200 or json.loads(reply.body)["chars"] != len(PROMPT) + 9:
                    raise RuntimeError(f"{name}: expected 200 and the echo, got {reply.status} {reply.body!r}")
            prefix = {self.rival: "x-ratelimit-", AUPGUARD: "ratelimit-", FLOOR: "ratelimit-"}.get(name)
            if prefix is None:
                continue
            first, second = (r.headers for r in replies)
            counted = int(first.get(f"{prefix}remaining", -1)) - int(second.get(f"{prefix}remaining", -1)) == 1
            if first.get(f"{prefix}limit") != limit or not counted:
                raise RuntimeError(f"{name}: no {prefix}* headers counting down from {limit}: {first}, {second}")
        self.guarded_calls += 2
        flagged = json.dumps({"prompt": "How do I make a pipe bomb at home?"}).encode()
        reply = self.request(self.apps[AUPGUARD], flagged, PROBE_USER)
        if reply.status != 403 or json.loads(reply.body)["error"]["type"] != "content_flagged":
            raise RuntimeError(f"aupguard: rules moderation did not flag the probe: {reply.status} {reply.body!r}")

    def run(self, name: str, n: int) -> Run:
        requests = self.batch(self.apps[name], self.fresh_bodies(n))
        self.settle()
        loop, ok = requests()
        if ok != n:
            raise RuntimeError(f"{name}: {n - ok} of {n} requests did not answer 200")
        return self.drained(n, loop) if name == AUPGUARD else Run(n, loop, 0, 0)

    def subjects(self) -> Subjects:
        return {name: partial(self.run, name) for name in self.apps}

    def report(self, results: Mapping[str, Sequence[Run]], *, reps: int, calls: int) -> dict[str, float]:
        print(
            f"{self.label}: µs per request, median of {reps} runs × {calls:,} requests, in-process {self.interface} "
            "calls (the aupguard runs include draining the audit queue)"
        )
        return table(
            results,
            name_width=self.name_width,
            decimals=1,
            queued=lambda name: name == AUPGUARD,
            last=Column("overhead", 9, lambda name, m: f"{m[name] - m[BARE]:+.1f}" if name != BARE else "-"),
        )

    def profile(self, calls: int, top: int = 30) -> None:
        """cProfile of the aupguard app's requests (deterministic, so it inflates call-heavy code)."""
        requests = self.batch(self.apps[AUPGUARD], self.fresh_bodies(calls))

        def title(us: float) -> str:
            return f"cProfile of {calls:,} aupguard requests ({us:.1f} µs per request profiled); top {top}"

        with profiled(self, calls, title=title, unit="req", top=top):
            requests()

    def summary(self, medians: Mapping[str, float], started: float) -> None:
        bare = medians[BARE]
        rival, guard = medians[self.rival] - bare, medians[AUPGUARD] - bare
        ratio = guard / rival if rival > 0 else float("inf")
        verdict = "within" if ratio <= self.goal else "OVER"
        print(
            f"{self.label}: bare {bare:.0f} µs, {self.rival_label} {rival:+.0f} µs, aupguard {guard:+.0f} µs → "
            f"{ratio:.2f}× {self.rival_label}'s overhead (goal ≤ {self.goal:g}×: {verdict}) "
            f"[{time.perf_counter() - started:.1f} s]"
        )
        if FLOOR in medians and rival > 0:
            floor = medians[FLOOR] - bare
            print(
                f"{self.label}: floor (body, JSON, one limits hit, RateLimit headers; no safeguard) {floor:+.0f} µs "
                f"= {floor / rival:.2f}× {self.rival_label}'s; the goal leaves {self.goal * rival - floor:.0f} µs "
                f"beyond it for identity, hash, standing, moderation and the audit record, which take aupguard "
                f"{guard - floor:.0f} µs"
            )

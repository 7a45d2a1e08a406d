"""Moderation cost per guarded request as a conversation grows (1, 10 and 50 turns): every
piece of the request screened (``[moderation] scope = "request"``, the default) next to the
old floor, the last user turn alone (``scope = "last_turn"``).

An N-turn conversation is N user turns with the N-1 assistant answers between them (2N-1
messages of 200-600 characters of benign prose); the last message is a new user turn. Each
request is made into a ``PromptRequest`` by ``prompt_from_body`` outside the timing (its own
cost is printed apart), then ``guard.check(user, prompt=request)`` and
``await guard.acheck(...)`` are timed one call at a time. Two setups, in one process:

* ``rules``: 300 keyword rules and five patterns (local moderators: a conversation's units
  are cached like remote verdicts, the user turns joined are read on every request), timed
  over several rounds of repeated calls;
* ``openai``: ``[moderation.openai]`` pointed at the local Messages-API double's
  ``/v1/moderations`` (clean verdicts, no delay), in two cases. ``replayed``: the
  conversation sent turn by turn, request k being request k-1 plus one assistant answer and
  one user turn, with the verdict cache warm from request k-1 (expected: 1 or 2 new moderator
  calls per request after the first, the unit the new turns land in and one they may
  start, at a flat cost). ``cold``: a fresh engine (one call on other text first, so its
  HTTP connection is open) and a conversation it never saw (one call per unit of about
  2,000 characters). Each round uses a conversation of its own.

Reported per request: median and p90 µs, and the moderator HTTP calls the double received
(counted from its request record); then request ÷ last_turn of the medians. The double runs
in this process, so the time it takes to answer (and its threads' share of the GIL) is part
of the ``openai`` figures: they show how the cost grows, the call counts are exact. Audit
records are written by the engine's writer thread meanwhile; the queue is drained between
batches, outside the timing. Exit status 0 when every benign request was allowed, every call
count was the expected one and a keyword in an earlier assistant turn was caught (and missed
by ``last_turn``).
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import string
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aupguard import Decision, Keyring, Policy, Safeguards, generate_key_entry
from aupguard.engine.prompt_policy import PromptRequest
from aupguard.engine.request_body import prompt_from_body
from aupguard.moderation.openai_compatible import OpenAICompatibleModerator
from aupguard.moderation.units import screening_units
from aupguard.testing import MODERATIONS_PATH, MessagesDouble

__all__ = ["SCOPES", "TURNS", "USER", "Engines", "conversation", "main", "messages_body", "rules_policy"]

TURNS = (1, 10, 50)
SCOPES = ("request", "last_turn")
USER, PROBE_USER = "user-1", "probe-user"
RATE = "1000000/minute"  # every call in the bench is allowed
KEYWORD_RULES = 300
PROBE_KEYWORD = "credit card dump"

# benign prose: no keyword or pattern of rules_policy() can match it
_PROSE = (
    "the quarterly report covers revenue churn and plans for the next release in a friendly tone "
    "please summarise each section for product team with short bullet points about customers "
    "who asked support how onboarding went last week while our engineers shipped faster search "
    "results better caching clearer error messages and smaller pages so that mobile users wait "
    "less we also compared pricing tiers looked at retention by cohort and listed open questions"
)
_WORDS = _PROSE.split()
_PATTERNS = (
    ("weapons", r"(?i)\bbuild (a|an) (bomb|explosive)\b"),
    ("cyber", r"\bransom\w*\s+(kit|builder)\b"),
    ("fraud", r"\b(fake|forged) (passport|id card)s?\b"),
    ("self-harm", r"\bhow (much|many) .{0,40} to overdose\b"),
    ("spam", r"\bbuy now\b.{0,80}\bdiscount\b"),
)


def rules_policy(scope: str) -> Policy:
    """300 rules of one keyword phrase each (block) and five pattern rules, as bench/bench_rules.py."""
    rng = random.Random(7)

    def word() -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 11)))

    keywords = [PROBE_KEYWORD] + [f"{word()} {word()}" for _ in range(KEYWORD_RULES - 1)]
    rules: list[dict[str, Any]] = [
        {"category": f"cat{i % 12}", "action": "block", "keywords": [k]} for i, k in enumerate(keywords)
    ]
    rules += [{"category": c, "action": "review", "patterns": [p]} for c, p in _PATTERNS]
    return _policy({"scope": scope, "rules": rules})


def openai_policy(scope: str, url: str) -> Policy:
    return _policy({"scope": scope, "timeout": "2s", "openai": {"url": url}})


def _policy(moderation: dict[str, Any]) -> Policy:
    return Policy.from_mapping({"limits": {"default": RATE, "throttled": "1000/minute"}, "moderation": moderation},
                               env={})  # fmt: skip


def conversation(tag: str, turns: int) -> list[dict[str, str]]:
    """``turns`` user turns and the answers between them, 200-600 characters each; ``tag``
    makes the text (and so every screening unit) its own."""
    rng = random.Random(tag)
    out = []
    for i in range(2 * turns - 1):
        size = rng.randint(200, 600)
        words = [f"[{tag} #{i}]"]
        while sum(map(len, words)) + len(words) < size:
            words.append(rng.choice(_WORDS))
        out.append({"role": "assistant" if i % 2 else "user", "content": " ".join(words) + "."})
    return out


def messages_body(messages: Sequence[dict[str, str]]) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 512, "messages": list(messages)}


def _request(messages: Sequence[dict[str, str]]) -> PromptRequest:
    return prompt_from_body(messages_body(messages))


# -- figures ------------------------------------------------------------------------------


@dataclass(slots=True)
class Cell:
    """One setup × case × size × scope: µs per request (sync, async), moderator calls per request."""

    check: list[float] = field(default_factory=list)
    acheck: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)

    def times(self, mode: str) -> list[float]:
        return self.check if mode == "check" else self.acheck

    def median(self, mode: str) -> float:
        return statistics.median(self.times(mode))


Key = tuple[str, int, str]  # (case, turns, scope)


def _p90(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]


def _calls(cell: Cell) -> str:
    if not cell.calls:
        return "-"
    low, high = min(cell.calls), max(cell.calls)
    return f"{low}" if low == high else f"{low}-{high}"


def print_table(title: str, cells: dict[Key, Cell], cases: Sequence[str]) -> None:
    print(title)
    header = f"  {'case':<9} {'turns':>5} {'msgs':>4} {'scope':<10} {'check med':>10} {'p90':>9} " \
             f"{'acheck med':>11} {'p90':>9} {'mod calls':>9}"  # fmt: skip
    print(header)
    print("  " + "-" * (len(header) - 2))
    for case in cases:
        for turns in TURNS:
            for scope in SCOPES:
                cell = cells[case, turns, scope]
                lead = f"{case:<9} {turns:>5} {2 * turns - 1:>4}" if scope == SCOPES[0] else " " * 20
                print(
                    f"  {lead} {scope:<10} {cell.median('check'):>10.1f} {_p90(cell.check):>9.1f} "
                    f"{cell.median('acheck'):>11.1f} {_p90(cell.acheck):>9.1f} {_calls(cell):>9}"
                )
            request, floor = cells[case, turns, "request"], cells[case, turns, "last_turn"]
            ratios = [request.median(m) / floor.median(m) for m in ("check", "acheck")]
            print(f"  {'':20} {'ratio':<10} {ratios[0]:>9.2f}× {'':>9} {ratios[1]:>10.2f}×")


def _ns_to_us(ns: int) -> float:
    return ns / 1000


# -- the engines ----------------------------------------------------------------------------


class Engines:
    """Guards on ``memory://`` store and counters, one asyncio.Runner for the async calls, and
    everything closed at the end."""

    def __init__(self) -> None:
        self.keyring = Keyring.parse(generate_key_entry(), source="bench")
        self.runner = asyncio.Runner()
        self.open: list[Safeguards] = []

    def make(self, policy: Policy) -> Safeguards:
        guard = Safeguards(policy, store="memory://", counters="memory://", keyring=self.keyring)
        self.open.append(guard)
        return guard

    def dispose(self, guard: Safeguards) -> None:
        """Close an engine and its remote moderators' HTTP clients (``close()`` leaves those)."""
        for moderator in guard.moderation.moderators:
            if isinstance(moderator, OpenAICompatibleModerator):
                moderator.close()
                self.runner.run(moderator.aclose())
        guard.close()
        self.open.remove(guard)

    def close(self) -> None:
        for guard in list(self.open):
            self.dispose(guard)
        self.runner.close()

    def check(self, guard: Safeguards, request: PromptRequest, mode: str, user: str = USER) -> tuple[int, Decision]:
        """One guarded call (``mode``: check or acheck): its ns and its decision."""
        if mode == "check":
            t0 = time.perf_counter_ns()
            decision = guard.check(user, prompt=request)
            return time.perf_counter_ns() - t0, decision
        return self.runner.run(self._acheck(guard, request, user))

    @staticmethod
    async def _acheck(guard: Safeguards, request: PromptRequest, user: str) -> tuple[int, Decision]:
        t0 = time.perf_counter_ns()
        decision = await guard.acheck(user, prompt=request)
        return time.perf_counter_ns() - t0, decision

    def batch(self, guard: Safeguards, request: PromptRequest, mode: str, n: int) -> tuple[list[float], bool]:
        """``n`` calls of the same request from a settled start, each timed (µs)."""
        _settle(guard)
        if mode == "check":
            check, times, allowed = guard.check, [], True
            for _ in range(n):
                t0 = time.perf_counter_ns()
                decision = check(USER, prompt=request)
                times.append(_ns_to_us(time.perf_counter_ns() - t0))
                allowed = allowed and decision.allowed
            return times, allowed
        return self.runner.run(self._abatch(guard, request, n))

    @staticmethod
    async def _abatch(guard: Safeguards, request: PromptRequest, n: int) -> tuple[list[float], bool]:
        acheck, times, allowed = guard.acheck, [], True
        for _ in range(n):
            t0 = time.perf_counter_ns()
            decision = await acheck(USER, prompt=request)
            times.append(_ns_to_us(time.perf_counter_ns() - t0))
            allowed = allowed and decision.allowed
        return times, allowed


def _settle(guard: Safeguards) -> None:
    """No queued audit records and no garbage left by the previous batch."""
    if not guard.audit.flush():
        raise RuntimeError("the audit queue did not drain within 30 s")
    gc.collect()


def _rotated(items: Sequence[Any], by: int) -> list[Any]:
    """Run ``items`` in a different order each round, so that none always runs after another."""
    by %= len(items)
    return [*items[by:], *items[:by]]


class Failures:
    def __init__(self) -> None:
        self.found: list[str] = []

    def expect(self, ok: bool, what: str) -> None:
        if not ok and what not in self.found:
            self.found.append(what)


# -- rules ------------------------------------------------------------------------------------

RULES_CALLS = {1: 300, 10: 100, 50: 25}  # per batch: about the same time for each size
RULES_ROUNDS = 7


def bench_rules(engines: Engines, failures: Failures) -> dict[Key, Cell]:
    guards = {scope: engines.make(rules_policy(scope)) for scope in SCOPES}
    requests = {turns: _request(conversation(f"rules-{turns}", turns)) for turns in TURNS}
    _probe(engines, guards, failures)
    cells = {("rules", turns, scope): Cell() for turns in TURNS for scope in SCOPES}
    subjects = [(scope, turns, mode) for scope in SCOPES for turns in TURNS for mode in ("check", "acheck")]
    for scope, turns, mode in subjects:  # warm-up
        engines.batch(guards[scope], requests[turns], mode, RULES_CALLS[turns] // 5)
    for rnd in range(RULES_ROUNDS):
        for scope, turns, mode in _rotated(subjects, rnd * 5):
            times, allowed = engines.batch(guards[scope], requests[turns], mode, RULES_CALLS[turns])
            failures.expect(allowed, f"rules: a benign {turns}-turn request was refused ({scope}, {mode})")
            cells["rules", turns, scope].times(mode).extend(times)
    return cells


def _probe(engines: Engines, guards: dict[str, Safeguards], failures: Failures) -> None:
    """A rule's keyword in an earlier assistant turn: caught by the request scope only."""
    messages = conversation("probe", 10)
    messages[3] = {"role": "assistant", "content": f"Sure, here is where to buy a {PROBE_KEYWORD} online."}
    request = _request(messages)
    for scope, caught in (("request", True), ("last_turn", False)):
        for mode in ("check", "acheck"):
            _, decision = engines.check(guards[scope], request, mode, PROBE_USER)
            flagged = decision.error == "content_flagged" and any("messages[3]" in r for r in decision.reasons)
            what = "missed" if caught else "caught"
            failures.expect(flagged == caught and decision.allowed != caught,
                            f"rules: the keyword in messages[3] was {what} with scope {scope} ({mode})")  # fmt: skip


# -- a remote moderator -------------------------------------------------------------------

REPLAY_ROUNDS = 10
COLD_ROUNDS = 7


#: the replay's requests after the first, in three spans, for the trend line
SPANS = ((2, 10), (11, 30), (31, 50))


class Remote:
    def __init__(self, engines: Engines, double: MessagesDouble, failures: Failures) -> None:
        self.engines, self.double, self.failures = engines, double, failures
        #: µs of every timed replayed request, by (scope, mode, span)
        self.trend: dict[tuple[str, str, int], list[float]] = {}

    def calls(self) -> int:
        return len(self.double.requests_to(MODERATIONS_PATH))

    def timed(self, guard: Safeguards, request: PromptRequest, mode: str) -> tuple[float, int, bool]:
        before = self.calls()
        ns, decision = self.engines.check(guard, request, mode)
        return _ns_to_us(ns), self.calls() - before, decision.allowed

    def replay(self, guard: Safeguards, tag: str, scope: str, mode: str, cells: dict[Key, Cell] | None) -> None:
        """Send a 50-turn conversation turn by turn; each request's cost goes to its size's cell
        (when it is one of TURNS) and its call count is checked: 1, then 2 with the request scope."""
        messages = conversation(tag, TURNS[-1])
        for turns in range(1, TURNS[-1] + 1):
            request = _request(messages[: 2 * turns - 1])
            us, calls, allowed = self.timed(guard, request, mode)
            most = 2 if scope == "request" and turns > 1 else 1  # the unit the new turns land in, and one they start
            self.failures.expect(allowed, f"openai replayed: a benign request was refused ({scope}, {mode})")
            self.failures.expect(1 <= calls <= most, f"openai replayed ({scope}): request {turns} made {calls} "
                                                     f"moderator calls, not 1 to {most}")  # fmt: skip
            if cells is None:
                continue
            if turns in TURNS:
                cell = cells["replayed", turns, scope]
                cell.times(mode).append(us)
                cell.calls.append(calls)
            span = next((i for i, (low, high) in enumerate(SPANS) if low <= turns <= high), None)
            if span is not None:
                self.trend.setdefault((scope, mode, span), []).append(us)
        _settle(guard)

    def cold(self, tag: str, turns: int, scope: str, mode: str, cell: Cell) -> None:
        guard = self.engines.make(openai_policy(scope, self.double.moderations_url))
        try:
            _, _, allowed = self.timed(guard, _request(conversation(f"{tag}-prime", 1)), mode)  # opens the connection
            _settle(guard)
            request = _request(conversation(tag, turns))
            us, calls, allowed = self.timed(guard, request, mode)
        finally:
            self.engines.dispose(guard)
        expected = len(screening_units(request.pieces)) if scope == "request" else 1  # one call per unit
        self.failures.expect(allowed, f"openai cold: a benign request was refused ({scope}, {mode})")
        self.failures.expect(calls == expected, f"openai cold ({scope}): a {turns}-turn request made {calls} "
                                                f"moderator calls, not {expected}")  # fmt: skip
        cell.times(mode).append(us)
        cell.calls.append(calls)


def bench_remote(engines: Engines, double: MessagesDouble, failures: Failures) -> tuple[dict[Key, Cell], str]:
    remote = Remote(engines, double, failures)
    cells = {(case, turns, scope): Cell() for case in ("replayed", "cold") for turns in TURNS for scope in SCOPES}
    guards = {scope: engines.make(openai_policy(scope, double.moderations_url)) for scope in SCOPES}
    subjects = [(scope, mode) for scope in SCOPES for mode in ("check", "acheck")]
    for scope, mode in subjects:  # warm-up: clients made, connections open
        remote.replay(guards[scope], f"warm-{scope}-{mode}", scope, mode, None)
    for rnd in range(REPLAY_ROUNDS):
        for scope, mode in _rotated(subjects, rnd):
            remote.replay(guards[scope], f"replay-{rnd}-{scope}-{mode}", scope, mode, cells)
    cold = [(turns, scope, mode) for turns in TURNS for scope in SCOPES for mode in ("check", "acheck")]
    for rnd in range(COLD_ROUNDS):
        for turns, scope, mode in _rotated(cold, rnd * 5):
            remote.cold(f"cold-{rnd}-{turns}-{scope}-{mode}", turns, scope, mode, cells["cold", turns, scope])
    return cells, _trend(remote.trend)


def _trend(trend: dict[tuple[str, str, int], list[float]]) -> str:
    """Median µs of the replayed requests by span of the conversation: flat if the cache works."""
    spans = " | ".join(f"{low}-{high}" for low, high in SPANS)
    parts = []
    for scope in SCOPES:
        for mode in ("check", "acheck"):
            figures = " | ".join(f"{statistics.median(trend[scope, mode, i]):.0f}" for i in range(len(SPANS)))
            parts.append(f"{scope} {mode} {figures}")
    return f"replayed, median µs of requests {spans} (turns): " + "; ".join(parts)


@contextmanager
def _double() -> Iterator[MessagesDouble]:
    double = MessagesDouble().start()
    try:
        yield double
    finally:
        double.stop()


def _body_cost() -> str:
    """What making the PromptRequest costs (outside the timings above: the adapters pay it)."""
    figures = []
    for turns in TURNS:
        body = messages_body(conversation(f"parse-{turns}", turns))
        runs = []
        for _ in range(5):
            n = max(5, 500 // turns)
            t0 = time.perf_counter_ns()
            for _ in range(n):
                prompt_from_body(body)
            runs.append((time.perf_counter_ns() - t0) / n / 1000)
        figures.append(f"{turns} turns {statistics.median(runs):.0f} µs")
    return ", ".join(figures)


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()
    failures = Failures()
    # what is already loaded (the SDKs, pydantic's models) is left out of every collection:
    # a full one would take ~0.1 s each time a batch settles
    gc.collect()
    gc.freeze()
    engines = Engines()
    try:
        rules = bench_rules(engines, failures)
        rules_s = time.perf_counter() - started
        with _double() as double:
            remote, trend = bench_remote(engines, double, failures)
    finally:
        engines.close()
        gc.unfreeze()
        gc.collect()  # the SDK clients made for the runner's loop go now, while no loop runs
    print_table(
        f"conversation: rules ({KEYWORD_RULES} keywords, {len(_PATTERNS)} patterns), µs per request, median / p90 "
        f"of {RULES_ROUNDS} rounds × {', '.join(map(str, RULES_CALLS.values()))} calls [{rules_s:.1f} s]",
        rules,
        ["rules"],
    )
    print_table(
        f"conversation: openai moderator (the double's /v1/moderations), µs per request, median / p90 of "
        f"{REPLAY_ROUNDS} replays, {COLD_ROUNDS} cold engines",
        remote,
        ["replayed", "cold"],
    )
    print(f"  {trend}")
    print(f"  prompt_from_body (not in the figures above): {_body_cost()}")
    for failure in failures.found:
        print(f"  FAILED: {failure}")
    replay = "1 or 2 moderator calls per request after the first" if not failures.found else "see FAILED"
    print(
        f"conversation: a 50-turn conversation replayed turn by turn: {replay}; request ÷ last_turn at 50 turns: "
        f"rules {_ratio(rules, 'rules')}, openai replayed {_ratio(remote, 'replayed')}, "
        f"cold {_ratio(remote, 'cold')} [{time.perf_counter() - started:.1f} s]"
    )
    return 1 if failures.found else 0


def _ratio(cells: dict[Key, Cell], case: str, turns: int = TURNS[-1]) -> str:
    request, floor = cells[case, turns, "request"], cells[case, turns, "last_turn"]
    return "/".join(f"{request.median(m) / floor.median(m):.1f}×" for m in ("check", "acheck"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

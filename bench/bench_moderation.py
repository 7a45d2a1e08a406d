"""What moderating a prompt adds to a Claude call, ``before`` against ``parallel``.

The local Messages-API double plays both Claude (the app's call answers after 400 ms) and
Claude-as-moderator (a clean verdict after 150 ms), as in the issue. Three ways, the same
prompts, in one run: the bare call; ``guard.acall`` with ``[moderation] mode = "before"``;
the same with ``mode = "parallel"``. Each prompt is new (no verdict cache hits). Reported:
median added latency over the bare call, and as a share of the upstream's 400 ms
(goal: parallel adds at most 5 %; before adds about the moderator's 150 ms).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence

from aupguard import Keyring, Policy, ResolvedPrompt, Safeguards, generate_key_entry
from aupguard.testing import MessagesDouble, RecordedRequest, Reply

__all__ = ["main"]

UPSTREAM, MODERATOR = 0.400, 0.150
CLEAN = json.dumps({"violation": False, "categories": [], "explanation": "benign"})


def _route(request: RecordedRequest) -> Reply:
    if "<message>" in request.user_text:
        return Reply(text=CLEAN, delay=MODERATOR)
    return Reply(text="an answer", delay=UPSTREAM)


async def _measure(double: MessagesDouble, mode: str | None, rounds: int, tag: str) -> list[float]:
    client = double.async_client()

    async def ask(prompt: ResolvedPrompt) -> str:
        message = await client.messages.create(
            model="claude-sonnet-5-5", max_tokens=50, messages=[{"role": "user", "content": prompt.text}]
        )
        return message.id

    guard = None
    if mode is not None:
        os.environ["BENCH_ANTHROPIC_KEY"] = "test-key"
        policy = Policy.from_mapping(
            {"moderation": {"mode": mode, "timeout": "2s",
                            "claude": {"base_url": double.url, "api_key_env": "BENCH_ANTHROPIC_KEY"}}},
            env={},
        )  # fmt: skip
        ring = Keyring.parse(generate_key_entry(), source="bench")
        guard = Safeguards(policy, store=f"sqlite:///{tempfile.mkdtemp()}/bench.db", keyring=ring)
    times = []
    for n in range(rounds + 1):
        prompt = f"question {tag} {n}: what is the capital of France?"
        start = time.perf_counter()
        if guard is None:
            await ask(ResolvedPrompt(prompt))
        else:
            await guard.acall("bench-user", prompt, ask)
        if n:  # the first round warms connections
            times.append(time.perf_counter() - start)
    if guard is not None:
        await guard.aclose()
    return times


def main(argv: Sequence[str] | None = None) -> int:
    rounds = 10
    double = MessagesDouble().start()
    try:
        double.messages.responder = _route
        results = {}
        for mode in (None, "before", "parallel"):
            results[mode] = statistics.median(asyncio.run(_measure(double, mode, rounds, str(mode))))
    finally:
        double.stop()
        # the SDK clients made for the closed event loops go now, while no loop runs: later, a
        # running loop would get their close scheduled on it and log "Event loop is closed"
        gc.collect()
    bare = results[None]
    print(f"moderation modes: upstream {UPSTREAM * 1000:.0f} ms, moderator {MODERATOR * 1000:.0f} ms, "
          f"median of {rounds} calls each")  # fmt: skip
    for mode in ("before", "parallel"):
        added = results[mode] - bare
        print(f"  {mode:<9} {results[mode] * 1000:7.1f} ms  adds {added * 1000:6.1f} ms "
              f"= {added / UPSTREAM * 100:5.1f} % of the upstream")  # fmt: skip
    share = (results["parallel"] - bare) / UPSTREAM * 100
    verdict = "within" if share <= 5 else "OVER"
    print(f"moderation: bare {bare * 1000:.0f} ms; before +{(results['before'] - bare) * 1000:.0f} ms; "
          f"parallel +{(results['parallel'] - bare) * 1000:.1f} ms ({share:.1f} %, goal ≤ 5 %: {verdict})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A small HTTP/1.1 load generator for ``bench/bench_scale.py`` and ``bench/soak.py``: processes of
asyncio keep-alive connections posting ``POST /v1/chat`` with ~200-character prompts as
1,000 users in rotation; every ``flag_every``-th request of a connection sends a prompt the
rules flag, as one of 20 "bad" users. Each process reports how many answers had each status
and each request's latency (µs, a sample of at most 20,000 per process).

With ``rate`` (requests per second over all processes) the load is offered at that rate
instead of as fast as answers come: each connection sends on its own schedule, and a
request's latency counts from when it was due (a server that falls behind is charged for
the wait, not hidden by it).

Run as a script by ``drive()``: ``python bench/_load.py PORT SECONDS FIRST CONNECTIONS FLAG_EVERY KEYS RATE``.
Not a benchmark itself (bench/run.py skips modules whose name starts with ``_``).
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FLAGGED", "Load", "drive"]

PROMPT = "Please summarise the attached quarterly report in three short bullet points for the team. Ticket "
FLAGGED = "forbidden phrase 7"  # bench policies block it ([[moderation.rules]] keyword)
_SAMPLE = 20_000


@dataclass
class Load:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # error kinds of the answers that were not 200
    latencies_us: list[float] = field(default_factory=list)
    flagged_sent: int = 0

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    def add(self, other: Load) -> None:
        self.statuses.update(other.statuses)
        self.errors.update(other.errors)
        self.latencies_us.extend(other.latencies_us)
        self.flagged_sent += other.flagged_sent

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_us)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def _request(n: int, flagged: bool, keys: dict[str, str] | None) -> bytes:
    """``POST /v1/chat`` as a user (``x-user``), or with ``keys`` a Messages-API call with the
    user's gateway key."""
    user = f"bad-{n % 20}" if flagged else f"user-{n % 1000}"
    prompt = f"{PROMPT}{n} {FLAGGED}" if flagged else f"{PROMPT}{n}"
    if keys is None:
        body = json.dumps({"prompt": prompt}).encode()
        who, path = f"x-user: {user}", "/v1/chat"
    else:
        messages = [{"role": "user", "content": prompt}]
        body = json.dumps({"model": "claude-sonnet-5-5", "max_tokens": 16, "messages": messages}).encode()
        who, path = f"x-api-key: {keys[user]}\r\nanthropic-version: 2023-06-01", "/v1/messages"
    head = (
        f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        f"{who}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(
    port: int, stop_at: float, offset: int, flag_every: int, load: Load, keys: dict[str, str] | None,
    interval: float = 0.0,
) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = offset
    due = time.perf_counter() + random.random() * interval  # connections spread over one interval
    try:
        while time.monotonic() < stop_at:
            flagged = flag_every > 0 and n % flag_every == 0
            request = _request(n, flagged, keys)
            if interval:
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                started, due = due, due + interval
            else:
                started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            answer = await reader.readexactly(length)
            elapsed = (time.perf_counter() - started) * 1e6
            if b" " not in status_line:
                raise RuntimeError(f"port {port}: not an HTTP answer: {status_line[:80]!r}")
            status = int(status_line.split(b" ")[1])
            load.statuses[status] += 1
            if status != 200:
                load.errors[json.loads(answer).get("error", {}).get("type", "?")] += 1
            load.flagged_sent += flagged
            if len(load.latencies_us) < _SAMPLE:
                load.latencies_us.append(elapsed)
            elif random.random() < _SAMPLE / load.answered:
                load.latencies_us[random.randrange(_SAMPLE)] = elapsed
            n += 1
    finally:
        writer.close()


def _run(
    port: int, seconds: float, first: int, connections: int, flag_every: int, keys_file: str, rate: float = 0.0
) -> Load:
    load = Load()
    keys = json.loads(Path(keys_file).read_text()) if keys_file else None
    interval = connections / rate if rate else 0.0

    async def run() -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(_connection(port, stop_at, first + c * 100_000, flag_every, load, keys, interval)
                               for c in range(connections)))  # fmt: skip

    asyncio.run(run())
    return load


def drive(
    port: int,
    seconds: float,
    *,
    processes: int = 2,
    connections: int = 16,
    flag_every: int = 0,
    keys_file: str = "",
    rate: float = 0.0,
) -> Load:
    """``processes`` load processes of ``connections`` connections each, for ``seconds``;
    with ``keys_file`` (JSON: user → gateway key) Messages-API calls instead of ``/v1/chat``;
    with ``rate``, that many requests a second offered in all (else as fast as answered)."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                *map(str, (port, seconds, p * 10_000_000, connections, flag_every)),
                keys_file,
                str(rate / processes),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for p in range(processes)
    ]
    total = Load()
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 120)
        got = json.loads(out)
        statuses = Counter({int(k): v for k, v in got["statuses"].items()})
        total.add(Load(statuses, Counter(got["errors"]), got["latencies"], got["flagged"]))
    return total


if __name__ == "__main__":
    port, seconds, first, connections, flag_every, keys_file, rate = sys.argv[1:8]
    result = _run(int(port), float(seconds), int(first), int(connections), int(flag_every), keys_file, float(rate))
    print(json.dumps({"statuses": result.statuses, "errors": result.errors, "latencies": result.latencies_us,
                      "flagged": result.flagged_sent}))  # fmt: skip

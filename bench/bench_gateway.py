"""Time to first byte of a streamed answer through ``aupguard gateway``, against the same
request sent straight to the upstream; and (``--throughput``) requests per second and
latency under load, against the upstream alone and a bare pass-through proxy.

The upstream is the local Messages-API double (tests/support) on 127.0.0.1; the gateway is the
real command, ``aupguard gateway --upstream <double>``, in its own process (uvicorn, embedded
defaults: SQLite store, memory counters, one gateway key, 50 ``[[moderation.rules]]``
keywords, ``mode = "before"``). One keep-alive ``httpx`` client sends
``POST /v1/messages`` with ``"stream": true`` and the clock stops at the first body bytes
(the ``message_start`` event). Requests alternate between the two paths, so drift of the
machine affects both alike; each prompt ends in its own number, so no moderation verdict is
cached. Reported: median and p99 TTFB of each path over ``N`` requests, and the gateway's
overhead (the difference; the issue's goal: under 2 ms at the median).

Throughput mode: small JSON requests (``bench/_load.py``: keep-alive connections, 1,000
users with a gateway key each, ~200-character prompts, 50 ``[[moderation.rules]]`` blocks,
SQLite store, memory counters) sent for ``--seconds`` at 1, 16 and 64 clients to three
servers in turn, in each round: the upstream alone (the double), the floor
(``bench/_passthrough.py``: a bare Starlette app under uvicorn forwarding through the same
upstream client, no safeguards) and the gateway (``--workers`` processes). Reported per
round: req/s, p50 and p99 latency of each, the gateway's added p50 and its ratios to the
upstream and to the floor. The load generator shares the machine's cores with the servers.

Run with ``python bench/bench_gateway.py [N]`` (default 300) for TTFB,
``python bench/bench_gateway.py --throughput [--seconds 5] [--rounds 2] [--workers 1]`` for
throughput; ``make bench`` runs both, briefly. With ``GATEWAY_PROFILE=/tmp/gw.prof`` the
gateway process of the TTFB mode runs under cProfile and writes there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the load generator and the servers of bench/

from _load import Load, drive
from _servers import hash_key, policy_file, serve_gateway, wait_port
from aupguard import Keyring, Policy, Safeguards, generate_key_entry
from aupguard.gateway import GatewayKeys
from aupguard.testing import MessagesDouble, Reply, free_port

__all__ = ["main"]

BENCH = Path(__file__).resolve().parent

GOAL_MS = 2.0
KEYWORDS = [f"forbidden phrase number {i}" for i in range(50)]
POLICY = f"""
[limits]
default = "1000000/minute"

[moderation]
mode = "before"
rules = [{{category = "bench", action = "block", keywords = {KEYWORDS!r}}}]
"""


def _ttfb(http: httpx.Client, url: str, key: str, n: int) -> float:
    body = {"model": "claude-bench", "max_tokens": 16, "stream": True,
            "messages": [{"role": "user", "content": f"Say something short, please. Request {n}."}]}  # fmt: skip
    started = time.perf_counter()
    with http.stream("POST", url + "/v1/messages", json=body, headers={"x-api-key": key}) as response:
        chunks = response.iter_raw()
        next(chunks)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
        for _ in chunks:  # read to the end, so the connection is reused
            pass
    return elapsed * 1000


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def ttfb(n: int) -> int:
    folder = Path(tempfile.mkdtemp(prefix="aupguard-bench-gateway-"))
    (folder / "aupguard.toml").write_text(POLICY)
    entry = generate_key_entry("b1")
    store = f"sqlite:///{folder / 'aupguard.db'}"
    policy = Policy.from_toml(folder / "aupguard.toml", env={})
    with Safeguards(policy, store=store, keyring=Keyring.parse(entry, source="bench")) as guard:
        key = GatewayKeys(guard).create("bench-user").key
    double = MessagesDouble().start()
    double.messages.responder = lambda request: Reply(text="ok")
    port = free_port()
    env = {**os.environ, "AUPGUARD_HASH_KEY": entry, "ANTHROPIC_API_KEY": "bench-upstream-key"}
    profile = ["-m", "cProfile", "-o", os.environ["GATEWAY_PROFILE"]] if os.environ.get("GATEWAY_PROFILE") else []
    command = [sys.executable, *profile, str(Path(sys.executable).parent / "aupguard"),
               "--policy", str(folder / "aupguard.toml"), "--store", store,
               "gateway", "--port", str(port), "--upstream", double.url]  # fmt: skip
    gateway = subprocess.Popen(command, env=env, cwd=folder, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=10) as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    http.get(url + "/")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or gateway.poll() is not None:
                        raise RuntimeError("the gateway did not start") from None
                    time.sleep(0.05)
            for i in range(30):  # warm both paths up
                _ttfb(http, double.url, "bench-upstream-key", i)
                _ttfb(http, url, key, i)
            direct, through = [], []
            for i in range(n):
                direct.append(_ttfb(http, double.url, "bench-upstream-key", 1000 + i))
                through.append(_ttfb(http, url, key, 1000 + i))
    finally:
        gateway.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly (and a profile is written)
        gateway.wait(10)
        double.stop()
    med_d, med_g = statistics.median(direct), statistics.median(through)
    p99_d, p99_g = _p99(direct), _p99(through)
    print(f"gateway TTFB, streamed answer, {n} requests each, alternating, keep-alive, loopback")
    print(f"  {'path':<10} {'median ms':>10} {'p99 ms':>10}")
    print(f"  {'direct':<10} {med_d:>10.3f} {p99_d:>10.3f}")
    print(f"  {'gateway':<10} {med_g:>10.3f} {p99_g:>10.3f}")
    overhead = med_g - med_d
    print(f"  overhead   {overhead:>10.3f} {p99_g - p99_d:>10.3f}   (goal: median < {GOAL_MS} ms: "
          f"{'met' if overhead < GOAL_MS else 'NOT met'})")  # fmt: skip
    return 0


@contextlib.contextmanager
def serve_floor(upstream: str) -> Iterator[int]:
    """``bench/_passthrough.py`` under uvicorn (one process, uvicorn's defaults, as the gateway)."""
    from aupguard.testing import free_port

    port = free_port()
    env = {**os.environ, "UPSTREAM": upstream, "PYTHONPATH": str(BENCH)}
    command = [sys.executable, "-m", "uvicorn", "_passthrough:app", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning", "--no-access-log"]  # fmt: skip
    server = subprocess.Popen(command, cwd=BENCH, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_port(port, 60)
        yield port
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)


CLIENTS = (1, 16, 64)


def _driven(port: int, clients: int, seconds: float, keys: str) -> Load:
    processes = 1 if clients == 1 else 2  # the load generator needs both cores at 16 and more
    drive(port, min(1.0, seconds), processes=processes, connections=clients // processes, keys_file=keys)  # warm
    return drive(port, seconds, processes=processes, connections=clients // processes, keys_file=keys)


def throughput(seconds: float, rounds: int, workers: int) -> int:
    from aupguard.testing import MessagesDouble, Reply

    double = MessagesDouble().start()
    double.messages.responder = lambda request: Reply(text="ok")
    upstream_port = int(double.url.rsplit(":", 1)[1].split("/")[0])
    exact = True
    try:
        with tempfile.TemporaryDirectory(prefix="aupguard-bench-throughput-") as tmp:
            folder = Path(tmp)
            policy = policy_file(folder, f"sqlite:///{folder / 'aupguard.db'}", "memory://")
            entry = hash_key()
            keys_file = folder / "keys.json"
            with Safeguards(Policy.from_toml(policy, env={}), keyring=Keyring.parse(entry, source="bench")) as guard:
                keys = GatewayKeys(guard)
                users = [f"user-{n}" for n in range(1000)] + [f"bad-{n}" for n in range(20)]
                keys_file.write_text(json.dumps({user: keys.create(user).key for user in users}))
            print(f"gateway throughput: small JSON requests, {seconds:g} s per point, keep-alive, loopback, "
                  f"{workers} gateway worker(s), 50 moderation rules, SQLite store")  # fmt: skip
            head = f"  {'round':>5} {'clients':>7} {'path':<9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
            print(head)
            with serve_floor(double.url) as floor, serve_gateway(policy, entry, double.url, workers=workers) as gw:
                for r in range(1, rounds + 1):
                    for clients in CLIENTS:
                        paths = (("upstream", upstream_port), ("floor", floor), ("gateway", gw))
                        got = {name: _driven(port, clients, seconds, str(keys_file)) for name, port in paths}
                        for name, load in got.items():
                            exact = exact and set(load.statuses) == {200}
                            p50, p99 = load.percentile(0.5) / 1000, load.percentile(0.99) / 1000
                            print(f"  {r:>5} {clients:>7} {name:<9} {load.answered / seconds:>8,.0f} "
                                  f"{p50:>8.2f} {p99:>8.2f}")  # fmt: skip
                        up, fl, gw_load = got["upstream"], got["floor"], got["gateway"]
                        added = (gw_load.percentile(0.5) - up.percentile(0.5)) / 1000
                        floor_added = (fl.percentile(0.5) - up.percentile(0.5)) / 1000
                        print(f"  {'':>5} {'':>7} gateway/upstream {gw_load.answered / max(up.answered, 1):.2f}x, "
                              f"gateway/floor {gw_load.answered / max(fl.answered, 1):.2f}x; added p50 "
                              f"{added:+.2f} ms (floor {floor_added:+.2f} ms)")  # fmt: skip
    finally:
        double.stop()
    if not exact:
        print("  some answers were not 200")
    return 0 if exact else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/bench_gateway.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, help="TTFB requests per path (default 300)")
    parser.add_argument("--throughput", action="store_true", help="throughput mode only")
    parser.add_argument("--seconds", type=float, default=5.0, help="load per point (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every point (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="gateway workers (default 1)")
    args = parser.parse_args([] if argv is None else argv)
    if args.throughput:
        return throughput(args.seconds, args.rounds, args.workers)
    if argv is None:  # make bench (bench/run.py): both modes, briefly
        return ttfb(300) or throughput(3.0, 1, 1)
    return ttfb(args.n or 300)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

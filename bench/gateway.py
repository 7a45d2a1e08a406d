"""Time to first byte of a streamed answer through ``aupguard gateway``, against the same
request sent straight to the upstream.

The upstream is the local Messages-API double (tests/fakes) on 127.0.0.1; the gateway is the
real command, ``aupguard gateway --upstream <double>``, in its own process (uvicorn, embedded
defaults: SQLite store, memory counters, one gateway key, 50 ``[[moderation.rules]]``
keywords, ``mode = "before"``). One keep-alive ``httpx`` client sends
``POST /v1/messages`` with ``"stream": true`` and the clock stops at the first body bytes
(the ``message_start`` event). Requests alternate between the two paths, so drift of the
machine affects both alike; each prompt ends in its own number, so no moderation verdict is
cached. Reported: median and p99 TTFB of each path over ``N`` requests, and the gateway's
overhead (the difference; the issue's goal: under 2 ms at the median).

Run with ``python bench/gateway.py [N]`` (default 300) or through ``make bench``; with
``GATEWAY_PROFILE=/tmp/gw.prof`` the gateway process runs under cProfile and writes there.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the test double lives in tests/fakes

from tests.fakes.messages_double import MessagesDouble
from tests.fakes.scripting import Reply
from tests.fakes.servers import free_port

from aupguard import Keyring, Policy, Safeguards, generate_key_entry
from aupguard.gateway import GatewayKeys

__all__ = ["main"]

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


def main(argv: Sequence[str] | None = None) -> int:
    n = int(argv[0]) if argv else 300
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

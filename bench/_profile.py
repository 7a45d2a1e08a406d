"""Where one gateway process spends its time under load: ``py-spy`` samples ``aupguard
gateway`` (the real command) while ``bench/_load.py`` keeps 16 keep-alive connections busy
with small JSON requests, and the samples are grouped by the code they were in (the leafmost
frame that belongs to a group decides: the upstream HTTP client, the HTTP server, the
safeguards, the forwarder, Starlette, waiting in epoll; asyncio's own frames (a socket write, a thread hand-off)
count for the code that called them, and as "event loop" only when nothing else is on the
stack).

``python bench/_profile.py [--tier sqlite|scale] [--no-moderation] [--seconds 10]``; needs
``py-spy`` (``pip install py-spy``; it reads another process's memory: run as root or with
ptrace allowed). Not run by ``make bench`` (the name starts with ``_``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import drive
from _servers import Database, hash_key, own_redis, policy_file, serve_gateway

#: (group, what a frame's file path contains), first match from the leaf up wins
GROUPS = (
    ("event loop", ("/selectors.py",)),  # waiting in epoll: nothing to do
    ("upstream client", ("/httpcore/", "/anyio/", "/aiohttp/", "/yarl/", "/multidict/", "aupguard_gateway/client")),
    ("HTTP server", ("/uvicorn/protocols/", "/uvicorn/middleware/", "/h11/", "/httptools/")),
    ("forwarder", ("aupguard_gateway/forward",)),
    ("key gate", ("aupguard_gateway/gate", "aupguard/gateway/keys", "aupguard/gateway/callers")),
    ("safeguards", ("/aupguard/", "aupguard_asgi/", "/limits/", "/redis/", "/psycopg", "/sqlite3/", "/json/")),
    ("Starlette", ("/starlette/",)),
    ("other threads", ("/threading", "/concurrent/")),
)


def group_of(stack: str) -> str:
    frames = stack.split(";")
    callbacks = [i for i, frame in enumerate(frames) if "(asyncio/events.py:" in frame]
    if callbacks:  # on the event loop: only the callback's own frames, not the server's start-up ones below it
        frames = frames[callbacks[-1] + 1 :]
    for frame in reversed(frames):
        path = "/" + frame[frame.rfind("(") + 1 : frame.rfind(":")]  # "f (httpcore/_api.py:12)": module-relative
        for name, marks in GROUPS:
            if any(mark in path for mark in marks):
                return name
    return "event loop"


def summarise(raw: Path) -> dict[str, float]:
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack.startswith("process ") or ";" in stack:
            counts[group_of(stack)] += int(n)
    total = sum(counts.values()) or 1
    return {name: 100 * n / total for name, n in counts.most_common()}


@contextlib.contextmanager
def _tier(name: str, folder: Path, rules: bool) -> Iterator[Path]:
    if name == "sqlite":
        yield policy_file(folder, f"sqlite:///{folder / 'aupguard.db'}", "memory://", rules=rules)
        return
    with own_redis() as redis_url, Database() as database:
        yield policy_file(folder, database.url, redis_url, rules=rules)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/_profile.py")
    parser.add_argument("--tier", choices=("sqlite", "scale"), default="sqlite")
    parser.add_argument("--no-moderation", action="store_true")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--raw", type=Path, help="also keep py-spy's raw samples here")
    args = parser.parse_args()
    from aupguard import Keyring, Policy, Safeguards
    from aupguard.gateway import GatewayKeys
    from aupguard.testing import MessagesDouble, Reply

    double = MessagesDouble().start()
    double.messages.responder = lambda request: Reply(text="ok")
    try:
        with tempfile.TemporaryDirectory(prefix="aupguard-profile-") as tmp:
            folder = Path(tmp)
            with _tier(args.tier, folder, not args.no_moderation) as policy:
                entry = hash_key()
                keys_file = folder / "keys.json"
                with Safeguards(Policy.from_toml(policy, env={}), keyring=Keyring.parse(entry, source="p")) as guard:
                    keys = GatewayKeys(guard)
                    users = [f"user-{n}" for n in range(1000)] + [f"bad-{n}" for n in range(20)]
                    keys_file.write_text(json.dumps({user: keys.create(user).key for user in users}))
                with serve_gateway(policy, entry, double.url) as port:
                    drive(port, 2.0, connections=args.clients // 2, keys_file=str(keys_file))
                    pid = _listener(port)
                    raw = folder / "profile.txt"
                    spy = subprocess.Popen(
                        ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--output", str(raw),
                         "--duration", str(int(args.seconds)), "--rate", "250", "--nonblocking"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                    load: list[object] = []
                    thread = threading.Thread(
                        target=lambda: load.append(
                            drive(port, args.seconds, connections=args.clients // 2, keys_file=str(keys_file))
                        )
                    )
                    thread.start()
                    spy.wait(args.seconds + 60)
                    thread.join()
                    shares = summarise(raw)
                    if args.raw:
                        args.raw.write_text(raw.read_text())
    finally:
        double.stop()
    answered = load[0].answered if load else 0  # type: ignore[attr-defined]
    label = f"{args.tier}, moderation {'off' if args.no_moderation else 'on'}, {args.clients} clients"
    print(f"{label}: {answered / args.seconds:,.0f} req/s while sampled")
    for name, share in shares.items():
        print(f"  {name:<16} {share:5.1f} %")
    return 0


def _listener(port: int) -> int:
    """The pid of the process listening on ``port`` (the gateway's, or its one worker's)."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(out.split("pid=")[1].split(",")[0])


if __name__ == "__main__":
    sys.exit(main())

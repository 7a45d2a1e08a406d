"""Load soak (``make soak``): a minute at the highest rate this machine sustains, through the
ASGI middleware on the embedded tier (SQLite file, memory counters) and the scale-out tier
(PostgreSQL, Redis); and a minute at a fixed offered load (``--rate``, default 1,000 req/s)
through ``aupguard gateway`` in front of the local Messages-API double, one process on
SQLite (``gateway``) and two workers on PostgreSQL + Redis (``gateway-workers``); then an
exact count of what was stored.

Per tier, ``bench/_scale_app.py`` runs under ``uvicorn --workers 2`` (this machine has two
cores): first the bare app for a baseline, then the guarded one. Two load processes keep 32
keep-alive connections busy (``bench/_load.py``); one request in 50 carries a prompt the rules
block, sent as one of 20 "bad" users, who collect strikes until the ladder suspends them.
Afterwards (the workers flushed on SIGTERM) the store must hold exactly one audit record per
answered request and exactly one strike per ``content_flagged`` answer. Reported: requests,
requests per second, client-side p50 / p99 latency of the bare and the guarded app and the
difference (the overhead under load). The gateway tiers' baseline is the same Messages-API calls
at the same offered rate sent straight to the double, each user with a gateway key of their
own; they report the achieved rate beside the offered one (latency counts from when each
request was due, so a gateway that falls behind shows it).

``python bench/soak.py [--seconds 60] [--baseline 15] [--rate 1000] [--tier NAME]``; bounded in
time, loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from _load import Load, drive
from _servers import Database, hash_key, own_redis, policy_file, serve_app, serve_gateway

__all__ = ["main"]

TIERS = ("sqlite", "scale", "gateway", "gateway-workers")
CONNECTIONS = 32  # per load process (two): room for the offered rate at up to ~60 ms a request


@contextlib.contextmanager
def _tier(name: str, folder: Path) -> Iterator[tuple[Path, str, object]]:
    """(policy file, counters URL, a counter of stored rows by table) for one tier."""
    if name == "sqlite":
        db = folder / "aupguard.db"

        def count_sqlite(table: str) -> int:
            with sqlite3.connect(db) as conn:
                return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608

        yield policy_file(folder, f"sqlite:///{db}", "memory://"), "memory://", count_sqlite
        return
    with own_redis() as redis_url, Database() as database:
        yield policy_file(folder, database.url, redis_url), redis_url, database.count


def _soak(name: str, seconds: float, baseline: float, rate: float) -> bool:
    if name.startswith("gateway"):
        workers = 2 if name == "gateway-workers" else 1
        return _report(name, seconds, baseline, *_gateway(seconds, baseline, rate, workers), rate=rate)
    with tempfile.TemporaryDirectory(prefix=f"aupguard-soak-{name}-") as tmp, _tier(name, Path(tmp)) as tier:
        policy, counters, count = tier
        with serve_app("bare", policy, counters, workers=2) as port:
            drive(port, 1.0)
            bare = drive(port, baseline)
        with serve_app("aupguard", policy, counters, workers=2) as port:
            warm = drive(port, 1.0, flag_every=50)
            load = drive(port, seconds, flag_every=50)
        records, strikes = count("decisions"), count("strikes")  # type: ignore[operator]
    return _report(name, seconds, baseline, bare, warm, load, records, strikes)


def _gateway(seconds: float, baseline: float, rate: float, workers: int) -> tuple[Load, Load, Load, int, int]:
    """``aupguard gateway`` (one process on SQLite, or ``workers`` on PostgreSQL + Redis) in front
    of the Messages-API double at ``rate``; the baseline is the same calls sent straight to the double."""
    from aupguard import Keyring, Policy, Safeguards
    from aupguard.gateway import GatewayKeys
    from aupguard.testing import MessagesDouble, Reply

    double = MessagesDouble().start()
    double.messages.responder = lambda request: Reply(text="ok")
    try:
        with (
            tempfile.TemporaryDirectory(prefix="aupguard-soak-gateway-") as tmp,
            _tier("sqlite" if workers == 1 else "scale", Path(tmp)) as tier,
        ):
            folder = Path(tmp)
            policy, _, count = tier
            store = folder / "keys.json"
            entry = hash_key()
            with Safeguards(Policy.from_toml(policy, env={}), keyring=Keyring.parse(entry, source="soak")) as guard:
                keys = GatewayKeys(guard)
                users = [f"user-{n}" for n in range(1000)] + [f"bad-{n}" for n in range(20)]
                store.write_text(json.dumps({user: keys.create(user).key for user in users}))
            direct = int(double.url.rsplit(":", 1)[1].split("/")[0])
            offered = {"keys_file": str(store), "rate": rate, "connections": CONNECTIONS}
            drive(direct, 1.0, **offered)  # type: ignore[arg-type]
            bare = drive(direct, baseline, **offered)  # type: ignore[arg-type]
            with serve_gateway(policy, entry, double.url, workers=workers) as port:
                warm = drive(port, 1.0, flag_every=50, **offered)  # type: ignore[arg-type]
                load = drive(port, seconds, flag_every=50, **offered)  # type: ignore[arg-type]
            records, strikes = count("decisions"), count("strikes")  # type: ignore[operator]
    finally:
        double.stop()
    return bare, warm, load, records, strikes


def _report(
    name: str,
    seconds: float,
    baseline: float,
    bare: Load,
    warm: Load,
    load: Load,
    records: int,
    strikes: int,
    *,
    rate: float = 0.0,
) -> bool:
    everything = Load()
    everything.add(warm)
    everything.add(load)
    flagged = everything.errors["content_flagged"]
    records_ok, strikes_ok = records == everything.answered, strikes == flagged
    p50, p99 = load.percentile(0.5), load.percentile(0.99)
    b50, b99 = bare.percentile(0.5), bare.percentile(0.99)
    offered = f" offered {rate:,.0f} req/s, achieved" if rate else ""
    print(f"{name}: {load.answered:,} requests in {seconds:.0f} s,{offered} {load.answered / seconds:,.0f} req/s "
          f"(bare: {bare.answered / baseline:,.0f} req/s); answers {dict(sorted(load.statuses.items()))}, "
          f"errors {dict(sorted(load.errors.items()))}")  # fmt: skip
    print(
        f"  latency p50 {p50 / 1000:.2f} ms, p99 {p99 / 1000:.2f} ms; bare p50 {b50 / 1000:.2f} ms, "
        f"p99 {b99 / 1000:.2f} ms; overhead p50 {(p50 - b50) / 1000:+.2f} ms, p99 {(p99 - b99) / 1000:+.2f} ms"
    )
    print(f"  audit records {records:,} for {everything.answered:,} answers (warm-up included): "
          f"{'exact' if records_ok else 'MISMATCH'}; strikes {strikes:,} for {flagged:,} content_flagged "
          f"answers: {'exact' if strikes_ok else 'MISMATCH'}")  # fmt: skip
    return records_ok and strikes_ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/soak.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load per tier (default 60)")
    parser.add_argument("--baseline", type=float, default=15.0, help="bare-app baseline per tier (default 15)")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered req/s of the gateway tiers (default 1000)")
    parser.add_argument("--tier", choices=TIERS, action="append", help="default: all four")
    args = parser.parse_args(argv)
    results = [_soak(tier, args.seconds, args.baseline, args.rate) for tier in (args.tier or TIERS)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

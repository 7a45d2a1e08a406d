"""The gateway commands of the ``aupguard`` CLI: ``gateway-keys create | revoke | list`` and ``gateway``.

Raw user ids are read from the command line and hashed at once; output shows key ids and
user hashes only. A new key is printed once, on standard output, and never again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from ..errors import PolicyError
from ..gateway.keys import GatewayKeys
from ..policy.values import http_url
from .support import OpenGuard, default_actor, when

__all__ = ["add_gateway_commands"]


def _keys(args: argparse.Namespace, open_guard: OpenGuard) -> int:
    with open_guard(args) as guard:
        keys = GatewayKeys(guard)
        if args.keys_command == "create":
            issued = keys.create(args.user, actor=args.actor)
            print(issued.key)
            print(f"key id {issued.key_id} for user {issued.user_hash}; the key is shown only now", file=sys.stderr)
        elif args.keys_command == "revoke":
            keys.revoke(args.key_id, actor=args.actor, reason=args.reason)
            print(f"key {args.key_id} revoked")
        else:
            found = keys.list(args.user)
            for k in found:
                row = {"key_id": k.key_id, "user_hash": k.user_hash, "created_at": k.created_at,
                       "revoked_at": k.revoked_at}  # fmt: skip
                created, revoked = when(k.created_at), when(k.revoked_at)
                line = f"{k.key_id}  user {k.user_hash}  created {created}  revoked {revoked}"
                print(json.dumps(row) if args.json else line)
            if not found and not args.json:
                print("no keys")
    return 0


_UPSTREAM_HELP = "an http:// or https:// URL without query"
_upstream_url = http_url("--upstream", _UPSTREAM_HELP)


def _upstream_arg(value: str | None) -> str | None:
    """``--upstream`` checked like ``[gateway] upstream``: credentials in it are refused unshown."""
    if value is None:
        return None
    try:
        return _upstream_url(value)
    except PolicyError:
        raise
    except ValueError:
        raise PolicyError("--upstream", value, _UPSTREAM_HELP) from None


def _gateway(args: argparse.Namespace, open_guard: OpenGuard) -> int:
    upstream_arg = _upstream_arg(args.upstream)
    try:
        import uvicorn

        from aupguard_gateway import build_gateway
        from aupguard_gateway.workers import WORKER_ENV, check_shared, worker_settings
    except ImportError:
        needs = "aupguard gateway needs Starlette, uvicorn and aiohttp: pip install 'aupguard[gateway]'"
        raise ImportError(needs) from None
    guard = open_guard(args)
    try:
        if args.workers > 1:
            storage = guard.policy.storage
            check_shared(storage.store if args.store is None else args.store, storage.counters)
        app = build_gateway(guard, upstream=upstream_arg)  # checks the policy and the upstream key, in every case
        upstream = app.state.upstream.url
        workers = f", {args.workers} workers (SIGHUP restarts them one by one)" if args.workers > 1 else ""
        print(f"aupguard gateway on http://{args.host}:{args.port} -> {upstream}{workers}  (Ctrl-C stops)")
        if args.workers == 1:
            uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
            return 0
    finally:
        guard.close()
    policy = args.policy or os.environ.get("AUPGUARD_POLICY")
    if policy is None and os.path.isfile("aupguard.toml"):
        policy = "aupguard.toml"
    os.environ[WORKER_ENV] = worker_settings(policy and os.path.abspath(policy), args.store, upstream_arg)
    # connections still open 10 s after a shutdown began are closed: shutdown is bounded (an
    # answer never sent needs no record; every answer sent has one, written before exit)
    uvicorn.run("aupguard_gateway.workers:worker_app", factory=True, workers=args.workers, host=args.host,
                port=args.port, log_level=args.log_level, timeout_graceful_shutdown=10)  # fmt: skip
    return 0


def _workers(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError("from 1 to 64")
    return value


def add_gateway_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], open_guard: OpenGuard) -> None:
    def runs(fn: Callable[[argparse.Namespace, OpenGuard], int]) -> Callable[[argparse.Namespace], int]:
        return lambda args: fn(args, open_guard)

    who = default_actor()

    keys = sub.add_parser("gateway-keys", aliases=["keys"], help="gateway API keys for end users: create, revoke, list")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    help_ = "make a gateway key for a user and print it (once)"
    create = ksub.add_parser("create", help=help_, description=help_)
    create.add_argument("--user", required=True, help="the user's id in your app (hashed at once, never stored)")
    help_ = "revoke a gateway key (at once in this process, within [gateway] key_cache elsewhere)"
    revoke = ksub.add_parser("revoke", help=help_, description=help_)
    revoke.add_argument("key_id", help="the key's id, as `gateway-keys list` prints it")
    revoke.add_argument("--reason", default="revoked", help="why (recorded in the audit trail; default: 'revoked')")
    help_ = "list gateway keys: key id, user hash, created, revoked"
    listing = ksub.add_parser("list", help=help_, description=help_)
    listing.add_argument("--user", help="only this user's keys (their id in your app)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    for p in (create, revoke, listing):
        p.set_defaults(func=runs(_keys))
    for p in (create, revoke):
        p.add_argument("--actor", default=who, help=f"who acts (recorded in the audit trail; default: {who})")

    help_ = "serve the Messages API with every safeguard, forwarding to the upstream"
    gateway = sub.add_parser("gateway", help=help_, description=help_)
    gateway.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    gateway.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    gateway.add_argument("--upstream", metavar="URL", help="overrides [gateway] upstream (https://api.anthropic.com)")
    gateway.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes (default 1); more than one needs a PostgreSQL store and Redis counters",
    )
    gateway.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    gateway.set_defaults(func=runs(_gateway))

"""The audit commands of the ``aupguard`` CLI: ``audit find`` (records of guarded calls by
aupguard's request id, the user, Anthropic's request id or message id)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from ..errors import AupguardError
from .support import OpenGuard, positive, when

__all__ = ["AUDIT_FIND_HEADER", "add_audit_commands"]

AUDIT_FIND_HEADER = (
    f"{'request_id':<36}  {'at (UTC)':<20}  {'surface':<10} {'outcome':<22} {'status':<6} "
    "user_hash  anthropic_request_id  message_id"
)


def _find(args: argparse.Namespace, open_guard: OpenGuard) -> int:
    keys = {
        "request_id": args.request_id,
        "user_id": args.user,
        "anthropic_request_id": args.anthropic_request_id,
        "message_id": args.message_id,
    }
    if all(v is None for v in keys.values()):
        raise AupguardError("give at least one of --request-id, --user, --anthropic-request-id, --message-id")
    with open_guard(args) as guard:
        records = guard.audit.find(**keys, limit=args.limit)
    if records and not args.json:  # one record per line, every id whole (pasteable)
        print(AUDIT_FIND_HEADER)
    for rec in records:
        if args.json:
            print(json.dumps(asdict(rec)))
        else:
            print(
                f"{rec.request_id:<36}  {when(rec.at):<20}  {rec.surface:<10} {rec.outcome:<22} {rec.status:<6} "
                f"{rec.user_hash or '-'}  {rec.anthropic_request_id or '-'}  {rec.message_id or '-'}"
            )
    if not records and not args.json:
        print("no matching records")
    return 0


def add_audit_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], open_guard: OpenGuard) -> None:
    audit = sub.add_parser("audit", help="find audit records of guarded calls")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    find = audit_sub.add_parser(
        "find",
        help="records matching every option given (at least one)",
        description="records matching every option given (at least one)",
    )
    find.add_argument("--request-id", help="aupguard's request id")
    find.add_argument("--user", help="the user's id in your app (hashed before the lookup)")
    find.add_argument("--anthropic-request-id", help="Anthropic's request-id response header")
    find.add_argument("--message-id", help="Anthropic's message id (msg_...)")
    find.add_argument("--limit", type=positive, default=50, help="most records to show (default 50)")
    find.add_argument("--json", action="store_true", help="one JSON object per line")
    find.set_defaults(func=lambda args: _find(args, open_guard))

"""The user commands of the ``aupguard`` CLI: ``user status | strike | void-strike | suspend |
reinstate | accept-terms | events``. Raw user ids are read from the command line and hashed
before use; output shows user hashes only."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import asdict

from ..durations import DURATION_HELP, parse_duration
from ..errors import AupguardError
from ..ladder import UserStatus
from .support import OpenGuard, positive, when

__all__ = ["add_user_commands"]


def _print_status(status: UserStatus, as_json: bool, *, recorded: bool | None = None) -> None:
    if as_json:
        extra = {} if recorded is None else {"recorded": recorded}
        print(json.dumps({**asdict(status), "level": status.level.value, **extra}))
        return
    print(f"user      {status.user_hash}")
    print(f"level     {status.level.value}")
    print(f"strikes   {status.strikes} counting")
    if status.level.value == "suspended":
        print(f"until     {'until reinstated' if status.until is None else when(status.until)}")
        print(f"reason    {status.reason or '-'}")
    print(f"terms     {status.terms_version or 'not accepted'}")


def _user(args: argparse.Namespace, open_guard: OpenGuard) -> int:
    with open_guard(args) as guard:
        action = args.user_command
        if action == "status":
            status = guard.status(args.user)
            # "ok, 0 strikes" is also what a wrong id, store or hash key would show: say which it is
            recorded = guard.store.has_user(status.user_hash) or bool(guard.audit.find(user_id=args.user, limit=1))
            _print_status(status, args.json, recorded=recorded)
            if not recorded:
                kid = status.user_hash.partition("_")[0]
                print(
                    f"no record for this user under key {kid} (check the user id, --store and the hash key)",
                    file=sys.stderr if args.json else sys.stdout,
                )
            if not args.json:
                for s in guard.strikes(args.user, limit=20):
                    voided = f"  VOIDED ({s.void_reason})" if s.voided_at else ""
                    print(f"  strike {s.id}  {when(s.at)}  {s.category}  {s.reason}{voided}")
            return 1 if args.strict and not recorded else 0
        if action == "strike":
            result = guard.strike(
                args.user,
                reason=args.reason,
                category=args.category,
                source=args.source,
                actor=args.actor,
            )
            print(f"strike {result.strike.id} recorded")
            status = result.status
        elif action == "void-strike":
            status = guard.void_strike(args.strike_id, reason=args.reason, actor=args.actor)
            print(f"strike {args.strike_id} voided")
        elif action == "suspend":
            until = None
            if args.for_:
                until = time.time() + parse_duration(args.for_)
            elif args.until:
                end = dt.datetime.fromisoformat(args.until)
                until = (end if end.tzinfo else end.replace(tzinfo=dt.UTC)).timestamp()
            status = guard.suspend(args.user, reason=args.reason, until=until, actor=args.actor)
        elif action == "reinstate":
            status = guard.reinstate(args.user, reason=args.reason, actor=args.actor)
        else:  # accept-terms
            version = args.version or (guard.policy.terms.version if guard.policy.terms else None)
            if version is None:
                raise AupguardError("the policy has no [terms] table; pass --version")
            status = guard.accept_terms(args.user, version, actor=args.actor)
        _print_status(status, args.json)
        return 0


def _events(args: argparse.Namespace, open_guard: OpenGuard) -> int:
    """What was done about a user, newest first: strikes, voids, suspensions, reinstatements,
    terms, gateway keys, hash-key moves (who, when, why)."""
    with open_guard(args) as guard:
        events = guard.audit.events(user_id=args.user, limit=args.limit)
    for event in events:
        if args.json:
            print(json.dumps({**asdict(event), "details": dict(event.details)}))
        else:
            details = "  ".join(f"{k}={v}" for k, v in sorted(event.details.items()))
            print(f"{when(event.at)}  {event.action:<22} by {event.actor}  {event.reason}  {details}".rstrip())
    return 0


def add_user_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], who: str, open_guard: OpenGuard
) -> None:
    user = sub.add_parser("user", help="a user's standing: status, strike, suspend, reinstate, accept-terms, events")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    def user_cmd(
        name: str, help_: str, *, needs_user: bool = True, reason: bool | str = False
    ) -> argparse.ArgumentParser:
        p = user_sub.add_parser(name, help=help_, description=help_)
        if needs_user:
            p.add_argument("user", help="the user's id in your app (hashed before use, never stored)")
        if reason is True:
            p.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
        elif reason:
            p.add_argument("--reason", default=reason, help=f"why (default: {reason!r})")
        p.add_argument("--actor", default=who, help=f"who acts (default: {who})")
        p.add_argument("--json", action="store_true", help="print the resulting status as JSON")
        p.set_defaults(func=lambda args: _user(args, open_guard))
        return p

    p = user_cmd("status", "show a user's level, counting strikes and strike ledger")
    p.add_argument("--strict", action="store_true", help="exit 1 when the store holds no record of this user")
    p = user_cmd("strike", "record a usage-policy strike", reason=True)
    p.add_argument("--category", default="unspecified", help="violation category")
    p.add_argument("--source", default="manual", help="what found it (manual, moderator name, ...)")
    p = user_cmd(
        "void-strike",
        "void a strike (upheld appeal): the user de-escalates at once",
        needs_user=False,
        reason=True,
    )
    p.add_argument("strike_id", help="the strike's id, as `user status` prints it")
    p = user_cmd("suspend", "suspend a user now", reason=True)
    end = p.add_mutually_exclusive_group()
    end.add_argument("--for", dest="for_", metavar="DURATION", help=DURATION_HELP)
    end.add_argument(
        "--until",
        metavar="ISO-TIME",
        help="end of the suspension, ISO 8601 (YYYY-MM-DDTHH:MM, UTC unless an offset is given)",
    )
    user_cmd(
        "reinstate",
        "lift a suspension and start the ladder afresh",
        reason="reinstated by operator",
    )
    p = user_cmd("accept-terms", "record that a user accepted the usage policy")
    p.add_argument("--version", help="terms version (default: [terms] version of the policy)")
    help_ = "what was done about a user, newest first: strikes, suspensions, reinstatements, terms, gateway keys"
    p = user_sub.add_parser("events", help=help_, description=help_)
    p.add_argument("user", help="the user's id in your app (hashed before use, never stored)")
    p.add_argument("--limit", type=positive, default=100, help="at most this many (default 100)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=lambda args: _events(args, open_guard))

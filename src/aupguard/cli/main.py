"""The ``aupguard`` command line. Errors print one line and exit 2; never a traceback
(set ``AUPGUARD_DEBUG=1`` to see one)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from ..durations import DURATION_HELP, parse_duration
from ..engine.safeguards import Safeguards
from ..errors import AupguardError
from ..identity import generate_key_entry
from ..ladder import UserStatus
from ..policy.config import Policy
from .archive import add_archive_commands
from .gateway import add_gateway_commands
from .moderation import add_moderation_commands
from .review import add_review_commands
from .support import command, default_actor, positive, require_store, when

__all__ = ["main"]


def load_policy(path: str | None) -> Policy:
    chosen = path or os.environ.get("AUPGUARD_POLICY")
    if chosen is None and Path("aupguard.toml").is_file():
        chosen = "aupguard.toml"
    return Policy.from_toml(chosen) if chosen else Policy.from_mapping({})


#: commands that may create the store they open; every other one stops with an error on a
#: SQLite store that is not there, instead of creating an empty one (a mistyped ``--store``
#: would report a bad actor as clean, or suspend them in a file nobody reads)
CREATING = frozenset({"migrate"})


def _guard(args: argparse.Namespace) -> Safeguards:
    policy = load_policy(args.policy)
    if args.command not in CREATING:
        require_store(args.store or policy.storage.store)
    return Safeguards(policy, store=args.store)


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


def cmd_user(args: argparse.Namespace) -> int:
    with _guard(args) as guard:
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


def cmd_user_events(args: argparse.Namespace) -> int:
    """What was done about a user, newest first: strikes, voids, suspensions, reinstatements,
    terms, gateway keys, hash-key moves (who, when, why)."""
    with _guard(args) as guard:
        events = guard.audit.events(user_id=args.user, limit=args.limit)
    for event in events:
        if args.json:
            print(json.dumps({**asdict(event), "details": dict(event.details)}))
        else:
            details = "  ".join(f"{k}={v}" for k, v in sorted(event.details.items()))
            print(f"{when(event.at)}  {event.action:<22} by {event.actor}  {event.reason}  {details}".rstrip())
    return 0


AUDIT_FIND_HEADER = (
    f"{'request_id':<36}  {'at (UTC)':<20}  {'surface':<10} {'outcome':<22} {'status':<6} "
    "user_hash  anthropic_request_id  message_id"
)


def cmd_audit_find(args: argparse.Namespace) -> int:
    keys = {
        "request_id": args.request_id,
        "user_id": args.user,
        "anthropic_request_id": args.anthropic_request_id,
        "message_id": args.message_id,
    }
    if all(v is None for v in keys.values()):
        raise AupguardError("give at least one of --request-id, --user, --anthropic-request-id, --message-id")
    with _guard(args) as guard:
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


def cmd_capture(args: argparse.Namespace) -> int:
    with _guard(args) as guard:
        capture = guard.capture
        if args.capture_command == "purge":
            print(f"{capture.purge()} captured texts older than the retention window deleted")
            return 0
        if args.capture_command == "forget":
            gone = capture.forget(args.user)
            print(f"{gone} captured texts of that user erased (their data key is gone: archived copies are unreadable)")
            return 0
        since = time.time() - parse_duration(args.since) if args.since else 0.0
        total = capture.count(since=since, user_id=args.user)
        out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
        written = 0
        try:
            for item in capture.export(since=since, user_id=args.user):
                out.write(json.dumps(asdict(item), ensure_ascii=False) + "\n")
                written += 1
                if written % 200 == 0 or written == total:
                    _progress(written, total)
        finally:
            if out is not sys.stdout:
                out.close()
        _progress(written, total, finished=True)
        return 0


def _progress(count: int, total: int, *, finished: bool = False) -> None:
    width = 30
    filled = width if total == 0 else width * min(count, total) // total
    end = "\n" if finished else ""
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {count}/{total} exported", end=end, file=sys.stderr, flush=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    from ..stores import store_from_uri

    policy = load_policy(args.policy)
    store = store_from_uri(args.store or policy.storage.store, migrate=True, timeout=policy.storage.store_timeout)
    try:
        print(f"{store.uri}: schema version {store.schema_version()}, up to date")
    finally:
        store.close()
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import RULES_ONLY, assess, check_environment, check_moderators

    policy = load_policy(args.policy)
    marks = {"on": "[x]", "off": "[ ]", "not yet available": "[-]", RULES_ONLY: "[~]"}
    if policy.enforcement.mode == "monitor":
        print('Enforcement: MONITOR mode ([enforcement] mode = "monitor"): every check runs and is recorded,')
        print("  nothing the policy decides is refused (answers say Aupguard-Would-Refuse); strikes are")
        print('  recorded as monitored and do not climb the ladder. Set mode = "enforce" to act.')
    else:
        print("Enforcement: enforce mode: refusals, limits and the ladder act")
    tier = ""
    for p in assess(policy):
        if p.tier != tier:
            tier = p.tier
            print(f"\n{tier}")
        print(f"  {marks[p.state]} {p.practice}: {p.state}\n        {p.how}")
    print("\nThis machine")
    findings = check_environment(policy, store=args.store) + check_moderators(policy)
    for f in findings:
        print(f"  {'ok ' if f.ok else 'ERR'} {f.what}: {f.detail}")
    return 0 if all(f.ok for f in findings) else 1


def cmd_key_generate(args: argparse.Namespace) -> int:
    print(generate_key_entry(args.kid))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.dir))
    return 0


def build_parser() -> argparse.ArgumentParser:
    who = default_actor()
    parser = argparse.ArgumentParser(prog="aupguard", description="Safeguards for apps built on the Claude API.")
    parser.add_argument(
        "--policy",
        help="policy TOML file (default: $AUPGUARD_POLICY, else ./aupguard.toml if present)",
    )
    parser.add_argument("--store", help="store URI overriding [storage] store, e.g. sqlite:///aupguard.db")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
        p.set_defaults(func=cmd_user)
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
    when = p.add_mutually_exclusive_group()
    when.add_argument("--for", dest="for_", metavar="DURATION", help=DURATION_HELP)
    when.add_argument(
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
    p.set_defaults(func=cmd_user_events)

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
    find.set_defaults(func=cmd_audit_find)

    # `hash-key` (was `key`) and `gateway-keys` (was `keys`): the old names stay as aliases
    key = sub.add_parser("hash-key", aliases=["key"], help="user-hash keys: generate a key ring entry")
    key_sub = key.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    gen = key_sub.add_parser(
        "generate",
        help="print a new key ring entry 'kid:BASE64KEY'",
        description="print a new key ring entry 'kid:BASE64KEY'",
    )
    gen.add_argument("--kid", default="k1", help="key id, 1-16 letters or digits (default k1)")
    gen.set_defaults(func=cmd_key_generate)

    capture = sub.add_parser("capture", help="captured prompts and completions: export, purge, forget, archive")
    capture_sub = capture.add_subparsers(dest="capture_command", required=True, metavar="ACTION")
    export = command(capture_sub, "export", "decrypt captures to JSONL (with a progress bar on stderr)", cmd_capture)
    export.add_argument("--out", help="file to write (default: standard output)")
    export.add_argument("--since", metavar="DURATION", help="only captures younger than this, e.g. 7d")
    export.add_argument("--user", help="only this user's captures (their id in your app)")
    command(capture_sub, "purge", "delete captures older than [capture] retention", cmd_capture)
    forget = command(capture_sub, "forget", "erase a user's captures (deletes their data key)", cmd_capture)
    forget.add_argument("user", help="the user's id in your app")
    add_archive_commands(capture_sub, _guard, load_policy)

    command(sub, "doctor", "which safeguards practices this policy turns on; check key and store", cmd_doctor)
    command(sub, "migrate", 'bring the store\'s schema up to date (with [storage] migrate = "manual")', cmd_migrate)
    demo = command(sub, "demo", "a terminal walkthrough on embedded defaults", cmd_demo)
    demo.add_argument("--dir", default=".aupguard/demo", help="where the demo keeps its files")
    add_review_commands(sub, who, _guard)
    add_gateway_commands(sub, _guard)
    add_moderation_commands(sub, load_policy)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except (AupguardError, ValueError) as exc:
        print(f"aupguard: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("AUPGUARD_DEBUG"):
            raise
        print(
            f"aupguard: unexpected {exc.__class__.__name__}; rerun with AUPGUARD_DEBUG=1 for details",
            file=sys.stderr,
        )
        return 70

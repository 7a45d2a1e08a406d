"""The review commands of the ``aupguard`` CLI: ``review``, ``report``, ``reviewer``, ``console``.

The CLI acts as a reviewer named ``--reviewer`` (default ``cli:<login name>``); confirm and
dismiss claim the item first, so they fail while a console reviewer holds it.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path

from ..durations import DURATION_HELP, parse_duration
from ..errors import AupguardError
from ..review.accounts import MIN_PASSWORD, ReviewerAccounts
from ..review.queue import ReviewQueue
from ..review.report import report_csv, report_json, violation_report
from .appeals import add_appeal_commands
from .support import OpenGuard, when

__all__ = ["add_review_commands"]


def _review(args: argparse.Namespace, open_guard: OpenGuard) -> int:
    with open_guard(args) as guard:
        queue = ReviewQueue(guard)
        action, who = args.review_command, str(args.reviewer)
        if action == "list":
            page = queue.page(status=args.status, after=args.after, limit=args.limit)
            for e in page.entries:
                i = e.item
                row = {"id": i.id, "at": i.at, "user_hash": i.user_hash, "action": i.action,
                       "categories": list(i.categories), "status": i.status, "claimed_by": e.claimed_by}  # fmt: skip
                print(json.dumps(row) if args.json else
                      f"{i.id}  {when(i.at)}  {i.action:<7} {','.join(i.categories) or '-':<16} {i.status:<9} "
                      f"user {i.user_hash[:20]}…")  # fmt: skip
            if page.next_cursor and not args.json:
                print(f"(more: --after {page.next_cursor})")
            if not page.entries and not args.json:
                print("no items")
        elif action == "show":
            detail = queue.detail(args.item_id)
            history = queue.history(detail.entry.item.user_hash)
            i = detail.entry.item
            print(f"item       {i.id}\nflagged    {when(i.at)}\nstatus     {i.status}\nverdict    {i.action}")
            print(f"categories {', '.join(i.categories) or '-'}\nmoderators {', '.join(i.moderators) or '-'}")
            v = history.violations
            print(f"user       {i.user_hash}  level {history.status.level.value}, rate {history.rate:.1%} "
                  f"({v.flagged} flagged / {max(v.total, v.flagged)} calls)")  # fmt: skip
            print(f"request    {i.request_id or '-'}\nstrike     {i.strike_id or '-'}")
            print(f"claim      {detail.entry.claimed_by or '-'} until {when(detail.entry.claim_expires)}")
            for text in detail.texts:
                print(f"--- {text.kind} ---\n{text.text}")
        elif action == "claim":
            entry = queue.claim(args.item_id, who)
            print(f"claimed by {who} until {when(entry.claim_expires)}")
        elif action in ("confirm", "dismiss"):
            queue.claim(args.item_id, who)
            entry = (queue.confirm if action == "confirm" else queue.dismiss)(args.item_id, who, args.reason)
            print(f"item {entry.item.id} {entry.item.status} by {who}")
        elif action == "suspend":
            duration = parse_duration(args.for_) if args.for_ else None
            status = queue.suspend(args.user_hash, who, reason=args.reason, duration=duration)
            print(f"user {status.user_hash} {status.level.value} until {when(status.until)}")
        elif action == "reinstate":
            status = queue.reinstate(args.user_hash, who, reason=args.reason)
            print(f"user {status.user_hash} {status.level.value}")
        else:  # note
            note = queue.note(args.user_hash, who, args.text, item_id=args.item)
            print(f"note {note.id} added")
    return 0


def _report(args: argparse.Namespace, open_guard: OpenGuard) -> int:
    with open_guard(args) as guard:
        rows = violation_report(guard, limit=args.limit)
    if args.format == "csv":
        text = report_csv(rows)
    elif args.format == "json":
        text = report_json(rows) + "\n"
    else:
        lines = [f"{'user':<24} {'rate':>7} {'flagged':>8} {'calls':>7}  level      strikes"]
        lines += [f"{r.user_hash[:23]:<24} {r.rate:>7.1%} {r.flagged:>8} {r.total:>7}  {r.level:<10} {r.strikes}"
                  + (f"  (monitored {r.monitored}: enforce mode -> {r.would_level})" if r.monitored else "")
                  for r in rows]  # fmt: skip
        text = "\n".join(lines if rows else ["no flagged calls in the ladder window"]) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"password for {args.name} (at least {MIN_PASSWORD} characters): ")
    if getpass.getpass("again: ") != first:
        raise AupguardError("the passwords differ")
    return first


def _reviewer(args: argparse.Namespace, open_guard: OpenGuard) -> int:
    with open_guard(args) as guard:
        accounts = ReviewerAccounts(guard.store, guard._clock)
        if args.reviewer_command == "add":
            accounts.check_name(args.name)
            accounts.add(args.name, _read_password(args), replace=args.replace)
            print(f"reviewer {args.name} {'updated' if args.replace else 'added'}")
        elif args.reviewer_command == "list":
            for name in accounts.names():
                print(name)
        elif not accounts.remove(args.name):
            raise AupguardError(f"no reviewer is named {args.name!r}")
        else:
            print(f"reviewer {args.name} removed (their sessions ended)")
    return 0


def _console(args: argparse.Namespace, open_guard: OpenGuard) -> int:
    import uvicorn

    from aupguard_console import review_console

    guard = open_guard(args)
    if args.insecure_cookie:  # plain HTTP on localhost: the cookie cannot be Secure
        review = dataclasses.replace(guard.policy.review, secure_cookie=False)
        guard.policy = guard.policy.replace(review=review)
    print(f"aupguard review console on http://{args.host}:{args.port}{args.root_path}/  (Ctrl-C stops)")
    try:
        uvicorn.run(review_console(guard), host=args.host, port=args.port, root_path=args.root_path,
                    log_level="warning")  # fmt: skip
    finally:
        guard.close()
    return 0


def add_review_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], who: str, open_guard: OpenGuard
) -> None:
    def runs(fn: Callable[[argparse.Namespace, OpenGuard], int]) -> Callable[[argparse.Namespace], int]:
        return lambda args: fn(args, open_guard)

    review = sub.add_parser("review", help="the human review queue: list, show, claim, confirm, dismiss, ...")
    rsub = review.add_subparsers(dest="review_command", required=True, metavar="ACTION")

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        p = rsub.add_parser(name, help=help_, description=help_)
        p.add_argument("--reviewer", default=who, help=f"who acts (default: {who})")
        p.set_defaults(func=runs(_review))
        return p

    p = cmd("list", "items in the queue, newest first")
    p.add_argument("--status", default="open", choices=("open", "confirmed", "dismissed"))
    p.add_argument("--limit", type=int, default=20, help="items per page (default 20)")
    p.add_argument("--after", metavar="CURSOR", help="the next page: the cursor the previous page printed")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    cmd("show", "one item with its captured prompt and the user's history").add_argument("item_id")
    cmd("claim", "claim an item (it expires after [review] claim_for)").add_argument("item_id")
    for name, help_ in (("confirm", "the flag was right: the strike stands"),
                        ("dismiss", "a false positive: void the strike, the user de-escalates at once")):  # fmt: skip
        p = cmd(name, help_)
        p.add_argument("item_id")
        p.add_argument("--reason", default="", help="why (recorded in the audit trail)")
    p = cmd("suspend", "suspend a user by hash (as the queue shows it)")
    p.add_argument("user_hash")
    p.add_argument("--for", dest="for_", metavar="DURATION", help=DURATION_HELP + " (default: until reinstated)")
    p.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    p = cmd("reinstate", "reinstate a user by hash")
    p.add_argument("user_hash")
    p.add_argument("--reason", default="reinstated by a reviewer", help="why")
    p = cmd("note", "add a note to a user's history")
    p.add_argument("user_hash")
    p.add_argument("text")
    p.add_argument("--item", help="the review item the note is about")
    add_appeal_commands(cmd, runs)

    report = sub.add_parser("report", help="reports: violations (users ranked by violation rate)")
    report_sub = report.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    about = "users ranked by violation rate (flagged / guarded calls) over the ladder window"
    p = report_sub.add_parser("violations", help=about, description=about)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--limit", type=int, default=100, help="most users to list (default 100)")
    p.add_argument("--out", help="file to write (default: standard output)")
    p.set_defaults(func=runs(_report))

    reviewer = sub.add_parser("reviewer", help="review console accounts: add, list, remove")
    rv_sub = reviewer.add_subparsers(dest="reviewer_command", required=True, metavar="ACTION")
    p = rv_sub.add_parser("add", help="add an account (scrypt-hashed password)", description="add a reviewer account")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--replace", action="store_true", help="set a new password for an existing account")
    p.set_defaults(func=runs(_reviewer))
    rv_sub.add_parser("list", help="account names").set_defaults(func=runs(_reviewer))
    p = rv_sub.add_parser("remove", help="remove an account and end its sessions")
    p.add_argument("name")
    p.set_defaults(func=runs(_reviewer))

    console = sub.add_parser("console", help="serve the review console (needs the 'console' extra)")
    console.add_argument("--host", default="127.0.0.1")
    console.add_argument("--port", type=int, default=8800)
    console.add_argument("--root-path", default="", help="the path prefix a proxy serves the console under")
    console.add_argument("--insecure-cookie", action="store_true",
                         help="send the session cookie over plain HTTP (local use only)")  # fmt: skip
    console.set_defaults(func=runs(_console))

"""The appeal commands of ``aupguard review``: ``appeals`` (the queue, oldest first),
``appeal`` (one appeal with its text), ``uphold`` and ``deny`` (the reason is shown to the
user in their notices)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from ..review.queue import actor_of
from ..stores.appeal_records import APPEAL_STATUSES
from .support import OpenGuard, when

__all__ = ["add_appeal_commands"]


def _appeals(args: argparse.Namespace, open_guard: OpenGuard) -> int:
    with open_guard(args) as guard:
        desk, action = guard.appeals, args.review_command
        if action == "appeals":
            rows = guard.store.appeals_page(status=args.status, limit=args.limit)
            for a in rows:
                row = {"id": a.id, "at": a.at, "user_hash": a.user_hash, "strike_id": a.strike_id,
                       "request_id": a.request_id, "status": a.status, "decided_by": a.decided_by,
                       "reason": a.decision_reason}  # fmt: skip
                line = f"{a.id}  {when(a.at)}  {a.status:<7} strike {a.strike_id or '-'}  user {a.user_hash}"
                print(json.dumps(row) if args.json else line)
            if not rows and not args.json:
                print("no appeals")
        elif action == "appeal":
            a = desk.get(args.appeal_id)
            print(f"appeal     {a.id}\nfiled      {when(a.at)}\nstatus     {a.status}\nuser       {a.user_hash}")
            print(f"strike     {a.strike_id or '-'}\nrequest    {a.request_id or '-'}")
            if a.status != "open":
                print(f"decided    {when(a.decided_at)} by {a.decided_by}: {a.decision_reason}")
            text = desk.text(a)
            print(f"--- the user's text ---\n{text if text is not None else '(cannot be opened with this key ring)'}")
        else:
            upheld = action == "uphold"
            desk.decide_appeal(args.appeal_id, upheld=upheld, reason=args.reason, actor=actor_of(str(args.reviewer)))
            print(f"appeal {args.appeal_id} {'upheld: the strike is voided' if upheld else 'denied'}")
    return 0


def add_appeal_commands(
    cmd: Callable[[str, str], argparse.ArgumentParser], runs: Callable[..., Callable[[argparse.Namespace], int]]
) -> None:
    """Add the appeal actions to ``aupguard review`` (``cmd`` makes one action's parser)."""
    p = cmd("appeals", "end users' appeals, oldest first")
    p.add_argument("--status", default="open", choices=APPEAL_STATUSES)
    p.add_argument("--limit", type=int, default=50, help="appeals to list (default 50)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=runs(_appeals))
    p = cmd("appeal", "one appeal with the user's text")
    p.add_argument("appeal_id")
    p.set_defaults(func=runs(_appeals))
    for name, help_ in (("uphold", "the appeal is right: void the strike (and the suspension it caused)"),
                        ("deny", "the strike stands")):  # fmt: skip
        p = cmd(name, help_)
        p.add_argument("appeal_id")
        p.add_argument("--reason", required=True, help="why; the user reads it in their notices")
        p.set_defaults(func=runs(_appeals))

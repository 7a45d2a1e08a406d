"""The ``aupguard`` command line. Errors print one line and exit 2; never a traceback
(set ``AUPGUARD_DEBUG=1`` to see one)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..engine.safeguards import Safeguards
from ..errors import AupguardError
from ..policy.config import Policy
from .audit import add_audit_commands
from .capture import add_capture_commands
from .demo import add_demo_command
from .doctor import add_doctor_command
from .gateway import add_gateway_commands
from .key import add_key_commands
from .migrate import add_migrate_command
from .moderation import add_moderation_commands
from .review import add_review_commands
from .support import default_actor, require_store
from .user import add_user_commands

__all__ = ["build_parser", "main"]


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


def build_parser() -> argparse.ArgumentParser:
    who = default_actor()
    parser = argparse.ArgumentParser(prog="aupguard", description="Safeguards for apps built on the Claude API.")
    parser.add_argument(
        "--policy",
        help="policy TOML file (default: $AUPGUARD_POLICY, else ./aupguard.toml if present)",
    )
    parser.add_argument("--store", help="store URI overriding [storage] store, e.g. sqlite:///aupguard.db")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_user_commands(sub, who, _guard)
    add_audit_commands(sub, _guard)
    add_key_commands(sub)
    add_capture_commands(sub, _guard, load_policy)
    add_doctor_command(sub, load_policy)
    add_migrate_command(sub, load_policy)
    add_demo_command(sub)
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

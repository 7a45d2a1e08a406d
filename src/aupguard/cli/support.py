"""What the command line's modules share: how a time is shown, how a subcommand is declared,
and the types of the callables that open an engine or load the policy from the parsed arguments."""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AupguardError
from ..stores import sqlite_file
from ..timestamps import utc_text

if TYPE_CHECKING:
    from ..engine.safeguards import Safeguards
    from ..policy.config import Policy

__all__ = ["LoadPolicy", "OpenGuard", "command", "default_actor", "positive", "require_store", "when"]

#: opens the engine the arguments name (policy, store); a context manager
OpenGuard = Callable[[argparse.Namespace], "Safeguards"]
#: the policy a ``--policy`` value names (None: ``$AUPGUARD_POLICY``, else ./aupguard.toml, else defaults)
LoadPolicy = Callable[[str | None], "Policy"]


def when(ts: float | None) -> str:
    """A timestamp as UTC text; ``-`` for none."""
    return "-" if ts is None else utc_text(ts)


def require_store(uri: str) -> None:
    """Refuse to open a SQLite store that is not there: opening it would create an empty one,
    and a mistyped ``--store`` would then report a bad actor as clean, or suspend them in a
    file nobody reads. ``aupguard migrate`` (or the app, on start) creates a store."""
    path = sqlite_file(uri)
    if path is not None and not Path(path).is_file():
        raise AupguardError(
            f"no store at {path}: commands never create one (check --store or [storage] store; "
            "`aupguard migrate` creates a new one)"
        )


def command(parent: Any, name: str, about: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """A subcommand of ``parent`` (a subparsers object) whose help and description are ``about``."""
    parser: argparse.ArgumentParser = parent.add_parser(name, help=about, description=about)
    parser.set_defaults(func=func)
    return parser


def default_actor() -> str:
    """Who a command acts as in the audit trail unless ``--actor`` says: ``cli:<login name>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def positive(text: str) -> int:
    """An argument that must be a whole number of at least 1 (argparse's ``type``)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value

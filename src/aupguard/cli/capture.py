"""The capture commands of the ``aupguard`` CLI: ``capture export | purge | forget``, and
``archive | read-archive`` (:mod:`aupguard.cli.archive`). Export decrypts to JSONL with a
progress bar on standard error."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict

from ..durations import parse_duration
from .archive import add_archive_commands
from .support import LoadPolicy, OpenGuard, command

__all__ = ["add_capture_commands"]


def _capture(args: argparse.Namespace, open_guard: OpenGuard) -> int:
    with open_guard(args) as guard:
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


def add_capture_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], open_guard: OpenGuard, load_policy: LoadPolicy
) -> None:
    def run(args: argparse.Namespace) -> int:
        return _capture(args, open_guard)

    capture = sub.add_parser("capture", help="captured prompts and completions: export, purge, forget, archive")
    capture_sub = capture.add_subparsers(dest="capture_command", required=True, metavar="ACTION")
    export = command(capture_sub, "export", "decrypt captures to JSONL (with a progress bar on stderr)", run)
    export.add_argument("--out", help="file to write (default: standard output)")
    export.add_argument("--since", metavar="DURATION", help="only captures younger than this, e.g. 7d")
    export.add_argument("--user", help="only this user's captures (their id in your app)")
    command(capture_sub, "purge", "delete captures older than [capture] retention", run)
    forget = command(capture_sub, "forget", "erase a user's captures (deletes their data key)", run)
    forget.add_argument("user", help="the user's id in your app")
    add_archive_commands(capture_sub, open_guard, load_policy)

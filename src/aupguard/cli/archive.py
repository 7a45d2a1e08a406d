"""``aupguard capture archive`` and ``aupguard capture read-archive``.

The periodic archive is this command run by cron (or a systemd timer), not a thread in the
app: a batch job that holds object-store credentials and uploads for minutes belongs in one
place with its own exit code and logs, not in every forked web worker. Several copies at
once (two hosts' crontabs, an overlapping run) are safe: the store hands each capture to
one part. Exit codes: 0 done, 2 an error to fix (no such bucket, access denied, bad URL),
75 (EX_TEMPFAIL) the object store could not be reached: the next run continues.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TextIO

from ..errors import AupguardError, PolicyError
from ..policy.archive import ENDPOINT_HELP, S3_URL_HELP, parse_s3_url
from ..policy.config import Policy
from ..policy.values import http_url
from .support import OpenGuard, require_store

__all__ = ["EX_TEMPFAIL", "Progress", "add_archive_commands"]

EX_TEMPFAIL = 75


class Progress:
    """A bar redrawn in place on a terminal; one plain line per object otherwise (cron mail, logs)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()

    def start(self, run: Any) -> None:
        if not self.tty:
            print(f"archiving {run.total} captures to {run.destination}", file=self.stream, flush=True)

    def part(self, run: Any, part: Any, captures: int) -> None:
        if self.tty:
            width = 30
            filled = width if run.total == 0 else width * min(run.captures, run.total) // run.total
            bar = f"[{'#' * filled}{'.' * (width - filled)}] {run.captures}/{run.total} captures, {run.parts} objects"
            print(f"\r{bar}", end="", file=self.stream, flush=True)
        else:
            line = f"{part.day} part {part.part}: {captures} captures -> {part.object_key} ({run.captures}/{run.total})"
            print(line, file=self.stream, flush=True)

    def finish(self) -> None:
        if self.tty:
            print(file=self.stream, flush=True)


def _where(args: argparse.Namespace, policy: Policy, url: str | None) -> tuple[Any, str | None]:
    chosen = url or policy.capture.archive
    if chosen is None:
        raise AupguardError("no archive destination: give --to s3://bucket/prefix or set [capture] archive")
    try:
        target = parse_s3_url(chosen)
    except ValueError as exc:
        raise PolicyError("--to", chosen, f"{S3_URL_HELP}: {exc}") from None
    endpoint = args.endpoint_url
    if endpoint is not None:
        endpoint = http_url("--endpoint-url", ENDPOINT_HELP)(endpoint) if endpoint else None
    else:
        endpoint = policy.capture.archive_endpoint_url
    return target, endpoint


def _cmd_archive(args: argparse.Namespace, load_policy: Callable[[str | None], Policy]) -> int:
    from ..capture.archive import archive_captures
    from ..capture.s3 import S3Objects
    from ..errors import ArchiveError
    from ..stores import store_from_uri

    policy = load_policy(args.policy)
    target, endpoint = _where(args, policy, args.to)
    uri = args.store or policy.storage.store
    require_store(uri)
    store = store_from_uri(
        uri, migrate=policy.storage.migrate == "on-start", pool_size=1, timeout=policy.storage.store_timeout
    )
    progress = Progress(sys.stderr)
    try:
        objects = S3Objects(target, endpoint_url=endpoint)
        objects.check()
        compress = policy.capture.archive_gzip if args.gzip is None else args.gzip
        run = archive_captures(
            store, objects, target, clock=time.time, compress=compress, on_start=progress.start, on_part=progress.part
        )
    except ArchiveError as exc:
        progress.finish()
        print(f"aupguard: error: {exc}", file=sys.stderr)
        return EX_TEMPFAIL if exc.transient else 2
    finally:
        store.close()
    progress.finish()
    held = f"; {run.held} parts held by another run, left to it" if run.held else ""
    print(f"{run.captures} captures archived in {run.parts} objects to {run.destination}{held}; manifest.json updated")
    return 0


def _cmd_read(args: argparse.Namespace, open_guard: OpenGuard, load_policy: Callable[[str | None], Policy]) -> int:
    from ..capture.archive import read_archive
    from ..capture.s3 import S3Objects
    from ..errors import ArchiveError

    target, endpoint = _where(args, load_policy(args.policy), args.from_)
    readable = unreadable = 0
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    try:
        with open_guard(args) as guard:
            for item in read_archive(guard.capture, S3Objects(target, endpoint_url=endpoint), target, day=args.day):
                if item is None:
                    unreadable += 1
                    continue
                readable += 1
                out.write(json.dumps(asdict(item), ensure_ascii=False) + "\n")
    except ArchiveError as exc:
        print(f"aupguard: error: {exc}", file=sys.stderr)
        return EX_TEMPFAIL if exc.transient else 2
    finally:
        if out is not sys.stdout:
            out.close()
    summary = f"{readable} archived captures decrypted; {unreadable} unreadable (their user was forgotten)"
    print(summary, file=sys.stderr)
    return 0


def add_archive_commands(capture_sub: Any, open_guard: OpenGuard, load_policy: Callable[[str | None], Policy]) -> None:
    about = "copy captures, still encrypted, to s3://bucket/prefix as JSONL per UTC day, with a manifest"
    archive = capture_sub.add_parser("archive", help=about, description=about)
    archive.add_argument("--to", metavar="S3_URL", help="s3://bucket/prefix (default: [capture] archive)")
    archive.add_argument("--endpoint-url", metavar="URL", help="an S3-compatible server (default: AWS S3)")
    archive.add_argument("--gzip", action=argparse.BooleanOptionalAction, default=None,
                         help="gzip each object (default: [capture] archive_gzip, true)")  # fmt: skip
    archive.set_defaults(func=lambda args: _cmd_archive(args, load_policy))

    about = "decrypt archived captures to JSONL (a forgotten user's are unreadable and skipped)"
    read = capture_sub.add_parser("read-archive", help=about, description=about)
    read.add_argument("--from", dest="from_", metavar="S3_URL", help="s3://bucket/prefix (default: [capture] archive)")
    read.add_argument("--endpoint-url", metavar="URL", help="an S3-compatible server (default: AWS S3)")
    read.add_argument("--day", metavar="YYYY-MM-DD", help="only this UTC day")
    read.add_argument("--out", help="file to write (default: standard output)")
    read.set_defaults(func=lambda args: _cmd_read(args, open_guard, load_policy))

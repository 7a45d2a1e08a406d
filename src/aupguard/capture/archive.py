"""The archive of captures in S3-compatible object storage (``aupguard capture archive``).

What goes out is what the store holds: each capture's ciphertext, still encrypted with its
user's data key, one JSON line per capture, one object per UTC day per part (a run archives
at most ``part_size`` captures per object, and rows that arrive for a day already archived
become its next part). The data keys stay in the store, wrapped by the capture master key:
``aupguard capture forget`` deletes a user's key, and their archived text, which nobody can
then decrypt, is gone with it. The archiving host needs no capture key at all.

Each row is claimed by one part in the store (see
:mod:`aupguard.stores.tables.capture_archive`), so runs on several hosts at once archive each
capture once, and a run that stopped is resumed, part by part, by the next: a part's object
is rebuilt from the same rows under the same key, so a retry overwrites, never duplicates.
At the end of a run ``manifest.json`` lists every part: days, counts, SHA-256 of each
object, key ids and the aupguard version.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..errors import ArchiveError
from ..policy.archive import ArchiveTarget
from ..stores.tables.capture_archive import ArchivedRow, ArchivePart
from ..timestamps import utc_text

if TYPE_CHECKING:
    from ..stores import SQLStore
    from .recorder import Capture, CapturedText

__all__ = ["ArchiveRun", "ObjectStore", "archive_captures", "read_archive"]

FORMAT = "aupguard-capture-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PART_SIZE = 10_000  # captures per object at most: bounds a run's memory and what a retry redoes
LEASE_SECONDS = 300.0  # a part claimed by a run that died is taken over after this


class ObjectStore(Protocol):
    """What the archive needs of an object store (:class:`~aupguard.capture.s3.S3Objects`)."""

    def put(self, key: str, data: bytes, *, content_type: str) -> None: ...

    def get(self, key: str) -> bytes | None: ...


@dataclass
class ArchiveRun:
    """What a run did: parts written (by this run), captures in them, parts held by another run."""

    destination: str
    total: int = 0  # captures to archive when the run started
    parts: int = 0
    captures: int = 0
    held: int = 0  # unfinished parts leased to a live (or recently stopped) run: left to it
    written: list[str] = field(default_factory=list)  # object keys


def _day(ts: float) -> tuple[str, float, float]:
    start = dt.datetime.fromtimestamp(ts, dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start.date().isoformat(), start.timestamp(), (start + dt.timedelta(days=1)).timestamp()


def encode_rows(rows: list[ArchivedRow]) -> bytes:
    """One JSON line per capture: ids, time, the master key id wrapping the user's data key,
    and the AES-GCM nonce and ciphertext (base64). No plaintext."""
    lines = []
    for request_id, kind, user_hash, at, nonce, ciphertext, master_kid in rows:
        line = {
            "request_id": request_id, "kind": kind, "user_hash": user_hash, "at": at, "master_key_id": master_kid,
            "nonce": base64.b64encode(nonce).decode(), "ciphertext": base64.b64encode(ciphertext).decode(),
        }  # fmt: skip
        lines.append(json.dumps(line, sort_keys=True, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode() if lines else b""


def archive_captures(
    store: SQLStore,
    objects: ObjectStore,
    target: ArchiveTarget,
    *,
    clock: Callable[[], float],
    compress: bool = True,
    part_size: int = PART_SIZE,
    lease: float = LEASE_SECONDS,
    on_start: Callable[[ArchiveRun], None] = lambda run: None,
    on_part: Callable[[ArchiveRun, ArchivePart, int], None] = lambda run, part, n: None,
) -> ArchiveRun:
    """Archive every capture made before now that no part holds yet, and finish the parts
    earlier runs left; then write the manifest. On an exception the run's unfinished parts
    are released, so the next run continues at once where this one stopped."""
    owner = f"{os.getpid()}-{uuid.uuid4().hex}"
    cutoff = clock()
    run = ArchiveRun(target.url)
    run.total = store.count_unarchived_captures(before=cutoff) + store.count_unfinished_archive_captures(target.url)
    on_start(run)

    def write(part: ArchivePart) -> None:
        rows = store.archive_part_rows(part.part_id)
        data = encode_rows(rows)
        if part.object_key.endswith(".gz"):
            data = gzip.compress(data, mtime=0)  # mtime 0: a retry writes the same bytes
        if rows:
            objects.put(part.object_key, data, content_type="application/x-ndjson")
        key_ids = {
            "master_key_ids": sorted({r[6] for r in rows if r[6]}),
            "hash_key_ids": sorted({r[2].partition("_")[0] for r in rows}),
        }
        done = store.finish_archive_part(
            part.part_id, owner=owner, done_at=clock(), captures=len(rows),
            sha256=hashlib.sha256(data).hexdigest(), size=len(data), key_ids=json.dumps(key_ids),
        )  # fmt: skip
        if done:  # not done: our lease ran out and another run took the part (same rows, same object)
            run.parts += 1
            run.captures += len(rows)
            run.written.append(part.object_key)
            on_part(run, part, len(rows))

    try:
        for part in store.unfinished_archive_parts(target.url):
            if store.take_archive_part(part.part_id, owner=owner, now=clock(), lease_until=clock() + lease):
                write(part)
            else:
                run.held += 1
        while (oldest := store.oldest_unarchived_capture(before=cutoff)) is not None:
            day, start, end = _day(oldest)
            suffix = ".jsonl.gz" if compress else ".jsonl"
            claimed = store.claim_archive_part(
                destination=target.url, day=day, start=start, end=min(end, cutoff), owner=owner,
                lease_until=clock() + lease, limit=part_size,
                object_key=lambda n: target.key("captures", f"day={day}", f"part-{n:04d}{suffix}"),  # noqa: B023
            )  # fmt: skip
            if claimed is not None:  # None: another run claimed those rows first
                write(claimed)
    finally:
        store.release_archive_parts(owner)
    objects.put(target.key(MANIFEST), manifest(store, target, clock()), content_type="application/json")
    return run


def manifest(store: SQLStore, target: ArchiveTarget, now: float) -> bytes:
    """Every part done at ``target`` according to the store (the source of truth; each run
    rewrites the manifest, so one written by a slower concurrent run is mended by the next)."""
    from .. import __version__

    parts: list[dict[str, object]] = []
    days: dict[str, dict[str, int]] = {}
    for p in store.done_archive_parts(target.url):
        if not p.captures:
            continue  # every row of it was forgotten before it was written: no object
        ids = json.loads(p.key_ids or "{}")
        parts.append({
            "day": p.day, "part": p.part, "key": p.object_key, "captures": p.captures, "sha256": p.sha256,
            "bytes": p.size, "gzip": p.object_key.endswith(".gz"), "archived_at": utc_text(p.done_at or 0.0),
            "master_key_ids": ids.get("master_key_ids", []), "hash_key_ids": ids.get("hash_key_ids", []),
        })  # fmt: skip
        entry = days.setdefault(p.day, {"captures": 0, "parts": 0})
        entry["captures"] += p.captures
        entry["parts"] += 1
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "aupguard_version": __version__,
        "destination": target.url,
        "written_at": utc_text(now),
        "encryption": "AES-256-GCM, one data key per user, kept in the aupguard store wrapped by the capture "
        "master key (master_key_id); associated data 'aupguard-capture|<request_id>|<kind>'",
        "days": days,
        "parts": parts,
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def read_manifest(objects: ObjectStore, target: ArchiveTarget) -> dict[str, object]:
    raw = objects.get(target.key(MANIFEST))
    if raw is None:
        raise ArchiveError(f"no archive at {target.url} (no {MANIFEST}; run `aupguard capture archive` first)")
    document = json.loads(raw)
    if document.get("format") != FORMAT or document.get("format_version") != FORMAT_VERSION:
        raise ArchiveError(f"{target.url}/{MANIFEST} is not an aupguard capture archive this version reads")
    return dict(document)


def read_archive(
    capture: Capture, objects: ObjectStore, target: ArchiveTarget, *, day: str | None = None
) -> Iterator[CapturedText | None]:
    """Every archived capture (of ``day``), decrypted with the store's data keys; ``None`` for
    one that cannot be read (its user was forgotten). Each object is checked against the
    manifest's SHA-256 first."""
    document = read_manifest(objects, target)
    parts = document["parts"]
    assert isinstance(parts, list)
    for part in parts:
        if day is not None and part["day"] != day:
            continue
        data = objects.get(part["key"])
        if data is None:
            raise ArchiveError(f"the manifest lists {part['key']}, which is not in the bucket")
        if hashlib.sha256(data).hexdigest() != part["sha256"]:
            raise ArchiveError(f"{part['key']} does not match the manifest's SHA-256: altered or truncated")
        text = gzip.decompress(data) if part["gzip"] else data
        for line in text.decode().splitlines():
            row = json.loads(line)
            nonce, ciphertext = base64.b64decode(row["nonce"]), base64.b64decode(row["ciphertext"])
            yield capture.open_row(row["request_id"], row["kind"], row["user_hash"], row["at"], nonce, ciphertext)

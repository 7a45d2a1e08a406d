"""Audit operations set aside in a local file while the store is down, replayed when it is back.

Each process appends to a file of its own (``audit-<pid>-<random>.jsonl`` in ``[storage]
spill``), flushed and fsync'd per batch, and holds an exclusive ``flock`` on it while it
lives. Replay takes every file it can lock: its own, and those of processes that died with
records in them. Replaying is idempotent (the store skips rows it has and links only fill
in), so a crash between writing and deleting a file loses nothing and doubles nothing.

The file is bounded by ``[storage] spill_max`` bytes; past it (or on a full disk) records
stay in memory, writers wait for room, and the log says so at CRITICAL level.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ..stores.sql import AuditOp

__all__ = ["SpillFile"]

log = logging.getLogger("aupguard.audit")
_REPLAY_BATCH = 512
_BYTES = "__aupguard_b64__"  # marks a bytes value (ciphertext, nonce) in a spilled row


class SpillFile:
    def __init__(self, directory: str, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self.bytes = 0  # in this process's own file
        self.spilled = 0  # operations set aside since start
        self.replayed = 0  # operations written back from any spill file
        self.full = False
        self._orphans = any(self._others())  # files left by processes that ended before replay

    def after_fork(self) -> None:
        """The parent's file and lock are the parent's: the child opens its own when needed."""
        self._file = None
        self._path = None
        self.bytes = 0

    @property
    def pending(self) -> bool:
        """Whether anything waits to be replayed (own records, or a dead process's file)."""
        return self.bytes > 0 or self._orphans

    def append(self, ops: list[AuditOp]) -> bool:
        """Write ``ops`` durably; False (nothing written) if the bound or the disk is reached."""
        data = b"".join(_encode(op) for op in ops)
        if self.bytes + len(data) > self.max_bytes:
            self._alarm(f"the spill file reached its bound of {self.max_bytes} bytes ([storage] spill_max)")
            return False
        try:
            handle = self._own()
            view = memoryview(data)
            while view:  # unbuffered: what did not reach the file is not held in a buffer either
                written = handle.write(view)
                view = view[written or 0 :]
            os.fsync(handle.fileno())
        except OSError as exc:
            self._alarm(f"the spill file cannot be written ({exc.__class__.__name__}: {exc.strerror})")
            self._drop_tail()
            return False
        self.bytes += len(data)
        self.spilled += len(ops)
        self.full = False
        return True

    def replay(self, write: Callable[[list[AuditOp]], None]) -> int:
        """Write every spilled operation through ``write`` (in the order spilled) and remove
        what was written. Raises what ``write`` raises (the files stay for the next try)."""
        done = 0
        busy = False
        for path in list(self._others()):
            try:
                handle = path.open("rb+")
            except OSError:
                continue
            with handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # a live process's file
                    busy = True
                    continue
                done += self._replay_handle(handle, write)
                path.unlink(missing_ok=True)
        self._orphans = False if not busy else self._orphans
        if self._file is not None and self.bytes:
            self._file.flush()
            assert self._path is not None
            with self._path.open("rb") as own:
                done += self._replay_handle(own, write)
            self._file.seek(0)
            self._file.truncate(0)
            self.bytes = 0
        if done:
            self.replayed += done
            log.warning("replayed %d audit operations from the spill file", done)
        return done

    def _replay_handle(self, handle: IO[bytes], write: Callable[[list[AuditOp]], None]) -> int:
        handle.seek(0)
        batch: list[AuditOp] = []
        count = 0
        for op in _decode_lines(handle):
            batch.append(op)
            if len(batch) >= _REPLAY_BATCH:
                write(batch)
                count += len(batch)
                batch = []
        if batch:
            write(batch)
            count += len(batch)
        return count

    def _drop_tail(self) -> None:
        """After a failed write: cut the half-written tail so replay never sees half a line; if
        even that fails, leave the file as it is (replay stops at its last whole line) and
        start a new one next time."""
        if self._file is None:
            return
        try:
            self._file.truncate(self.bytes)
        except OSError:
            self._file.close()  # its lock goes with it: replay takes it as a finished file
            self._file, self._path, self.bytes = None, None, 0
            self._orphans = True

    def _own(self) -> IO[bytes]:
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._path = self.directory / f"audit-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
            self._file = self._path.open("ab+", buffering=0)
            fcntl.flock(self._file, fcntl.LOCK_EX)
            os.chmod(self._path, 0o600)  # hashes and ciphertext only, but still the operator's
        return self._file

    def _others(self) -> Iterator[Path]:
        if not self.directory.is_dir():
            return
        for path in self.directory.glob("audit-*.jsonl"):
            if path != self._path:
                yield path

    def _alarm(self, why: str) -> None:
        if not self.full:
            log.critical("AUDIT SPILL FULL: %s; records are held in memory and writers will wait", why)
        self.full = True

    def close(self) -> None:
        if self._file is not None:
            empty = self.bytes == 0
            self._file.close()
            if empty and self._path is not None:
                self._path.unlink(missing_ok=True)
            self._file = None


def _encode(op: AuditOp) -> bytes:
    kind, row = op
    values = [{_BYTES: base64.b64encode(v).decode()} if isinstance(v, bytes) else v for v in row]
    return json.dumps([kind, values], separators=(",", ":")).encode() + b"\n"


def _decode_lines(handle: IO[bytes]) -> Iterator[AuditOp]:
    for line in handle:
        if not line.endswith(b"\n"):  # a tail cut by a crash mid-write was never acknowledged
            return
        kind, values = json.loads(line)
        row: list[Any] = [base64.b64decode(v[_BYTES]) if isinstance(v, dict) and _BYTES in v else v for v in values]
        yield kind, tuple(row)

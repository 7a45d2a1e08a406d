"""Captured prompts and completions, encrypted at rest, for the operator's own evaluation.

Envelope encryption with AES-256-GCM (``cryptography``): each user has a random data key,
stored only wrapped by the master key (``[capture] key_env``, a key ring like the hash key:
``kid:BASE64KEY``, current first). Text is encrypted with the user's data key before it is
queued for the store; the additional data binds each ciphertext to its request id and kind,
so a ciphertext cannot be moved to another record. Deleting a user's data key
(:meth:`Capture.forget`) deletes their key and text (with SQLite's secure delete and a
checkpoint of the write-ahead log); other processes stop using the key within 30 s.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import ConfigurationError
from ..identity import Keyring
from ..policy.config import CapturePolicy

if TYPE_CHECKING:
    from ..audit.writer import AuditLog
    from ..identity import UserHasher
    from ..outcome import Decision
    from ..stores import SQLStore

__all__ = ["Capture", "CapturedText"]

KINDS = ("prompt", "completion")
KEY_CACHE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class CapturedText:
    request_id: str
    kind: str  # prompt | completion
    user_hash: str
    at: float
    text: str


class Capture:
    def __init__(
        self,
        policy: CapturePolicy,
        store: SQLStore,
        audit: AuditLog,
        hasher: UserHasher,
        clock: Callable[[], float],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.policy = policy
        self.enabled = policy.enabled
        self._store = store
        self._audit = audit
        self._hasher = hasher
        self._clock = clock
        self._keys: dict[str, tuple[float, bytes]] = {}  # user hash -> (loaded at, data key), memory only
        self._lock = threading.Lock()
        self._ring: Keyring | None = None
        if self.enabled:
            text = (os.environ if env is None else env).get(policy.key_env, "")
            if not text.strip():
                raise ConfigurationError(
                    f"[capture] is enabled but the environment variable {policy.key_env} holds no master key "
                    "(generate one with `aupguard key generate --kid c1`)"
                )
            self._ring = Keyring.parse(text, source=f"environment variable {policy.key_env}")

    # -- keys ----------------------------------------------------------------------------

    def has_key(self, user_hash: str) -> bool:
        """Whether the user's data key is cached and fresh: capturing then reads no store."""
        cached = self._keys.get(user_hash)
        return cached is not None and self._clock() - cached[0] < KEY_CACHE_SECONDS

    def _data_key(self, user_hash: str, *, create: bool) -> bytes | None:
        cached = self._keys.get(user_hash)
        # re-read after a while, so a `forget` made by another process takes effect here too
        if cached is not None and self._clock() - cached[0] < KEY_CACHE_SECONDS:
            return cached[1]
        assert self._ring is not None
        stored = self._store.capture_key(user_hash)
        if stored is None:
            if not create:
                return None
            fresh = AESGCM.generate_key(bit_length=256)
            master = self._ring.current
            nonce = os.urandom(12)
            wrapped = AESGCM(master.secret[:32]).encrypt(nonce, fresh, user_hash.encode())
            stored = self._store.put_capture_key(user_hash, (master.kid, nonce, wrapped), self._clock())
        kid, nonce, wrapped = stored
        master_key = next((k for k in self._ring.keys if k.kid == kid), None)
        if master_key is None:
            raise ConfigurationError(f"the capture master key {kid!r} is not in {self.policy.key_env}")
        key = AESGCM(master_key.secret[:32]).decrypt(nonce, wrapped, user_hash.encode())
        with self._lock:
            self._keys[user_hash] = (self._clock(), key)
        return key

    # -- writing -------------------------------------------------------------------------

    def record(self, decision: Decision, kind: str, text: str) -> None:
        """Encrypt and queue ``text`` for the decision's audit record (no-op when disabled,
        for anonymous calls, or for completions with ``completions = false``)."""
        if not self.enabled or decision.user_hash is None:
            return
        if kind == "completion" and not self.policy.completions:
            return
        key = self._data_key(decision.user_hash, create=True)
        assert key is not None
        nonce = os.urandom(12)
        ciphertext = AESGCM(key).encrypt(nonce, text.encode("utf-8", "surrogatepass"), _aad(decision.request_id, kind))
        row = (decision.request_id, kind, decision.user_hash, self._clock(), nonce, ciphertext)
        self._audit.capture(row)

    # -- reading and erasing ---------------------------------------------------------------

    async def arecord(self, decision: Decision, kind: str, text: str) -> None:
        """``record`` from async code: a user's first capture reads their key off the loop."""
        if decision.user_hash is not None and not self.has_key(decision.user_hash):
            await asyncio.to_thread(self.record, decision, kind, text)
        else:
            self.record(decision, kind, text)

    def _hashes(self, user_id: str | None) -> list[str | None]:
        """The user's hash under the current key and under previous keys still recognised."""
        if user_id is None:
            return [None]
        return [self._hasher.hash(user_id), *self._hasher.previous_hashes(user_id)]

    def count(self, *, since: float = 0.0, user_id: str | None = None) -> int:
        self._audit.flush()
        return sum(self._store.count_captures(since=since, user_hash=h) for h in self._hashes(user_id))

    def export(self, *, since: float = 0.0, user_id: str | None = None) -> Iterator[CapturedText]:
        """Decrypted captures, oldest first. Rows of users whose key was deleted are skipped."""
        if not self.enabled:
            raise ConfigurationError("capture is not enabled ([capture] enabled = true)")
        self._audit.flush()
        rows = (row for h in self._hashes(user_id) for row in self._store.captures(since=since, user_hash=h))
        for row in rows:
            item = self.open_row(*row)
            if item is not None:
                yield item

    def open_row(
        self, request_id: str, kind: str, owner: str, at: float, nonce: bytes, ciphertext: bytes
    ) -> CapturedText | None:
        """Decrypt one captured row, from the store or from the archive; ``None`` when the
        user's data key is gone (``forget``) or the row was altered or moved."""
        if not self.enabled:
            raise ConfigurationError("capture is not enabled ([capture] enabled = true)")
        key = self._data_key(owner, create=False)
        if key is None:
            return None
        try:
            plain = AESGCM(key).decrypt(nonce, ciphertext, _aad(request_id, kind))
        except InvalidTag:  # tampered with, or moved to another record
            return None
        return CapturedText(request_id, kind, owner, at, plain.decode("utf-8", "surrogatepass"))

    def read(self, request_id: str) -> list[CapturedText]:
        """The decrypted texts captured for one guarded request (for the review console)."""
        self._audit.flush()
        out = []
        for _, kind, owner, at, nonce, ciphertext in self._store.captures_for_request(request_id):
            key = self._data_key(owner, create=False) if self.enabled else None
            try:
                plain = None if key is None else AESGCM(key).decrypt(nonce, ciphertext, _aad(request_id, kind))
            except InvalidTag:
                plain = None
            if plain is not None:
                out.append(CapturedText(request_id, kind, owner, at, plain.decode("utf-8", "surrogatepass")))
        return out

    def forget(self, user_id: str) -> int:
        """Erase a user's captured text: their data key and rows go. Returns rows deleted."""
        self._audit.flush()
        gone = 0
        for user_hash in self._hashes(user_id):  # under previous hash keys too
            assert user_hash is not None
            with self._lock:
                self._keys.pop(user_hash, None)
            gone += self._store.forget_capture_user(user_hash)
        return gone

    def purge(self) -> int:
        """Delete captures older than ``[capture] retention``. Returns rows deleted."""
        self._audit.flush()
        return self._store.purge_captures(before=self._clock() - self.policy.retention)


def _aad(request_id: str, kind: str) -> bytes:
    return f"aupguard-capture|{request_id}|{kind}".encode()

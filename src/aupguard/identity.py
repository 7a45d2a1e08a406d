"""User ids: validated, then hashed with a keyed HMAC-SHA256 that names its key.

A hash reads ``<key id>_<64 hex digits>``. The key id lets keys rotate: the first key of the
key ring hashes, the others are still *recognised* (their hashes are looked up and carried
over to the current key) until the date written beside them, which is the grace period.

Key ring text, in an environment variable or a file (one entry per line or comma; ``#`` starts
a comment)::

    k2:BASE64KEY                 # current key (first entry)
    k1:BASE64KEY:2026-12-31      # previous key, recognised up to and including that day

Raw user ids live only in process memory: they are never stored, logged or returned.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, hmac

from .errors import ConfigurationError, InvalidUserId
from .policy.config import IdentityPolicy

__all__ = [
    "MAX_USER_ID_LENGTH",
    "HashKey",
    "HashedUser",
    "Keyring",
    "UserHasher",
    "generate_key_entry",
    "validate_user_id",
]

MAX_USER_ID_LENGTH = 1024
MIN_KEY_BYTES = 32
_KID = re.compile(r"[A-Za-z0-9]{1,16}")
_CACHE_LIMIT = 65_536


def validate_user_id(user_id: object) -> str:
    """Return ``user_id`` if it is a usable id, else raise :class:`InvalidUserId` that
    describes (never echoes) the value."""
    if not isinstance(user_id, str):
        raise InvalidUserId(f"user id must be a string, got {type(user_id).__name__}")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise InvalidUserId(f"user id is {len(user_id)} characters long; the limit is {MAX_USER_ID_LENGTH}")
    if not user_id.strip():
        raise InvalidUserId("user id must not be empty or blank")
    if "\x00" in user_id:
        raise InvalidUserId("user id must not contain NUL characters")
    try:
        user_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidUserId("user id is not valid Unicode (lone surrogate)") from None
    return user_id


class HashedUser(str):
    """A user known only by the hash aupguard gave them (a gateway key names its user this
    way): passed where a user id goes, it is used as the hash itself, never hashed again."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, repr=False)
class HashKey:
    kid: str
    secret: bytes
    recognised_until: dt.date | None = None  # None: no end (the current key, or no grace limit)

    def __repr__(self) -> str:  # never show the secret
        return f"HashKey(kid={self.kid!r})"

    def digest(self, user_id: str) -> str:
        mac = hmac.HMAC(self.secret, hashes.SHA256())
        mac.update(user_id.encode("utf-8"))
        return f"{self.kid}_{mac.finalize().hex()}"


@dataclass(frozen=True, slots=True)
class Keyring:
    """The current key first, then previous keys still recognised."""

    keys: tuple[HashKey, ...]

    @property
    def current(self) -> HashKey:
        return self.keys[0]

    def recognised(self, today: dt.date) -> tuple[HashKey, ...]:
        return tuple(k for k in self.keys[1:] if k.recognised_until is None or today <= k.recognised_until)

    @classmethod
    def parse(cls, text: str, *, source: str) -> Keyring:
        # '#' is not in either base64 alphabet, so everything after it is a comment
        lines = (line.split("#", 1)[0] for line in text.splitlines())
        entries = [e.strip() for line in lines for e in line.split(",") if e.strip()]
        if not entries:
            raise ConfigurationError(f"hash key ring from {source} is empty; expected 'kid:BASE64KEY'")
        keys: list[HashKey] = []
        for number, entry in enumerate(entries, 1):
            keys.append(_parse_entry(entry, number, source))
        kids = [k.kid for k in keys]
        if len(set(kids)) != len(kids):
            raise ConfigurationError(f"hash key ring from {source} repeats a key id; each key needs its own id")
        return cls(tuple(keys))

    @classmethod
    def from_policy(cls, identity: IdentityPolicy, env: Mapping[str, str] | None = None) -> Keyring:
        """Load the ring from ``identity.hash_key_file`` if set, else from the environment
        variable ``identity.hash_key_env``."""
        env = os.environ if env is None else env
        if identity.hash_key_file:
            path = Path(identity.hash_key_file)
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ConfigurationError(f"hash key file {path} does not exist (identity.hash_key_file)") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigurationError(f"hash key file {path} cannot be read: {exc.__class__.__name__}") from None
            return cls.parse(text, source=f"file {path}")
        text = env.get(identity.hash_key_env, "")
        if not text.strip():
            raise ConfigurationError(
                f"no hash key: set the environment variable {identity.hash_key_env} to 'kid:BASE64KEY' "
                "(generate one with `aupguard hash-key generate`) or set identity.hash_key_file"
            )
        return cls.parse(text, source=f"environment variable {identity.hash_key_env}")


def _parse_entry(entry: str, number: int, source: str) -> HashKey:
    where = f"entry {number} of the hash key ring from {source}"
    parts = entry.split(":")
    if len(parts) not in (2, 3):
        raise ConfigurationError(f"{where} is not 'kid:BASE64KEY' or 'kid:BASE64KEY:YYYY-MM-DD'")
    kid, encoded = parts[0], parts[1]
    if not _KID.fullmatch(kid):
        raise ConfigurationError(f"{where}: key id must be 1-16 letters or digits")
    try:
        secret = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        try:
            secret = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(f"{where}: key is not valid base64") from None
    if len(secret) < MIN_KEY_BYTES:
        raise ConfigurationError(f"{where}: key has {len(secret)} bytes; at least {MIN_KEY_BYTES} are needed")
    until = None
    if len(parts) == 3:
        if number == 1:
            raise ConfigurationError(f"{where}: the current (first) key cannot carry an end date")
        try:
            until = dt.date.fromisoformat(parts[2])
        except ValueError:
            raise ConfigurationError(f"{where}: end date must be YYYY-MM-DD") from None
    return HashKey(kid, secret, until)


def generate_key_entry(kid: str = "k1") -> str:
    """A fresh key ring entry ``kid:BASE64KEY`` with 32 random bytes."""
    if not _KID.fullmatch(kid):
        raise ConfigurationError("key id must be 1-16 letters or digits")
    return f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip('=')}"


class UserHasher:
    """Hashes user ids with the key ring. Results are memoised in process memory."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._current = keyring.current
        self._cache: dict[str, str] = {}

    def hash(self, user_id: object) -> str:
        cached = self._cache.get(user_id) if type(user_id) is str else None
        if cached is not None:
            return cached
        if type(user_id) is HashedUser:
            return str(user_id)
        valid = validate_user_id(user_id)
        digest = self._current.digest(valid)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[valid] = digest
        return digest

    def previous_hashes(self, user_id: object, today: dt.date | None = None) -> tuple[str, ...]:
        """Hashes of ``user_id`` under previous keys still inside their grace period."""
        if type(user_id) is HashedUser:  # no raw id to hash again: nothing to carry over
            return ()
        valid = validate_user_id(user_id)
        day = today or dt.datetime.now(dt.UTC).date()
        return tuple(k.digest(valid) for k in self.keyring.recognised(day))

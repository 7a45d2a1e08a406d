"""Reviewer accounts: names and scrypt-hashed passwords (a random salt per account).

A wrong name costs as much time as a wrong password, so a login does not reveal which
names exist. Passwords are never stored, logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import AupguardError

if TYPE_CHECKING:
    from ..stores import SQLStore
    from ..stores.review_records import ReviewerAccount

__all__ = ["MIN_PASSWORD", "ReviewerAccounts", "hash_password", "verify_password"]

MIN_PASSWORD = 12
SCRYPT_PARAMS = "n=16384,r=8,p=1"  # OWASP's scrypt floor (N=2^14..2^17, r=8, p=1); ~16 MiB per hash
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def _scrypt(password: str, salt: bytes, params: str) -> bytes:
    values = dict(part.split("=") for part in params.split(","))
    n, r, p = int(values["n"]), int(values["r"]), int(values["p"])
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=128 * r * (n + p + 2), dklen=32)


def hash_password(password: str) -> tuple[bytes, bytes, str]:
    """(salt, hash, params) for a new password."""
    salt = os.urandom(16)
    return salt, _scrypt(password, salt, SCRYPT_PARAMS), SCRYPT_PARAMS


def verify_password(account: ReviewerAccount, password: str) -> bool:
    return hmac.compare_digest(_scrypt(password, account.salt, account.params), account.password_hash)


_DUMMY_SALT = os.urandom(16)


class ReviewerAccounts:
    def __init__(self, store: SQLStore, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    @staticmethod
    def check_name(name: str) -> str:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise AupguardError("a reviewer name is 1-64 letters, digits or . _ @ - (starting with a letter or digit)")
        return name

    def add(self, name: str, password: str, *, replace: bool = False) -> None:
        """Create an account (or, with ``replace``, set a new password and end its sessions)."""
        from ..stores.review_records import ReviewerAccount

        self.check_name(name)
        if len(password) < MIN_PASSWORD:
            raise AupguardError(f"a reviewer password needs at least {MIN_PASSWORD} characters")
        salt, digest, params = hash_password(password)
        if not self._store.put_reviewer(ReviewerAccount(name, salt, digest, params, self._clock()), replace=replace):
            raise AupguardError(f"a reviewer named {name!r} exists already")

    def verify(self, name: str, password: str) -> bool:
        account = self._store.reviewer(name) if _NAME.fullmatch(name or "") else None
        if account is None:
            _scrypt(password, _DUMMY_SALT, SCRYPT_PARAMS)  # the same work as a real check
            return False
        return verify_password(account, password)

    def names(self) -> list[str]:
        return [a.name for a in self._store.reviewers()]

    def remove(self, name: str) -> bool:
        return self._store.remove_reviewer(name)

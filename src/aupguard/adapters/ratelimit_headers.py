"""The rate-limit headers of a decision, as draft-ietf-httpapi-ratelimit-headers-10 writes them.

Two structured fields (RFC 8941 lists of one item each)::

    RateLimit-Policy: "default";q=60;w=60;pk=:q83vEjRWeJA=:
    RateLimit: "default";r=42;t=17;pk=:q83vEjRWeJA=:

- the policy is named after the tier the call was counted in: ``"default"`` (``[limits]
  default``) or ``"throttled"`` (``[limits] throttled``, a user on the ladder's throttle rung);
- ``q`` is the tier's quota in requests, ``w`` its window in seconds (known from the policy;
  left out when the caller did not pass the policy: ``w`` is optional in the draft);
- ``r`` the requests left, ``t`` the seconds until the window frees a slot;
- ``pk``, the partition key, is a short form of the user's keyed hash (its first 8 bytes):
  the quota is per user, and the client learns which partition it is in without anything
  that names the user. An anonymous call is partitioned by its client key's hash (what it
  was counted under), the same way.

``[limits] legacy_headers = true`` (the default for this release) also sends the trio of
earlier drafts, ``RateLimit-Limit`` / ``RateLimit-Remaining`` / ``RateLimit-Reset``.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..policy.config import LimitsPolicy

__all__ = ["partition_key", "rate_limit_headers"]

_PK_BYTES = 8
_WINDOWS: dict[str, int] = {}  # a rate such as "60/minute" -> its window in seconds
_KEYS: dict[str, str] = {}  # user hash -> its pk ("" when it has none): computed once per user


def partition_key(user_hash: str | None) -> str | None:
    """The ``pk`` parameter for a user hash (``kid_hexdigest``): an RFC 8941 byte sequence of
    the digest's first 8 bytes, or None (no hash, or not a hex digest)."""
    if not user_hash:
        return None
    known = _KEYS.get(user_hash)
    if known is None:
        known = _KEYS[user_hash] = _partition_key(user_hash) or ""
        if len(_KEYS) > 65_536:  # bounded
            _KEYS.clear()
    return known or None


def _partition_key(user_hash: str) -> str | None:
    digest = user_hash.rpartition("_")[2]
    try:
        raw = bytes.fromhex(digest[: _PK_BYTES * 2])
    except ValueError:
        return None
    if len(raw) < _PK_BYTES:
        return None
    return ":" + base64.b64encode(raw).decode("ascii") + ":"


def _window(rate: str) -> int:
    seconds = _WINDOWS.get(rate)
    if seconds is None:
        import limits

        seconds = int(limits.parse(rate).get_expiry())
        if len(_WINDOWS) < 64:
            _WINDOWS[rate] = seconds
    return seconds


def rate_limit_headers(
    out: dict[str, str],
    *,
    limit: int,
    remaining: int,
    reset_after: int,
    throttled: bool,
    user_hash: str | None,
    policy: LimitsPolicy | None,
) -> None:
    """Add the rate-limit headers of one counted call to ``out``."""
    name = '"throttled"' if throttled else '"default"'
    pk = partition_key(user_hash)
    key = "" if pk is None else ";pk=" + pk
    window = ""
    if policy is not None:
        window = f";w={_window(policy.throttled if throttled else policy.default)}"
    out["RateLimit-Policy"] = f"{name};q={limit}{window}{key}"
    out["RateLimit"] = f"{name};r={remaining};t={reset_after}{key}"
    if policy is None or policy.legacy_headers:
        out["RateLimit-Limit"] = str(limit)
        out["RateLimit-Remaining"] = str(remaining)
        out["RateLimit-Reset"] = str(reset_after)

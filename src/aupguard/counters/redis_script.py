"""The one round trip of a guarded request on Redis (pure): the Lua script that checks the
user's state version and hits the moving window over ``limits``' own key layout, the keys
it reads, and how its reply becomes a :class:`~aupguard.counters.base.Hit` (or a newer
version). :mod:`aupguard.counters.redis` runs it, with the fail mode of ``[storage]``."""

from __future__ import annotations

import time
from typing import Any

from .base import Hit

__all__ = ["HIT_MOVING_WINDOW", "VERSION_TTL", "hit_from_reply", "version_key"]

#: KEYS[1] the window (a list of timestamps, newest first, as ``limits`` keeps it), KEYS[2] the
#: user's state version; ARGV now, limit, expiry, the version the caller's cached state has
#: ("*": any). A stale version returns {-1, 0, 0, version} and counts nothing; otherwise
#: {allowed, entries in the window, oldest entry, version}.
HIT_MOVING_WINDOW = """
local version = redis.call('get', KEYS[2]) or '0'
if ARGV[4] ~= '*' and ARGV[4] ~= version then
    return {-1, 0, '0', version}
end
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local expiry = tonumber(ARGV[3])
local allowed = 0
local entry = redis.call('lindex', KEYS[1], limit - 1)
if not (entry and tonumber(entry) >= now - expiry) then
    redis.call('lpush', KEYS[1], ARGV[1])
    redis.call('ltrim', KEYS[1], 0, limit - 1)
    redis.call('expire', KEYS[1], expiry)
    allowed = 1
end
local low, high, found = 0, redis.call('llen', KEYS[1]) - 1, -1
local target = now - expiry
while low <= high do
    local mid = math.floor((low + high) / 2)
    local value = tonumber(redis.call('lindex', KEYS[1], mid))
    if value and value >= target then
        found = mid
        low = mid + 1
    else
        high = mid - 1
    end
end
if found < 0 then
    return {allowed, 0, ARGV[1], version}
end
return {allowed, found + 1, redis.call('lindex', KEYS[1], found), version}
"""
#: Versions live a day past the last change; a missing one reads as "0" (a reload at worst).
VERSION_TTL = 86_400


def version_key(key: str) -> str:
    """The key of the user's state version (``{key}``: a Redis Cluster hash tag, so the
    window and the version share a slot)."""
    return f"aupguard:{{{key}}}:version"


def hit_from_reply(reply: Any, amount: int, expiry: int) -> Hit | str:
    """The script's reply as a hit, or the user's newer version (nothing was counted)."""
    allowed, count, oldest, version = reply
    if allowed == -1:
        return version.decode() if isinstance(version, bytes) else str(version)
    reset_after = max(0.0, float(oldest) + expiry - time.time())
    return Hit(bool(allowed), amount, max(0, amount - int(count)), reset_after)

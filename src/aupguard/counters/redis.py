"""Counters in Redis (``redis://``, ``rediss://``, ``redis+unix://``, ``redis+sentinel://``,
``redis+cluster://``) through ``limits``' Redis storage, so every worker on every host shares
each user's window.

A guarded request costs one round trip: the moving window's acquire and its statistics run
in one Lua script over ``limits``' own key layout (``limits`` itself makes two calls, an
acquire and a read). Async callers use ``redis.asyncio`` with the same script, one client per
event loop.

When Redis cannot be reached, ``[storage] fail`` decides: ``open`` serves from counters in
this process's memory, logs once per outage and tries Redis again with backoff (0.5 s doubling
to 30 s); ``closed`` raises :class:`~aupguard.errors.CountersUnavailable`, which the engine
answers with 503 ``safeguards_unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from typing import Any, TypeVar

from limits.storage import storage_from_string

from ..errors import ConfigurationError, CountersUnavailable
from ..ladder import Level
from ..policy.config import LimitsPolicy, StoragePolicy
from .base import ANY_VERSION, Counters, Hit, SweptMemoryStorage
from .redis_script import HIT_MOVING_WINDOW, VERSION_TTL, hit_from_reply, version_key

__all__ = ["ANY_VERSION", "RedisCounters"]

log = logging.getLogger("aupguard.counters")
T = TypeVar("T")

SCHEMES = ("redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster")
_FIRST_BACKOFF, _MAX_BACKOFF = 0.5, 30.0


class RedisCounters(Counters):
    """:class:`~aupguard.counters.base.Counters` on Redis, with the fail mode of ``[storage]``."""

    def __init__(self, uri: str, limits_policy: LimitsPolicy, storage_policy: StoragePolicy) -> None:
        try:
            import redis
        except ImportError:  # pragma: no cover - the extra is part of the dev install
            raise ConfigurationError("counters redis:// need the redis client; install aupguard[redis]") from None
        self._redis = redis
        self._uri = uri
        self._timeout = storage_policy.timeout
        self._fail_closed = storage_policy.fail == "closed"
        options = {"socket_timeout": self._timeout, "socket_connect_timeout": self._timeout}
        if uri.startswith("redis+sentinel"):
            options = {"socket_timeout": self._timeout}
        storage: Any = storage_from_string(uri, **options)
        super().__init__(storage, limits_policy)
        self._client: Any = storage.get_connection()
        self._script = self._client.register_script(HIT_MOVING_WINDOW)
        self._prefix = f"{storage.key_prefix}:"
        self._fallback = Counters(SweptMemoryStorage(), limits_policy)
        self.versioned = self._direct  # the other strategies go through limits' own calls
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._down_until = 0.0
        self._backoff = _FIRST_BACKOFF
        self._lock = threading.Lock()
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = weakref.WeakKeyDictionary()
        self.outages = 0  # times Redis was found down
        self.errors = 0  # operations that failed

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    # -- the hot path --------------------------------------------------------------------

    def hit(self, key: str, level: Level | None) -> Hit:
        checked = self.hit_checked(key, level, ANY_VERSION)
        assert isinstance(checked, Hit)
        return checked

    def hit_checked(self, key: str, level: Level | None, version: str) -> Hit | str:
        """One round trip: the user's state version and, if it is ``version`` (or
        ``version`` is ``ANY_VERSION``), the rate-limit hit. A different version comes back
        as a string and nothing is counted: the caller's state is stale. Redis down: the
        memory fallback (``open``) or :class:`CountersUnavailable` (``closed``)."""
        if not self._direct:
            hit: Hit = self._guarded(lambda: super(RedisCounters, self).hit(key, level), key, level)
            return hit
        item, keys = self._item_keys(key, level)
        if not self.available:
            return self._unavailable(key, level)
        try:
            reply = self._script(keys=keys, args=[time.time(), item.amount, item.get_expiry(), version])
        except self._errors as exc:
            return self._failed(exc, key, level)
        self._recovered()
        return hit_from_reply(reply, item.amount, item.get_expiry())

    async def ahit(self, key: str, level: Level | None) -> Hit:
        checked = await self.ahit_checked(key, level, ANY_VERSION)
        assert isinstance(checked, Hit)
        return checked

    async def ahit_checked(self, key: str, level: Level | None, version: str) -> Hit | str:
        """``hit_checked`` without blocking the event loop."""
        if not self._direct or self._uri.startswith(("redis+sentinel", "redis+cluster")):
            return await asyncio.to_thread(self.hit_checked, key, level, version)
        item, keys = self._item_keys(key, level)
        if not self.available:
            return self._unavailable(key, level)
        script = self._async_script()
        try:
            reply = await script(keys=keys, args=[time.time(), item.amount, item.get_expiry(), version])
        except self._errors as exc:
            return self._failed(exc, key, level)
        self._recovered()
        return hit_from_reply(reply, item.amount, item.get_expiry())

    # -- the user's state version -----------------------------------------------------------

    def version(self, key: str) -> str:
        """The user's state version now (``ANY_VERSION`` when Redis is down: trust the cache)."""
        if not self.available:
            return ANY_VERSION
        try:
            value = self._client.get(version_key(key))
        except self._errors as exc:
            self._note_failure(exc)
            return ANY_VERSION
        return "0" if value is None else value.decode()

    def bump(self, key: str) -> None:
        """Mark the user's state changed (after the store committed the change): every
        worker's next guarded call for them reloads it."""
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.incr(version_key(key))
            pipe.expire(version_key(key), VERSION_TTL)
            pipe.execute()
        except self._errors as exc:  # the change feed still carries it, within sync_interval
            self._note_failure(exc)

    def tokens_left(self, key: str) -> Hit | None:
        left: Hit | None = self._guarded(lambda: super(RedisCounters, self).tokens_left(key), key, None, tokens=True)
        return left

    def spend_tokens(self, key: str, tokens: int) -> None:
        self._guarded(lambda: super(RedisCounters, self).spend_tokens(key, tokens), key, None, spend=tokens)

    async def atokens_left(self, key: str) -> Hit | None:
        return await asyncio.to_thread(self.tokens_left, key)

    async def aspend_tokens(self, key: str, tokens: int) -> None:
        await asyncio.to_thread(self.spend_tokens, key, tokens)

    # -- helpers -------------------------------------------------------------------------

    def _item_keys(self, key: str, level: Level | None) -> tuple[Any, list[str]]:
        throttled = level is Level.THROTTLED
        item = self._tiers[throttled]
        limit_key = self._keys.get((throttled, key))
        if limit_key is None:
            if len(self._keys) >= 65_536:
                self._keys.clear()
            # {user hash}: a Redis Cluster hash tag, so the window and the version share a slot
            limit_key = self._keys[(throttled, key)] = self._prefix + item.key_for("{" + key + "}")
        return item, [limit_key, version_key(key)]

    def _async_client(self) -> tuple[Any, Any]:
        """This event loop's ``redis.asyncio`` client and its registered script."""
        loop = asyncio.get_running_loop()
        pair = self._async.get(loop)
        if pair is None:
            import redis.asyncio

            client = redis.asyncio.from_url(
                self._uri.replace("redis+unix://", "unix://"),
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
            )
            pair = self._async[loop] = (client, client.register_script(HIT_MOVING_WINDOW))
        return pair

    def _async_script(self) -> Any:
        return self._async_client()[1]

    async def aversion(self, key: str) -> str:
        """``version`` without blocking the event loop."""
        if self._uri.startswith(("redis+sentinel", "redis+cluster")):
            return await asyncio.to_thread(self.version, key)
        if not self.available:
            return ANY_VERSION
        try:
            value = await self._async_client()[0].get(version_key(key))
        except self._errors as exc:
            self._note_failure(exc)
            return ANY_VERSION
        return "0" if value is None else value.decode()

    def _guarded(self, call: Any, key: str, level: Level | None, *, tokens: bool = False, spend: int = 0) -> Any:
        """A ``limits`` call on Redis, or its memory fallback when Redis is down."""
        fallback: Any = (
            (lambda: self._fallback.spend_tokens(key, spend))
            if spend
            else (lambda: self._fallback.tokens_left(key))
            if tokens
            else (lambda: self._fallback.hit(key, level))
        )
        if not self.available:
            if self._fail_closed:
                raise CountersUnavailable("the counter store is unavailable")
            return fallback()
        try:
            result = call()
        except self._errors as exc:
            self._note_failure(exc)
            if self._fail_closed:
                raise CountersUnavailable("the counter store is unavailable") from None
            return fallback()
        self._recovered()
        return result

    def _unavailable(self, key: str, level: Level | None) -> Hit:
        if self._fail_closed:
            raise CountersUnavailable("the counter store is unavailable")
        return self._fallback.hit(key, level)

    def _failed(self, exc: Exception, key: str, level: Level | None) -> Hit:
        self._note_failure(exc)
        return self._unavailable(key, level)

    def _note_failure(self, exc: Exception) -> None:
        with self._lock:
            self.errors += 1
            if self.available:  # the first failure of an outage (or of a re-check)
                if self._backoff == _FIRST_BACKOFF:
                    self.outages += 1
                    log.error(
                        "counter store unavailable (%s); %s",
                        exc.__class__.__name__,
                        "answering 503" if self._fail_closed else "serving from memory",
                    )
                self._down_until = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, _MAX_BACKOFF)

    def _recovered(self) -> None:
        if self._backoff != _FIRST_BACKOFF:
            with self._lock:
                if self._backoff != _FIRST_BACKOFF:
                    log.warning("counter store reachable again")
                    self._backoff = _FIRST_BACKOFF

    def after_fork(self) -> None:
        """In a forked child: the parent's connections must not be shared."""
        self._client.connection_pool.reset()
        self._async = weakref.WeakKeyDictionary()

    def reset(self) -> None:
        super().reset()
        self._fallback.reset()

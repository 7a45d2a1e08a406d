"""Counters in Redis: limits shared by every engine, one round trip per guarded call, the
async path, and the fail modes when Redis goes away (a redis-server the test kills)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis

from aupguard import Level

from .conftest import MakeGuard
from .fakes.servers import RedisServer


def test_engines_share_one_limit(make_guard: MakeGuard, redis_url: str) -> None:
    policy = {"limits": {"default": "10/minute"}, "storage": {"counters": redis_url}}
    guards = [make_guard(policy) for _ in range(3)]
    allowed = [g.check("shared").allowed for _ in range(10) for g in guards]
    assert allowed.count(True) == 10
    refused = guards[0].check("shared")
    assert refused.status == 429 and refused.remaining == 0 and refused.retry_after is not None


def test_a_guarded_call_costs_one_redis_round_trip(make_guard: MakeGuard, redis_url: str) -> None:
    guard = make_guard({"storage": {"counters": redis_url}, "limits": {"default": "1000/minute"}})
    guard.check("rt")  # loads the user and the script
    client = redis.Redis.from_url(redis_url)

    def calls() -> dict[str, int]:
        return {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}

    before = calls()
    for _ in range(100):
        assert guard.check("rt").allowed
    delta = {k: v - before.get(k, 0) for k, v in calls().items() if v != before.get(k, 0)}
    # commandstats also counts the commands a script runs inside Redis; round trips are the rest
    inside_the_script = {"lindex", "lpush", "ltrim", "expire", "llen"}
    round_trips = {k: v for k, v in delta.items() if k not in inside_the_script | {"info"}}
    assert round_trips == {"evalsha": 100}


def test_async_and_sync_calls_count_against_the_same_window(make_guard: MakeGuard, redis_url: str) -> None:
    guard = make_guard({"storage": {"counters": redis_url}, "limits": {"default": "6/minute"}})

    async def run() -> list[bool]:
        return [(await guard.acheck("mixed")).allowed for _ in range(4)]

    assert asyncio.run(run()) == [True] * 4
    assert [guard.check("mixed").allowed for _ in range(3)] == [True, True, False]


def test_throttled_users_get_the_throttled_tier(make_guard: MakeGuard, redis_url: str) -> None:
    policy = {
        "storage": {"counters": redis_url},
        "limits": {"default": "50/minute", "throttled": "2/minute"},
        "ladder": {"warn": 1, "throttle": 2, "suspend": 9},
    }
    guard = make_guard(policy)
    guard.strike("slow", reason="a")
    guard.strike("slow", reason="b")
    results = [guard.check("slow") for _ in range(3)]
    assert [d.allowed for d in results] == [True, True, False]
    assert results[0].level is Level.THROTTLED and results[0].limit == 2


def test_token_budget_lives_in_redis(make_guard: MakeGuard, redis_url: str) -> None:
    policy = {"storage": {"counters": redis_url}, "limits": {"tokens": "100/hour"}}
    first, second = make_guard(policy), make_guard(policy)
    decision = first.check("spender")
    first.spend_tokens(decision, 150)
    refused = second.check("spender")
    assert refused.error == "rate_limited" and "token budget" in refused.message


def test_fail_open_serves_from_memory_and_returns_to_redis(
    make_guard: MakeGuard, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    guard = make_guard({"storage": {"counters": own_redis.url, "fail": "open"}, "limits": {"default": "5/minute"}})
    assert guard.check("u").allowed
    own_redis.kill()
    with caplog.at_level(logging.ERROR, logger="aupguard.counters"):
        during = [guard.check("u") for _ in range(6)]
    assert [d.allowed for d in during] == [True] * 5 + [False]  # the memory window, same limit
    assert sum("counter store unavailable" in r.message for r in caplog.records) == 1  # once per outage
    own_redis.start()
    deadline = time.monotonic() + 5
    client = redis.Redis.from_url(own_redis.url)
    while not client.keys("LIMITS:*"):  # re-checked with backoff, then counted in Redis again
        assert time.monotonic() < deadline, "never went back to Redis"
        guard.check("back")
        time.sleep(0.1)
    assert guard.counters.outages == 1  # type: ignore[attr-defined]


def test_fail_closed_answers_503_until_redis_is_back(make_guard: MakeGuard, own_redis: RedisServer) -> None:
    guard = make_guard({"storage": {"counters": own_redis.url, "fail": "closed"}})
    assert guard.check("u").allowed
    own_redis.kill()
    refused = guard.check("u")
    assert (refused.status, refused.error, refused.retry_after) == (503, "safeguards_unavailable", 1)
    assert asyncio.run(guard.acheck("u")).status == 503
    assert guard.audit.find(request_id=refused.request_id)[0].outcome == "safeguards_unavailable"
    own_redis.start()
    deadline = time.monotonic() + 5
    while not guard.check("u").allowed:
        assert time.monotonic() < deadline
        time.sleep(0.1)

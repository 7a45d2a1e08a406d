"""Counters in Redis: limits shared by every engine, one round trip per guarded call, the
async path, and the fail modes when Redis goes away (a redis-server the test kills)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from aupguard import Level
from aupguard_asgi import SafeguardsMiddleware
from tests.conftest import MakeGuard
from tests.support.servers import RedisServer


def test_engines_share_one_limit(make_guard: MakeGuard, redis_url: str) -> None:
    policy = {"limits": {"default": "10/minute"}, "storage": {"counters": redis_url}}
    guards = [make_guard(policy) for _ in range(3)]
    allowed = [g.check("shared").allowed for _ in range(10) for g in guards]
    assert allowed.count(True) == 10
    refused = guards[0].check("shared")
    assert refused.status == 429 and refused.remaining == 0 and refused.retry_after is not None


def _client_commands(url: str, work: Callable[[], None]) -> list[str]:
    """The commands clients sent while ``work`` ran (MONITOR marks those a Lua script runs
    inside Redis as ``lua``: they are not round trips)."""
    sent: list[str] = []
    ready, stop = threading.Event(), threading.Event()
    marker = redis.Redis.from_url(url)
    marker.ping()  # connected (and its set-up done) before the watch starts

    def watch() -> None:
        with redis.Redis.from_url(url).monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                name = command["command"].split()[0].lower()
                if stop.is_set() and name == "ping":  # the marker sent after the work: all read
                    return
                if command.get("client_type") != "lua":
                    sent.append(name)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(5)
    work()
    stop.set()
    marker.ping()  # one more line, so the watcher has read everything before it
    thread.join(5)
    return [c for c in sent if c != "ping"]


def test_a_guarded_call_costs_one_redis_round_trip(make_guard: MakeGuard, redis_url: str) -> None:
    guard = make_guard({"storage": {"counters": redis_url}, "limits": {"default": "1000/minute"}})
    guard.check("rt")  # loads the user and the script

    def work() -> None:
        for _ in range(100):
            assert guard.check("rt").allowed

    assert _client_commands(redis_url, work) == ["evalsha"] * 100

    async def awork() -> None:
        for _ in range(50):
            assert (await guard.acheck("rt")).allowed

    with asyncio.Runner() as runner:  # one event loop, as a server has
        runner.run(guard.acheck("rt"))  # that loop's client connects and loads the script
        assert _client_commands(redis_url, lambda: runner.run(awork())) == ["evalsha"] * 50


def test_a_change_made_by_another_engine_refuses_the_very_next_call(make_guard: MakeGuard, redis_url: str) -> None:
    policy = {"storage": {"counters": redis_url, "sync_interval": "1h"}}  # no help from the change feed
    serving, operator = make_guard(policy), make_guard(policy)
    assert serving.check("next").allowed and asyncio.run(serving.acheck("next")).allowed
    operator.suspend("next", reason="abuse")
    assert serving.check("next").error == "user_suspended"
    assert asyncio.run(serving.acheck("next")).error == "user_suspended"
    operator.reinstate("next")
    assert serving.check("next").allowed  # the suspended user's version read sees it at once
    operator.strike("next", reason="one")
    decision = serving.check("next")
    assert decision.allowed and decision.warning is not None  # warned now: the strike is seen


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


def _app(guard: Any) -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/chat", chat, methods=["POST"])])
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user")
    return app


def test_fail_closed_answers_503_until_redis_is_back(make_guard: MakeGuard, own_redis: RedisServer) -> None:
    guard = make_guard({"storage": {"counters": own_redis.url, "fail": "closed"}})
    assert guard.check("u").allowed
    own_redis.kill()
    refused = guard.check("u")
    assert (refused.status, refused.error, refused.retry_after) == (503, "safeguards_unavailable", 1)
    assert asyncio.run(guard.acheck("u")).status == 503
    assert guard.audit.find(request_id=refused.request_id)[0].outcome == "safeguards_unavailable"
    with TestClient(_app(guard)) as client:  # what an HTTP client of the ASGI middleware gets
        response = client.post("/chat", headers={"x-user": "u"}, json={"prompt": "hi"})
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "safeguards_unavailable"
    own_redis.start()
    deadline = time.monotonic() + 5
    while not guard.check("u").allowed:
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.mark.parametrize("fail", ["open", "closed"])
def test_redis_killed_mid_load_obeys_the_fail_mode_and_loses_no_record(
    make_guard: MakeGuard, own_redis: RedisServer, fail: str
) -> None:
    guard = make_guard({"storage": {"counters": own_redis.url, "fail": fail, "timeout": "500ms"},
                        "limits": {"default": "100000/minute"}})  # fmt: skip
    made: list[tuple[str, int]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def load(user: str) -> None:
        try:
            while not stop.is_set() and len(made) < 50_000:
                decision = (
                    guard.check(user) if user.endswith("sync") else asyncio.run(guard.acheck(user))
                )  # fmt: skip
                made.append((decision.request_id, decision.status))
        except BaseException as exc:  # surfaced below: a guarded call must never raise
            errors.append(exc)

    loaders = [threading.Thread(target=load, args=(u,)) for u in ("a-sync", "b-sync", "c-async")]
    for t in loaders:
        t.start()
    time.sleep(0.3)
    own_redis.kill()
    time.sleep(0.5)
    during = len(made)
    own_redis.start()
    time.sleep(1.5)  # past the first re-check
    stop.set()
    for t in loaders:
        t.join(30)
    assert errors == []
    statuses = {status for _, status in made}
    assert statuses <= ({200} if fail == "open" else {200, 503})
    if fail == "closed":
        assert 503 in statuses  # the outage was seen and answered as the policy says
    assert len(made) > during  # served on after the restart
    assert made[-1][1] == 200
    guard.close()
    from aupguard import Policy, Safeguards

    with Safeguards(Policy(), store=guard.store.uri, keyring=guard.hasher.keyring) as reader:
        assert reader.store.count_decisions() == len(made)  # one record per call, outage or not

"""The guarded call is written once: the same sequence of calls leaves the same decisions and
the same counts, sync or async, memory or Redis counters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from aupguard import Decision, Keyring, Safeguards, generate_key_entry
from tests.conftest import MakeGuard

#: What a decision says to its caller, without the ids (new per call).
Seen = tuple[bool, int, str | None, int | None, int | None]

POLICY: dict[str, Any] = {
    "limits": {"default": "10/minute", "throttled": "4/minute", "tokens": "100/hour"},
    "ladder": {"warn": 1, "throttle": 2, "suspend": 4},
}


def _guard(make_guard: MakeGuard, policy: dict[str, Any]) -> Safeguards:
    """An engine with a key of its own: its users' Redis keys are nobody else's."""
    return make_guard(policy, store="memory://", ring=Keyring.parse(generate_key_entry("t1"), source="test"))


def _seen(decision: Decision) -> Seen:
    return (decision.allowed, decision.status, decision.error, decision.limit, decision.remaining)


def _slots_left(guard: Safeguards, user_id: str, level: Any = None) -> int:
    """The request slots left in the user's window, read from the counters themselves."""
    counters = guard.counters
    item = counters._tiers[False]
    key = guard.hash_user(user_id)
    if getattr(counters, "_prefix", None) is not None:  # Redis: limits' key layout with the hash tag
        stats = counters._limiter.get_window_stats(item, "{" + key + "}")
    else:
        stats = counters._limiter.get_window_stats(item, key)
    return int(stats.remaining)


Call = Callable[[Safeguards, str], Decision]


def _scenario(guard: Safeguards, check: Call) -> tuple[list[Seen], list[int]]:
    """Budget refusals, a strike that throttles, a suspension, a reinstatement, the limit."""
    seen: list[Seen] = []
    first = check(guard, "spender")
    seen.append(_seen(first))
    guard.spend_tokens(first, 150)  # the budget is spent: the next calls are refused for it
    seen.extend(_seen(check(guard, "spender")) for _ in range(3))
    left = [_slots_left(guard, "spender")]
    for _ in range(2):
        guard.strike("striker", category="test", reason="test")
    seen.extend(_seen(check(guard, "striker")) for _ in range(6))  # the throttled tier: 4/minute
    guard.suspend("suspended", reason="test")
    seen.append(_seen(check(guard, "suspended")))
    guard.reinstate("suspended", reason="test")
    seen.append(_seen(check(guard, "suspended")))
    seen.extend(_seen(check(guard, "plain")) for _ in range(12))
    left.append(_slots_left(guard, "plain"))
    return seen, left


def _sync(guard: Safeguards, user: str) -> Decision:
    return guard.check(user)


def _async(guard: Safeguards, user: str) -> Decision:
    return asyncio.run(guard.acheck(user))


@pytest.mark.parametrize("counters", ["memory", "redis"])
def test_the_same_calls_leave_the_same_counts_sync_async_memory_and_redis(
    make_guard: MakeGuard, redis_url: str, counters: str
) -> None:
    results = []
    for check in (_sync, _async):
        policy = dict(POLICY)
        if counters == "redis":
            policy["storage"] = {"counters": redis_url}
        guard = _guard(make_guard, policy)
        results.append(_scenario(guard, check))
    (sync_seen, sync_left), (async_seen, async_left) = results
    assert sync_seen == async_seen
    assert sync_left == async_left
    # a spent token budget counts no request slot: one call was counted, three refused for the budget
    assert sync_left[0] == 9
    assert [s[2] for s in sync_seen[1:4]] == ["rate_limited"] * 3
    assert [s[0] for s in sync_seen[4:10]] == [True] * 4 + [False] * 2  # the throttled tier
    assert sync_seen[10][2] == "user_suspended" and sync_seen[11][0]
    assert [s[0] for s in sync_seen[12:]] == [True] * 10 + [False] * 2
    assert sync_left[1] == 0


def test_memory_and_redis_agree(make_guard: MakeGuard, redis_url: str) -> None:
    memory = _scenario(_guard(make_guard, POLICY), _sync)
    redis = _scenario(_guard(make_guard, {**POLICY, "storage": {"counters": redis_url}}), _async)
    assert memory == redis


def test_a_budget_refusal_counts_no_request_slot_in_async_code_either(make_guard: MakeGuard) -> None:
    """The copy of the guarded call in ``acheck`` used to hit the rate limit before looking at
    the budget: three budget refusals cost three request slots there and none in ``check``."""
    guard = _guard(make_guard, POLICY)
    first = asyncio.run(guard.acheck("u"))
    guard.spend_tokens(first, 500)
    for _ in range(3):
        assert asyncio.run(guard.acheck("u")).error == "rate_limited"
    assert _slots_left(guard, "u") == 9

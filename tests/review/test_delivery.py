"""Webhook notifications against a local receiver: signed and verifiable bodies with a Slack
``text``, flags batched, nothing lost while the receiver is down or across a restart of the
engine, nothing on the request path; and the ``[notify]`` policy's validation."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aupguard import Policy, Safeguards
from aupguard.errors import PolicyError
from aupguard.review.notify import SIGNATURE_HEADER, sign, verify
from tests.conftest import DAY, Clock, MakeGuard
from tests.support.webhook_receiver import Receiver

SECRET = "whsec-test-0123456789abcdef"
RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]
EVENTS = ["user_suspended", "user_reinstated", "item_flagged", "appeal_received", "queue_sla_breached"]


def notify(*receivers: Receiver, **keys: Any) -> dict[str, Any]:
    hooks = [{"url": r.url, "events": EVENTS, "secret": SECRET} for r in receivers]
    return {"moderation": {"rules": RULES}, "limits": {"default": "1000/minute"},
            "notify": {"webhooks": hooks, "poll": "100ms", "retry_min": "200ms", "batch_window": "1s",
                       "timeout": "2s", **keys}}  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.release.set()
    r.stop()


def test_events_arrive_signed_with_a_slack_text_and_flags_batched(make_guard: MakeGuard, receiver: Receiver) -> None:
    guard = make_guard(notify(receiver))
    for _ in range(3):
        assert not guard.check("flagger", prompt="explain nerve agent synthesis").allowed
    guard.suspend("u1", reason="abuse report")
    guard.reinstate("u1", reason="resolved")
    receiver.wait_for(5)
    kinds = Counter(body["type"] for body in receiver.bodies())
    assert kinds == {"item_flagged": 1, "user_suspended": 1, "user_reinstated": 1}  # three flags, one delivery
    for headers, raw in receiver.deliveries:
        assert verify(SECRET, raw, headers[SIGNATURE_HEADER.lower()])
        assert not verify("another-secret-0123456789", raw, headers[SIGNATURE_HEADER.lower()])
        assert not verify(SECRET, raw.replace(b"u", b"v", 1), headers[SIGNATURE_HEADER.lower()])
        body = json.loads(raw)
        assert headers["aupguard-delivery"] == body["id"] and body["text"].startswith("aupguard: ")
    flagged = next(b for b in receiver.bodies() if b["type"] == "item_flagged")
    assert len(flagged["events"]) == 3 and "3 prompts flagged" in flagged["text"]
    suspended = next(b for b in receiver.bodies() if b["type"] == "user_suspended")
    assert suspended["events"][0]["data"]["user_hash"] == guard.hash_user("u1")
    assert "u1" not in json.dumps(receiver.bodies()).replace(guard.hash_user("u1"), "")  # no raw id goes out
    assert SECRET not in json.dumps(receiver.bodies())


def test_a_receiver_that_was_down_gets_every_event_once_it_is_back(make_guard: MakeGuard, receiver: Receiver) -> None:
    port = receiver.port
    receiver.stop()
    guard = make_guard(notify(receiver))
    for user in ("a", "b", "c"):
        guard.suspend(user, reason="down-time test")
    strike = guard.strike("d", reason="r").strike
    guard.appeal("d", strike_id=strike.id, text="please look again")
    time.sleep(0.5)  # let attempts fail against the closed port
    back = Receiver(port).start()
    try:
        events = back.wait_for(4)
        assert sorted(e["type"] for e in events) == ["appeal_received", *["user_suspended"] * 3]
        assert len({e["id"] for e in events}) == len(events) == 4  # each event exactly once
        assert "please look again" not in json.dumps(back.bodies())  # the appeal's text stays home
    finally:
        back.stop()


def test_pending_notifications_survive_a_restart_of_the_engine(tmp_path: Path, keyring: Any) -> None:
    receiver = Receiver().start()
    port = receiver.port
    receiver.stop()
    store = f"sqlite:///{tmp_path / 'a.db'}"
    policy = Policy.from_mapping({**notify(receiver), "storage": {"spill": str(tmp_path / "spill")}}, env={})
    first = Safeguards(policy, store=store, keyring=keyring)
    first.suspend("u1", reason="before the restart")
    first.close()
    second = Safeguards(policy, store=store, keyring=keyring)
    try:
        assert second.store.count_outbox() == 1
        back = Receiver(port).start()
        try:
            (event,) = back.wait_for(1)
            assert event["type"] == "user_suspended" and event["data"]["reason"] == "before the restart"
        finally:
            back.stop()
    finally:
        second.close()


def test_a_hanging_receiver_holds_up_neither_the_calls_nor_other_webhooks(make_guard: MakeGuard) -> None:
    hanging, healthy = Receiver(), Receiver().start()
    hanging.hang = True
    hanging.start()
    try:
        guard = make_guard(notify(hanging, healthy, timeout="10s"))
        guard.suspend("u1", reason="first")
        assert hanging.entered.wait(10)  # the first delivery is stuck in the hanging receiver
        status = guard.suspend("u2", reason="second")  # returns while the receiver still hangs
        decision = guard.check("u3", prompt="hello")
        assert status.level.value == "suspended" and decision.allowed
        assert not hanging.release.is_set() and hanging.deliveries == []
        events = healthy.wait_for(2)  # the other webhook got both meanwhile
        assert sorted(e["data"]["reason"] for e in events) == ["first", "second"]
    finally:
        hanging.release.set()
        hanging.stop()
        healthy.stop()


def test_items_past_the_sla_are_announced_once(make_guard: MakeGuard, receiver: Receiver, clock: Clock) -> None:
    guard = make_guard({**notify(receiver), "review": {"sla": "24h"}}, clock=clock)
    guard.check("u1", prompt="explain nerve agent synthesis")
    clock.advance(2)  # past the flags' batch window
    receiver.wait_for(1)  # the flag itself
    clock.advance(DAY + 60)
    events = receiver.wait_for(2)
    (late,) = [e for e in events if e["type"] == "queue_sla_breached"]
    assert late["data"]["count"] == 1 and late["data"]["sla"] == DAY
    time.sleep(1.5)  # a few more checks: nothing new is late, nothing is announced again
    assert [e["type"] for e in receiver.events()].count("queue_sla_breached") == 1


@pytest.mark.parametrize(
    ("hook", "key"),
    [
        ({"url": "https://user:pw@hooks.example.com/x", "events": ["item_flagged"], "secret": SECRET},
         "notify.webhooks[0].url"),
        ({"url": "ftp://hooks.example.com/x", "events": ["item_flagged"], "secret": SECRET}, "notify.webhooks[0].url"),
        ({"url": "https://hooks.example.com/x", "events": ["item_flaged"], "secret": SECRET},
         "notify.webhooks[0].events"),
        ({"url": "https://hooks.example.com/x", "events": ["item_flagged"]}, "notify.webhooks[0].secret"),
        ({"url": "https://hooks.example.com/x", "events": ["item_flagged"], "secret": "short"},
         "notify.webhooks[0].secret"),
        ({"url": "https://hooks.example.com/x", "events": [], "secret": SECRET}, "notify.webhooks[0].events"),
    ],
)  # fmt: skip
def test_webhooks_are_checked_at_load_and_errors_name_the_key(hook: dict[str, Any], key: str) -> None:
    with pytest.raises(PolicyError) as error:
        Policy.from_mapping({"notify": {"webhooks": [hook]}}, env={})
    assert error.value.key == key
    assert "pw" not in str(error.value) and SECRET not in str(error.value) and "short" not in str(error.value)


def test_the_documented_verification_snippet_matches_the_signature() -> None:
    body, t = b'{"id":"d1"}', int(time.time())
    header = sign(SECRET, body, t)
    import hashlib
    import hmac

    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"])
    assert not verify(SECRET, body, sign(SECRET, body, t - 3600))  # an old delivery replayed is refused


@pytest.mark.postgres
def test_the_outbox_works_on_postgresql_and_two_engines_send_each_event_once(
    pg_url: str, make_guard: MakeGuard, receiver: Receiver
) -> None:
    port = receiver.port
    receiver.stop()
    policy = notify(receiver)
    one, two = make_guard(policy, store=pg_url), make_guard(policy, store=pg_url)  # two workers, one store
    for user in ("a", "b", "c", "d"):
        (one if user in "ac" else two).suspend(user, reason="pg")
    one.check("e", prompt="explain nerve agent synthesis")
    back = Receiver(port).start()
    try:
        events = back.wait_for(5)
        assert Counter(e["type"] for e in events) == {"user_suspended": 4, "item_flagged": 1}
        assert len({e["id"] for e in events}) == 5 and len(back.deliveries) == len({b["id"] for b in back.bodies()})
        time.sleep(0.5)  # both engines keep polling: nothing is sent twice
        assert len(back.events()) == 5
    finally:
        back.stop()


def test_deliveries_are_counted_in_the_metrics(make_guard: MakeGuard, receiver: Receiver) -> None:
    guard = make_guard(notify(receiver))
    guard.suspend("u1", reason="metrics")
    receiver.wait_for(1)
    deadline = time.monotonic() + 10
    while "aupguard_webhook_deliveries_total 1" not in guard.metrics.render() and time.monotonic() < deadline:
        time.sleep(0.05)  # the receiver's answer is counted just after it arrived
    assert "aupguard_webhook_deliveries_total 1" in guard.metrics.render()

"""Queue actions on a real engine and store: confirm, dismiss (void + de-escalate), notes,
suspend and reinstate by hash, each audited with the reviewer as actor; sampling; the
violation-rate report; reviewer passwords."""

from __future__ import annotations

import json

import pytest

from aupguard import Level, PolicyError
from aupguard.review import ReviewConflict, ReviewerAccounts, ReviewQueue, report_csv, report_json, violation_report
from aupguard.review.accounts import hash_password
from tests.conftest import Clock, MakeGuard
from tests.support.review import PASSWORD, add_reviewer, flag, review_guard


def test_confirm_keeps_the_strike_and_records_the_reviewer(
    make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = review_guard(make_guard, monkeypatch)
    queue = ReviewQueue(guard)
    item = flag(guard, "alice")
    with pytest.raises(ReviewConflict, match="claim the item first"):
        queue.confirm(item, "dana")
    queue.claim(item, "dana")
    entry = queue.confirm(item, "dana", "clear weapons request")
    assert entry.item.status == "confirmed" and entry.resolved_by == "dana"
    assert guard.status("alice").strikes == 1  # the strike stands
    events = guard.audit.events(user_id="alice")
    assert [(e.action, e.actor, e.reason) for e in events if e.action == "review_confirm"] == [
        ("review_confirm", "reviewer:dana", "clear weapons request")
    ]
    with pytest.raises(ReviewConflict, match="already confirmed"):
        queue.claim(item, "dana")


def test_dismiss_voids_the_strike_and_de_escalates_at_once(
    make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = review_guard(make_guard, monkeypatch)
    queue = ReviewQueue(guard)
    items = [flag(guard, "bob") for _ in range(3)]  # suspend = 3: the ladder suspends bob
    assert guard.status("bob").level is Level.SUSPENDED
    queue.claim(items[-1], "dana")
    queue.dismiss(items[-1], "dana", "quoting a news article")
    status = guard.status("bob")
    assert status.level is Level.THROTTLED and status.strikes == 2  # the ladder's suspension lifted
    assert guard.check("bob").allowed
    strike = guard.store.find_strike(queue.entry(items[-1]).item.strike_id or "")
    assert strike is not None and strike.voided_at is not None
    actions = {(e.action, e.actor) for e in guard.audit.events(user_id="bob")}
    assert {("void_strike", "reviewer:dana"), ("review_dismiss", "reviewer:dana")} <= actions


def test_a_held_item_is_refused_to_a_second_reviewer(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    guard = review_guard(make_guard, monkeypatch, clock=clock)
    queue = ReviewQueue(guard)
    item = flag(guard, "carol")
    queue.claim(item, "dana")
    with pytest.raises(ReviewConflict, match="dana is working on this item"):
        queue.claim(item, "eli")
    clock.advance(601)  # [review] claim_for = 10m
    queue.claim(item, "eli")
    with pytest.raises(ReviewConflict):
        queue.dismiss(item, "dana")
    assert guard.status("carol").strikes == 1  # dana's late dismissal changed nothing


def test_suspend_reinstate_and_notes_by_hash(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    guard = review_guard(make_guard, monkeypatch)
    queue = ReviewQueue(guard)
    user_hash = guard.hash_user("dave")
    status = queue.suspend(user_hash, "dana", reason="repeat abuse", duration=3600)
    assert status.level is Level.SUSPENDED and status.until is not None
    refused = guard.check("dave")
    assert refused.status == 403 and refused.error == "user_suspended"
    queue.note(user_hash, "dana", "talked to the customer")
    assert queue.reinstate(user_hash, "dana", reason="appeal upheld").level is Level.OK
    assert guard.check("dave").allowed
    history = queue.history(user_hash)
    assert [n.body for n in history.notes] == ["talked to the customer"]
    actors = [(e.action, e.actor) for e in reversed(history.events) if e.action != "level_changed"]
    assert actors == [("suspend", "reviewer:dana"), ("review_note", "reviewer:dana"), ("reinstate", "reviewer:dana")]
    with pytest.raises(Exception, match="a note is 1 to"):
        queue.note(user_hash, "dana", "   ")


def test_item_detail_decrypts_the_captured_prompt(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    guard = review_guard(make_guard, monkeypatch)
    item = flag(guard, "erin", "please explain nerve agent synthesis <b>now</b>")
    detail = ReviewQueue(guard).detail(item)
    assert [(t.kind, t.text) for t in detail.texts] == [("prompt", "please explain nerve agent synthesis <b>now</b>")]
    assert detail.strike is not None and detail.records[0].outcome == "content_flagged"
    raw = guard.store._conn.execute("SELECT ciphertext FROM captures").fetchone()[0]
    assert b"nerve agent" not in bytes(raw)  # at rest it is ciphertext


def test_sampling_queues_allowed_calls_by_policy(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    guard = review_guard(make_guard, monkeypatch, policy={"review": {"sample_rate": 1.0, "secure_cookie": False}})
    guard.check("fay", prompt="what is the capital of France?")
    flag(guard, "fay")  # a flagged call is queued once, as a flag, not also as a sample
    guard.audit.flush()  # samples are written with the audit records, off the hot path
    actions = sorted(e.item.action for e in ReviewQueue(guard).page().entries)
    assert actions == ["block", "sample"]
    assert violation_report(guard)[0].flagged == 1  # samples are not violations


def test_no_sampling_by_default(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    guard = review_guard(make_guard, monkeypatch)
    for _ in range(20):
        guard.check("gil", prompt="hello")
    assert ReviewQueue(guard).page().entries == []


@pytest.mark.parametrize(("key", "value"), [("sample_rate", 1.5), ("sample_rate", True), ("claim_for", "soon"),
                                            ("secure_cookie", "yes"), ("nope", 1)])  # fmt: skip
def test_review_policy_errors_name_the_key(make_guard: MakeGuard, key: str, value: object) -> None:
    with pytest.raises(PolicyError, match=f"review.{key}"):
        make_guard({"review": {key: value}})


def test_report_ranks_by_rate_then_volume(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    guard = review_guard(make_guard, monkeypatch, policy={"ladder": {"window": "30d", "warn": 1, "throttle": 5,
                                                                     "suspend": 9}})  # fmt: skip
    for _ in range(3):
        guard.check("quiet", prompt="hello")
    flag(guard, "quiet")  # 1 of 4 calls
    flag(guard, "loud")
    flag(guard, "loud")  # 2 of 2
    flag(guard, "once")  # 1 of 1
    rows = violation_report(guard)
    hashes = {guard.hash_user(u): u for u in ("quiet", "loud", "once")}
    assert [(hashes[r.user_hash], r.flagged, r.total, r.rate, r.level) for r in rows] == [
        ("loud", 2, 2, 1.0, "warned"), ("once", 1, 1, 1.0, "warned"), ("quiet", 1, 4, 0.25, "warned")
    ]  # fmt: skip
    csv_lines = report_csv(rows).splitlines()
    assert csv_lines[0] == "user_hash,flagged,total,rate,level,strikes,monitored,would_level" and len(csv_lines) == 4
    data = json.loads(report_json(rows))
    assert data["users"][0]["user_hash"] == rows[0].user_hash and data["users"][2]["rate"] == 0.25


def test_passwords_are_scrypt_hashed_with_a_salt_per_account(make_guard: MakeGuard) -> None:
    guard = make_guard()
    accounts = ReviewerAccounts(guard.store, guard._clock)
    add_reviewer(guard, "dana")
    add_reviewer(guard, "eli")
    dana, eli = guard.store.reviewer("dana"), guard.store.reviewer("eli")
    assert dana is not None and eli is not None
    assert dana.salt != eli.salt and dana.password_hash != eli.password_hash and dana.params == "n=16384,r=8,p=1"
    assert PASSWORD.encode() not in dana.password_hash
    assert accounts.verify("dana", PASSWORD) and not accounts.verify("dana", PASSWORD + "x")
    assert not accounts.verify("nobody", PASSWORD)
    with pytest.raises(Exception, match="at least 12"):
        accounts.add("fred", "short")
    with pytest.raises(Exception, match="exists already"):
        accounts.add("dana", PASSWORD)
    assert hash_password("same")[0] != hash_password("same")[0]


def test_async_checks_sample_too(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    guard = review_guard(make_guard, monkeypatch, policy={"review": {"sample_rate": 1.0, "secure_cookie": False}})

    async def calls() -> None:
        await guard.acheck("hal", prompt="what is the capital of France?")
        await guard.acheck("hal")  # no prompt: nothing to review

    asyncio.run(calls())
    guard.audit.flush()
    (entry,) = ReviewQueue(guard).page().entries
    assert entry.item.action == "sample" and entry.item.user_hash == guard.hash_user("hal")
    assert [t.text for t in ReviewQueue(guard).detail(entry.item.id).texts] == ["what is the capital of France?"]

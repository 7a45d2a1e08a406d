"""Appeals at the engine: filing (own strikes and refusals only, rate-limited, cleaned,
sealed), deciding (upheld voids the strike and lifts its suspension; denied keeps it; once),
the user's notices, the audit trail; on SQLite and PostgreSQL."""

from __future__ import annotations

import logging

import pytest

from aupguard import Safeguards
from aupguard.errors import AppealConflict, AppealError, AppealRateLimited, UnknownAppealTarget
from aupguard.ladder import Level
from tests.conftest import DAY, Clock, MakeGuard

RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]
POLICY = {"ladder": {"warn": 1, "throttle": 2, "suspend": 2}, "moderation": {"rules": RULES},
          "review": {"appeals": "2/day", "appeal_max_chars": 50}}  # fmt: skip


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def guard(request: pytest.FixtureRequest, clock: Clock) -> Safeguards:
    store = request.getfixturevalue("pg_url") if request.param == "postgres" else None  # dropped after the engine
    make_guard: MakeGuard = request.getfixturevalue("make_guard")
    return make_guard(POLICY, store=store, clock=clock)


def test_upheld_appeal_voids_the_strike_and_lifts_its_suspension(guard: Safeguards) -> None:
    first = guard.strike("u1", reason="flagged", category="weapons").strike
    second = guard.strike("u1", reason="flagged", category="hate").strike
    assert guard.status("u1").level is Level.SUSPENDED
    appeal_id = guard.appeal("u1", strike_id=second.id, text="I was quoting the news")
    notices = guard.notices("u1").as_dict()
    assert notices["suspended"] and notices["suspension"] == "automatic"
    assert [a["status"] for a in notices["appeals"]] == ["open"]

    guard.decide_appeal(appeal_id, upheld=True, reason="Quoting a news article is allowed.", actor="reviewer:ann")

    assert guard.status("u1").level is Level.WARNED  # one strike left: warned, not suspended
    assert guard.store.find_strike(second.id).voided_at is not None  # type: ignore[union-attr]
    notices = guard.notices("u1").as_dict()
    assert not notices["suspended"]
    (appeal,) = notices["appeals"]
    assert appeal["status"] == "upheld" and appeal["reason"] == "Quoting a news article is allowed."
    assert {s["id"]: (s["category"], s["voided"]) for s in notices["strikes"]} == {
        first.id: ("weapons", False),
        second.id: ("hate", True),
    }
    assert "reviewer:ann" not in repr(notices)  # who decided is not the user's to know
    actions = [e.action for e in guard.store.events(user_hash=guard.hash_user("u1"), limit=20)]
    assert actions[:3] == ["level_changed", "appeal_decided", "appeal_filed"]


def test_denied_appeal_keeps_the_strike_and_a_decided_appeal_cannot_be_decided_again(guard: Safeguards) -> None:
    strike = guard.strike("u1", reason="flagged", category="weapons").strike
    appeal_id = guard.appeal("u1", strike_id=strike.id, text="please")
    guard.decide_appeal(appeal_id, upheld=False, reason="The prompt asked for synthesis steps.")
    assert guard.status("u1").strikes == 1
    with pytest.raises(AppealConflict):
        guard.decide_appeal(appeal_id, upheld=True, reason="changed my mind")
    assert guard.status("u1").strikes == 1
    (appeal,) = guard.notices("u1").appeals
    assert appeal["status"] == "denied" and appeal["reason"] == "The prompt asked for synthesis steps."
    with pytest.raises(AppealConflict):  # one appeal per strike
        guard.appeal("u1", strike_id=strike.id, text="again")
    with pytest.raises(UnknownAppealTarget):
        guard.decide_appeal("no-such-appeal", upheld=True, reason="x")
    with pytest.raises(AppealError):  # the user reads the reason: it is required
        guard.decide_appeal(appeal_id, upheld=True, reason="  ")


def test_another_users_strike_reads_exactly_as_an_unknown_one(guard: Safeguards) -> None:
    theirs = guard.strike("victim", reason="flagged").strike
    with pytest.raises(UnknownAppealTarget) as other:
        guard.appeal("attacker", strike_id=theirs.id, text="void it")
    with pytest.raises(UnknownAppealTarget) as unknown:
        guard.appeal("attacker", strike_id="01a00000-0000-7000-8000-000000000000", text="void it")
    assert str(other.value) == str(unknown.value)
    assert guard.notices("attacker").appeals == [] and guard.notices("victim").appeals == []


def test_a_refused_request_can_be_appealed_and_its_strike_goes_with_it(guard: Safeguards) -> None:
    refused = guard.check("u1", prompt="explain nerve agent synthesis")
    assert not refused.allowed
    allowed = guard.check("u1", prompt="hello")
    other = guard.check("u2", prompt="explain nerve agent synthesis")
    with pytest.raises(AppealError, match="nothing to appeal"):
        guard.appeal("u1", request_id=allowed.request_id, text="?")
    with pytest.raises(UnknownAppealTarget):
        guard.appeal("u1", request_id=other.request_id, text="mine?")
    appeal_id = guard.appeal("u1", request_id=refused.request_id, text="chemistry homework")
    assert guard.status("u1").strikes == 1
    guard.decide_appeal(appeal_id, upheld=True, reason="Homework question.")
    assert guard.status("u1").strikes == 0


def test_appeals_are_rate_limited_per_user(guard: Safeguards, clock: Clock) -> None:
    strikes = [guard.strike("u1", reason="r").strike for _ in range(3)]
    guard.appeal("u1", strike_id=strikes[0].id, text="one")
    guard.appeal("u1", strike_id=strikes[1].id, text="two")
    with pytest.raises(AppealRateLimited) as limited:
        guard.appeal("u1", strike_id=strikes[2].id, text="three")
    assert limited.value.retry_after is not None and 0 < limited.value.retry_after <= DAY
    assert guard.notices("u1").appeals_left == 0
    other = guard.strike("u2", reason="r").strike
    guard.appeal("u2", strike_id=other.id, text="another user is not limited by u1")
    clock.advance(DAY + 1)
    guard.appeal("u1", strike_id=strikes[2].id, text="three")


def test_the_text_is_cleaned_bounded_sealed_and_never_logged(
    guard: Safeguards, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    strike = guard.strike("u1", reason="r").strike
    with pytest.raises(AppealError, match="longer than 50"):
        guard.appeal("u1", strike_id=strike.id, text="x" * 51)
    with pytest.raises(AppealError, match="empty"):
        guard.appeal("u1", strike_id=strike.id, text="\u200b\x00 \n")
    appeal_id = guard.appeal("u1", strike_id=strike.id, text=" secret\u200b plea\x07 ")
    record = guard.appeals.get(appeal_id)
    assert b"plea" not in record.ciphertext
    assert guard.appeals.text(record) == "secret plea"
    assert "secret plea" not in caplog.text
    events = guard.store.events(user_hash=guard.hash_user("u1"), limit=5)
    assert "plea" not in repr(events)

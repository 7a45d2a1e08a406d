"""Shared set-up for the review tests: an engine whose rules flag known phrases and whose
captured prompts the console decrypts, a reviewer account, and flagged calls."""

from __future__ import annotations

from typing import Any

import pytest

from aupguard import Safeguards, generate_key_entry
from aupguard.review import ReviewerAccounts, ReviewQueue
from tests.conftest import MakeGuard

RULES = [
    {"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]},
    {"category": "cyber", "action": "review", "keywords": ["ransomware builder"]},
]
POLICY: dict[str, Any] = {
    "moderation": {"rules": RULES},
    "capture": {"enabled": True},
    "ladder": {"window": "30d", "warn": 1, "throttle": 2, "suspend": 3},
    "review": {"secure_cookie": False, "claim_for": "10m"},
    "limits": {"default": "1000/minute"},
}
PASSWORD = "correct horse battery staple"


def review_guard(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> Safeguards:
    monkeypatch.setenv("AUPGUARD_CAPTURE_KEY", generate_key_entry("c1"))
    policy = {**POLICY, **kwargs.pop("policy", {})}
    return make_guard(policy, **kwargs)


def add_reviewer(guard: Safeguards, name: str = "dana") -> str:
    ReviewerAccounts(guard.store, guard._clock).add(name, PASSWORD)
    return name


def flag(guard: Safeguards, user: str, text: str = "explain nerve agent synthesis") -> str:
    """Send a prompt the rules flag; return the review item's id."""
    decision = guard.check(user, prompt=text)
    assert decision.moderation is not None and decision.moderation.flagged
    guard.audit.flush()
    (entry,) = [e for e in ReviewQueue(guard).page(limit=500).entries if e.item.request_id == decision.request_id]
    return entry.item.id

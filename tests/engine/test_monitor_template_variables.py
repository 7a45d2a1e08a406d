"""Before the fix (found by an attacker's review):
monitor mode ("every check runs and is recorded"): a template request the prompt policy
refuses (a variable too long, or one the template does not declare) is screened "as the app's
own call" (as_app), whose pieces never include the variables. The flagged variable is not
moderated (no would_refuse:content_flagged, no strike, no review item), yet the app is given
the body with it (decision.body), and renders it for Claude. The same text as a free prompt
is recorded as flagged."""

from __future__ import annotations

from aupguard.engine.request_body import prompt_from_body
from tests.conftest import MakeGuard

RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]
HARMFUL = "step by step nerve agent synthesis"
PROMPTS = {
    "mode": "templates",
    "templates": {"greet": {"text": "Write a poem about {topic}.",
                            "variables": {"topic": {"type": "string", "max_length": 12}}}},
}  # fmt: skip


def _guard(make_guard: MakeGuard, mode: str):  # type: ignore[no-untyped-def]
    return make_guard({"enforcement": {"mode": mode}, "moderation": {"rules": RULES}, "prompts": PROMPTS})


def test_enforce_mode_a_flagged_variable_within_limits_is_flagged(make_guard: MakeGuard) -> None:
    guard = _guard(make_guard, "enforce")
    d = guard.check(
        "alice", prompt=prompt_from_body({"template": "greet", "variables": {"topic": "nerve agent synthesis"[:12]}})
    )
    assert d.allowed  # 12 chars: no keyword; baseline only


def test_monitor_mode_too_long_flagged_variable_is_not_moderated(make_guard: MakeGuard) -> None:
    guard = _guard(make_guard, "monitor")
    d = guard.check("alice", prompt=prompt_from_body({"template": "greet", "variables": {"topic": HARMFUL}}))
    assert d.allowed and "would_refuse:prompt_not_allowed" in d.reasons
    assert d.body is not None and HARMFUL in str(d.body)  # the app gets the variable
    assert "would_refuse:content_flagged" in d.reasons, f"the variable went on unmoderated: {d.reasons}"


def test_monitor_mode_undeclared_flagged_variable_is_not_moderated(make_guard: MakeGuard) -> None:
    guard = _guard(make_guard, "monitor")
    d = guard.check(
        "alice", prompt=prompt_from_body({"template": "greet", "variables": {"topic": "cats", "extra": HARMFUL}})
    )
    assert d.allowed and HARMFUL in str(d.body)
    assert "would_refuse:content_flagged" in d.reasons, f"the variable went on unmoderated: {d.reasons}"


def test_monitor_mode_same_text_as_a_free_prompt_is_recorded(make_guard: MakeGuard) -> None:
    guard = _guard(make_guard, "monitor")
    d = guard.check("alice", prompt=prompt_from_body({"prompt": HARMFUL}))
    assert d.allowed and "would_refuse:content_flagged" in d.reasons, d.reasons

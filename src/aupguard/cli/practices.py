"""Which of Anthropic's API safeguards practices a policy turns on, tier by tier (pure): what
``aupguard doctor`` prints first (:mod:`aupguard.cli.doctor`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..durations import format_duration
from ..policy.config import Policy

__all__ = ["NOT_YET", "OFF", "ON", "RULES_ONLY", "Practice", "assess"]

ON, OFF, NOT_YET = "on", "off", "not yet available"
RULES_ONLY = "exact-phrase rules only (no model or remote moderator)"


@dataclass(frozen=True, slots=True)
class Practice:
    tier: str  # Basic | Intermediate | Advanced | Comprehensive
    practice: str
    state: str  # on | off | not yet available | exact-phrase rules only (...)
    how: str


def assess(policy: Policy) -> list[Practice]:
    ladder = policy.ladder
    mod = policy.moderation
    flags_reach_review = (
        bool(mod.rules or mod.claude or mod.openai or mod.guard) and mod.mode != "off"
    ) or policy.review.sample_rate > 0
    remote = [f"guard model {g.name} (format {g.format})" for g in mod.guard]
    remote += [name for name, table in (("Claude", mod.claude), ("an OpenAI-compatible endpoint", mod.openai)) if table]
    suspend_for = "until reinstated" if ladder.suspend_for is None else f"for {format_duration(ladder.suspend_for)}"
    return [
        Practice(
            "Basic",
            "Store IDs linked with each API call",
            ON,
            "an audit record per guarded call (request id, user hash); Anthropic's request-id and "
            "message id are linked with Safeguards.audit.link",
        ),
        Practice(
            "Basic",
            "Assign IDs to users and pass them to Anthropic hashed",
            ON,
            "keyed HMAC-SHA256 of each user id (Safeguards.hash_user); raw ids never stored",
        ),
        Practice(
            "Basic",
            "Require an account before using Claude",
            ON if policy.identity.require_account else OFF,
            "anonymous callers get 401" if policy.identity.require_account else "set [identity] require_account = true",
        ),
        Practice(
            "Basic",
            "Make sure users understand permitted uses",
            ON if policy.terms else OFF,
            f"terms version {policy.terms.version} must be accepted (403 terms_not_accepted)"
            if policy.terms
            else "add a [terms] table with version and url",
        ),
        Practice(
            "Basic",
            "Warn, throttle or suspend repeat violators",
            ON,
            f"{ladder.warn} strike(s) warn, {ladder.throttle} throttle to {policy.limits.throttled}, "
            f"{ladder.suspend} suspend {suspend_for}; strikes count for {format_duration(ladder.window)}",
        ),
        _prompts(policy),
        _filters(policy, remote),
        Practice(
            "Advanced",
            "Run a moderation API on every prompt before Claude",
            ON if remote and mod.mode != "off" else OFF,
            f"{' and '.join(remote)} in mode {mod.mode}, fail {mod.fail}, timeout {format_duration(mod.timeout)}"
            if remote and mod.mode != "off"
            else "add [moderation.guard] (a self-hosted guard model), [moderation.claude] (Claude as moderator) or "
            "[moderation.openai] (any /v1/moderations endpoint)",
        ),
        Practice(
            "Advanced",
            "Use Claude for content moderation",
            ON if mod.claude is not None and mod.mode != "off" else OFF,
            f"model {mod.claude.model}" if mod.claude is not None else "add [moderation.claude]",
        ),
        Practice(
            "Basic",
            "Store prompts and completions for your own evaluation",
            ON if policy.capture.enabled else OFF,
            f"encrypted per user (AES-256-GCM), kept {format_duration(policy.capture.retention)}"
            if policy.capture.enabled
            else "set [capture] enabled = true and a master key",
        ),
        Practice(
            "Comprehensive",
            "Human review of flagged prompts; restrict high violation rates",
            ON if flags_reach_review else OFF,
            "flags (and a sample_rate share of allowed calls) queue for review: `aupguard console`, "
            "`aupguard review`, `aupguard report violations`"
            if flags_reach_review
            else "add moderators ([[moderation.rules]], [moderation.guard], [moderation.claude] or "
            "[moderation.openai]) so flags reach the review queue, or set [review] sample_rate",
        ),
    ]


def _filters(policy: Policy, remote: list[str]) -> Practice:
    """Rules alone match only the phrases listed: say so, rather than "on"."""
    mod = policy.moderation
    what = "Additional safety filters on prompts"
    if mod.mode == "off" or not (mod.rules or remote):
        return Practice("Intermediate", what, OFF, "add [moderation.guard] (a self-hosted guard model) or another "
                        "moderator; [[moderation.rules]] catch only the exact phrases they list")  # fmt: skip
    if not remote:
        how = (f"{len(mod.rules)} local rule(s) in [[moderation.rules]] catch only the phrases they list; "
               "add [moderation.guard], [moderation.claude] or [moderation.openai] to read meaning")  # fmt: skip
        return Practice("Intermediate", what, RULES_ONLY, how)
    rules = f"{len(mod.rules)} local rule(s), then " if mod.rules else ""
    return Practice("Intermediate", what, ON, rules + ", ".join(remote))


def _prompts(policy: Policy) -> Practice:
    prompts = policy.prompts
    how = {
        "open": "set [prompts] mode = allowlist | templates | corpus",
        "allowlist": f"{len(prompts.allowlist)} allowed prompt(s), {len(prompts.allowlist_patterns)} pattern(s)",
        "templates": f"{len(prompts.templates)} server-side template(s); free text refused",
        "corpus": f"documents by id from {prompts.corpus}; user-supplied documents refused",
    }[prompts.mode]
    state = OFF if prompts.mode == "open" else ON
    return Practice("Intermediate", "Limit users to a set of prompts or a known corpus", state, how)

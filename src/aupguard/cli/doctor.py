"""``aupguard doctor``: which of Anthropic's API safeguards practices a policy turns on (pure),
and whether the configured key ring and store work (I/O, in :func:`check_environment`)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from ..counters.registry import counters_from_uri
from ..durations import format_duration
from ..errors import AupguardError
from ..identity import Keyring
from ..policy.config import Policy
from ..stores import SQLStore, redact_uri, store_from_uri
from .support import LoadPolicy, command

__all__ = ["Finding", "Practice", "add_doctor_command", "assess", "check_environment", "check_moderators"]

ON, OFF, NOT_YET = "on", "off", "not yet available"
RULES_ONLY = "exact-phrase rules only (no model or remote moderator)"
PROBE = "Hello! What is the capital of France?"  # a text every moderator should find clean


@dataclass(frozen=True, slots=True)
class Practice:
    tier: str  # Basic | Intermediate | Advanced | Comprehensive
    practice: str
    state: str  # on | off | not yet available | exact-phrase rules only (...)
    how: str


@dataclass(frozen=True, slots=True)
class Finding:
    ok: bool
    what: str
    detail: str


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


def check_environment(policy: Policy, *, store: str | None = None) -> list[Finding]:
    """Load the key ring and open the store the way the engine would."""
    findings: list[Finding] = []
    ring: Keyring | None = None
    try:
        ring = Keyring.from_policy(policy.identity)
        findings.append(
            Finding(
                True,
                "hash key ring",
                f"current key {ring.current.kid}, {len(ring.keys) - 1} previous key(s)",
            )
        )
    except AupguardError as exc:
        findings.append(Finding(False, "hash key ring", str(exc)))
    uri = store or policy.storage.store
    path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    if path is not None and not Path(path).exists():  # checking must not create the database
        parent = Path(path).parent
        ok = parent.is_dir() and os.access(parent, os.W_OK)
        detail = (
            f"{uri} does not exist yet; it will be created on first use"
            if ok
            else (f"{uri} does not exist and {parent} is not a writable folder")
        )
        findings.append(Finding(ok, "store", detail))
        return [*findings, _counters(policy)]
    try:
        opened = store_from_uri(uri, migrate=False, timeout=policy.storage.store_timeout)  # report, not change
        try:
            findings.append(Finding(True, "store", f"{opened.uri} (schema version {opened.schema_version()})"))
            if ring is not None:
                findings.append(_key_matches_store(ring, opened))
        finally:
            opened.close()
    except AupguardError as exc:
        findings.append(Finding(False, "store", str(exc)))
    return [*findings, _counters(policy)]


def check_moderators(policy: Policy) -> list[Finding]:
    """Each configured moderator, named with its format, and whether it answered a probe
    (one short, harmless text; a paid moderator is billed for one small call)."""
    from ..moderation.base import ModeratorError
    from ..moderation.rules import RulesModerator
    from ..moderation.setup import policy_moderators

    if policy.moderation.mode == "off":
        return []
    try:
        moderators = policy_moderators(policy.moderation)
    except AupguardError as exc:
        return [Finding(False, "moderators", str(exc))]
    findings = []
    for moderator in moderators:
        if isinstance(moderator, RulesModerator):
            findings.append(Finding(True, "moderator rules", f"{len(moderator.rules)} exact-phrase rule(s), local"))
            continue
        what = f"moderator {moderator.name}"
        described = _described(moderator)
        try:
            verdict = moderator.moderate(PROBE)
        except ModeratorError as exc:
            findings.append(Finding(False, what, f"{described}: did not answer a probe ({exc.kind})"))
            continue
        except Exception as exc:  # a moderator of the policy's own making: report, do not crash doctor
            findings.append(Finding(False, what, f"{described}: did not answer a probe ({exc.__class__.__name__})"))
            continue
        finally:
            close = getattr(moderator, "close", None)
            if close is not None:
                close()
        flagged = f" (and flagged it: {', '.join(verdict.categories) or 'no category'})" if verdict.flagged else ""
        findings.append(Finding(True, what, f"{described}: answered a probe{flagged}"))
    return findings


def _described(moderator: object) -> str:
    fmt, model, url = (getattr(moderator, key, None) for key in ("format", "model", "url"))
    if fmt is not None:
        return f"format {fmt}, model {model}, {redact_uri(str(url))}"
    if url is not None:
        return f"format /v1/moderations, model {model or '-'}, {redact_uri(str(url))}"
    return f"format Claude JSON verdict, model {model}"


def _key_matches_store(ring: Keyring, store: SQLStore) -> Finding:
    """Whether the store's records were made with this key ring. Every stored user hash
    starts with its key id; a store full of records under none of the ring's ids means a
    wrong key (or a wrong store): every user would look new, and clean."""
    total = store.count_user_records()
    if total == 0:
        return Finding(True, "hash key and store", "the store holds no user records yet")
    current = store.count_user_records(ring.current.kid)
    previous = sum(store.count_user_records(key.kid) for key in ring.keys if key.kid != ring.current.kid)
    if current:
        return Finding(
            True, "hash key and store", f"{current} of {total} user records under the current key {ring.current.kid}"
        )
    if previous:
        return Finding(
            True,
            "hash key and store",
            f"none of {total} user records under the current key {ring.current.kid} yet; {previous} under previous "
            "keys (carried over on each user's next call)",
        )
    kids = ", ".join(key.kid for key in ring.keys)
    return Finding(
        False,
        "hash key and store",
        f"the store holds {total} user records, none under the key ids of this key ring ({kids}): "
        "a wrong hash key or a wrong store? Every user would look new and clean",
    )


def _counters(policy: Policy) -> Finding:
    shown = redact_uri(policy.storage.counters)
    try:
        counters = counters_from_uri(policy.storage.counters, policy.limits, policy.storage)
    except AupguardError as exc:
        return Finding(False, "counters", str(exc))
    try:
        answers = counters.storage.check()
    except Exception:  # limits' check() says False for most failures; anything else is the same verdict
        answers = False
    if not answers:
        return Finding(False, "counters", f"{shown} does not answer (fail = {policy.storage.fail!r} applies)")
    return Finding(True, "counters", shown)


def _doctor(args: argparse.Namespace, load_policy: LoadPolicy) -> int:
    policy = load_policy(args.policy)
    marks = {"on": "[x]", "off": "[ ]", "not yet available": "[-]", RULES_ONLY: "[~]"}
    tier = ""
    for p in assess(policy):
        if p.tier != tier:
            tier = p.tier
            print(f"\n{tier}")
        print(f"  {marks[p.state]} {p.practice}: {p.state}\n        {p.how}")
    print("\nThis machine")
    findings = check_environment(policy, store=args.store) + check_moderators(policy)
    for f in findings:
        print(f"  {'ok ' if f.ok else 'ERR'} {f.what}: {f.detail}")
    return 0 if all(f.ok for f in findings) else 1


def add_doctor_command(sub: argparse._SubParsersAction[argparse.ArgumentParser], load_policy: LoadPolicy) -> None:
    about = "which safeguards practices this policy turns on; check key and store"
    command(sub, "doctor", about, lambda args: _doctor(args, load_policy))

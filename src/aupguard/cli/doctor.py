"""``aupguard doctor``: which of Anthropic's API safeguards practices a policy turns on
(:mod:`aupguard.cli.practices`, pure), and whether the configured key ring, store, counters and
moderators work (I/O, in :func:`check_environment` and :func:`check_moderators`)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from ..counters.registry import counters_from_uri
from ..errors import AupguardError
from ..identity import Keyring
from ..policy.config import Policy
from ..stores import SQLStore, redact_uri, store_from_uri
from .practices import RULES_ONLY, Practice, assess
from .support import LoadPolicy, command

# Practice and assess live in .practices; they are imported from here too
__all__ = ["Finding", "Practice", "add_doctor_command", "assess", "check_environment", "check_moderators"]

PROBE = "Hello! What is the capital of France?"  # a text every moderator should find clean


@dataclass(frozen=True, slots=True)
class Finding:
    ok: bool
    what: str
    detail: str


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
    if policy.enforcement.mode == "monitor":
        print('Enforcement: MONITOR mode ([enforcement] mode = "monitor"): every check runs and is recorded,')
        print("  nothing the policy decides is refused (answers say Aupguard-Would-Refuse); strikes are")
        print('  recorded as monitored and do not climb the ladder. Set mode = "enforce" to act.')
    else:
        print("Enforcement: enforce mode: refusals, limits and the ladder act")
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

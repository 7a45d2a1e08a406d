"""``aupguard demo``: a terminal walkthrough of the engine on embedded defaults.

It needs no API key and no server: a SQLite file and in-memory counters under ``--dir``.
Without ``AUPGUARD_HASH_KEY`` it generates a demo key and keeps it in that folder, with a
warning, because a real deployment must manage its key itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..engine.safeguards import Safeguards
from ..identity import Keyring, generate_key_entry
from ..outcome import Decision
from ..policy.config import Policy
from .support import command

__all__ = ["DEMO_DIR", "add_demo_command", "demo_reviewer", "inspect_lines", "run_demo"]

#: where ``aupguard demo`` and ``make demo``'s served app keep their one store and hash key
DEMO_DIR = Path(".aupguard/demo")

POLICY = {
    "terms": {"version": "2026-01", "url": "https://example.com/usage-policy"},
    "ladder": {"window": "30d", "warn": 1, "throttle": 3, "suspend": 5, "suspend_for": "7d"},
    "limits": {"default": "4/minute", "throttled": "2/minute"},
}


class _Out:
    def __init__(self) -> None:
        self.color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def step(self, title: str) -> None:
        print("\n" + self.paint(f"── {title} ", "1;36") + self.paint("─" * max(0, 66 - len(title)), "36"))

    def say(self, text: str) -> None:
        print(f"   {text}")

    def decision(self, who: str, d: Decision) -> None:
        if d.allowed:
            verdict = self.paint("ALLOWED", "32")
            extra = f"  limit {d.limit}, remaining {d.remaining}"
            if d.warning:
                extra += "\n" + " " * 14 + self.paint(f"warning: {d.warning}", "33")
        else:
            verdict = self.paint(f"{d.status} {d.error}", "31")
            extra = f"  Retry-After {d.retry_after}s" if d.retry_after else ""
            extra += "\n" + " " * 14 + d.message
        print(f"   {who:<9} → {verdict}{extra}")


def demo_reviewer(guard: Safeguards, name: str = "demo-reviewer") -> tuple[str, str]:
    """A review-console account with a fresh random password (its earlier sessions end), for
    ``make demo`` to print once. Only the scrypt hash is stored."""
    import secrets

    from ..review import ReviewerAccounts

    password = secrets.token_urlsafe(12)
    ReviewerAccounts(guard.store, guard._clock).add(name, password, replace=True)
    return name, password


def _keyring(directory: Path, out: _Out) -> Keyring:
    text = os.environ.get("AUPGUARD_HASH_KEY", "")
    if text.strip():
        return Keyring.parse(text, source="environment variable AUPGUARD_HASH_KEY")
    key_file = directory / "hash-key"
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(generate_key_entry("demo") + "\n")
    out.say(out.paint(f"WARNING: no AUPGUARD_HASH_KEY set; using the demo key in {key_file}.", "1;33"))
    out.say(out.paint("         Real deployments set their own key (`aupguard hash-key generate`).", "33"))
    return Keyring.parse(key_file.read_text(encoding="utf-8"), source=f"file {key_file}")


def run_demo(directory: Path) -> None:
    out = _Out()
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "aupguard.db"
    for leftover in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        leftover.unlink(missing_ok=True)
    print(out.paint("aupguard demo: one policy engine, the safeguards of Anthropic's guidance", "1"))
    out.say(f"store sqlite:///{db}, counters in memory; no API key, no server")
    keyring = _keyring(directory, out)
    policy = Policy.from_mapping(POLICY, env={})
    with Safeguards(policy, store=f"sqlite:///{db}", keyring=keyring) as guard:
        _walk(guard, out)
        out.step("The audit trail")
        records = guard.audit.find(user_id="alice", limit=100)
        out.say(f"{len(records)} decision records for alice, e.g. the latest:")
        latest = records[0]
        out.say(
            f"  request {latest.request_id}  {latest.outcome} ({latest.status})  user {(latest.user_hash or '-')[:20]}…"
        )
        out.say("State changes, oldest first:")
        for event in reversed(guard.audit.events(user_id="alice", limit=100)):
            if event.action != "level_changed":
                before, after = event.details.get("level_before"), event.details.get("level_after")
                out.say(f"  {event.action:<13} by {event.actor:<14} {before} → {after}   ({event.reason})")
    print("\n" + out.paint("Done.", "1") + " Inspect it yourself:")
    for line in inspect_lines(directory, ["alice"]):
        print(f"  {line}")


def inspect_lines(directory: Path, users: list[str]) -> list[str]:
    """Ready-to-paste commands that show the demo store in ``directory`` (the walkthrough's
    and the served app's: one store, one hash key), for each of ``users``."""
    store = f"--store sqlite:///{directory / 'aupguard.db'}"
    lines = []
    if not os.environ.get("AUPGUARD_HASH_KEY", "").strip():
        lines.append(f'export AUPGUARD_HASH_KEY="$(cat {directory / "hash-key"})"   # the demo\'s hash key')
    for user in users:
        lines.append(f".venv/bin/aupguard {store} user status {user}")
        lines.append(f".venv/bin/aupguard {store} user events {user}")
    lines.append(f".venv/bin/aupguard {store} audit find --user {users[0]}")
    return lines


def _walk(guard: Safeguards, out: _Out) -> None:
    out.step("1. Users are hashed: raw ids never leave this process")
    for user in ("alice", "bob"):
        out.say(f"{user:<6} → {guard.hash_user(user)}")
    out.say("this hash is what aupguard stores and what Anthropic receives as metadata.user_id")

    out.step("2. An account is required, and the current terms must be accepted")
    out.decision("anonymous", guard.check(None, surface="demo"))
    out.decision("alice", guard.check("alice", surface="demo"))
    guard.accept_terms("alice", "2026-01")
    out.say("alice accepts the usage policy 2026-01")
    out.decision("alice", guard.check("alice", surface="demo"))

    out.step("3. A first violation: alice is warned")
    result = guard.strike(
        "alice", reason="asked for malware", category="cyber", source="moderator", actor="moderator:rules"
    )
    out.say(f"strike {result.strike.id} → level {result.status.level.value}")
    out.decision("alice", guard.check("alice", surface="demo"))

    out.step("4. Three strikes: alice is throttled (2/minute instead of 4/minute)")
    for _ in range(2):
        result = guard.strike(
            "alice", reason="asked for malware again", category="cyber", source="moderator", actor="moderator:rules"
        )
    out.say(f"{result.status.strikes} strikes → level {result.status.level.value}")
    for _ in range(3):
        out.decision("alice", guard.check("alice", surface="demo"))

    out.step("5. Five strikes: alice is suspended for 7 days")
    for _ in range(2):
        result = guard.strike(
            "alice", reason="weapons request", category="weapons", source="reviewer", actor="reviewer:dana"
        )
    out.say(f"{result.status.strikes} strikes → level {result.status.level.value}")
    out.decision("alice", guard.check("alice", surface="demo"))
    out.say("bob is unaffected:")
    guard.accept_terms("bob", "2026-01")
    out.decision("bob", guard.check("bob", surface="demo"))

    out.step("6. An appeal is upheld: one strike voided, alice de-escalates at once")
    status = guard.void_strike(result.strike.id, reason="appeal upheld: false positive", actor="reviewer:dana")
    out.say(f"{status.strikes} strikes → level {status.level.value}")

    out.step("7. An operator reinstates alice: the ladder starts afresh")
    status = guard.reinstate("alice", reason="completed policy review", actor="operator:sam")
    out.say(f"level {status.level.value}, {status.strikes} counting strikes (the ledger keeps all five)")
    out.decision("alice", guard.check("alice", surface="demo"))


def _demo(args: argparse.Namespace) -> int:
    run_demo(Path(args.dir))
    return 0


def add_demo_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = command(sub, "demo", "a terminal walkthrough on embedded defaults", _demo)
    demo.add_argument("--dir", default=".aupguard/demo", help="where the demo keeps its files")

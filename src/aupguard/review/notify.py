"""Webhook notifications, the pure part: which audit events announce what, the body of a
delivery (with a Slack-compatible ``text``), its signature, and the retry schedule.

A delivery is a JSON object::

    {"id": "<delivery id>", "type": "item_flagged", "created": 1767312000,
     "events": [{"id": "<event id>", "type": "item_flagged", "at": 1767311990.5, "data": {...}}],
     "text": "aupguard: 2 prompts flagged (violence x2)"}

signed in the ``Aupguard-Signature`` header as ``t=<unix seconds>,v1=<hex>``, the hex being
HMAC-SHA256(secret, ``"<t>.<body>"``) (as Stripe signs). A retry is the same delivery (same
id, same events); receivers dedupe on the event ids. Bodies carry user hashes, never raw
ids, and never the text of a prompt or an appeal.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..durations import format_duration
from ..ids import new_id
from ..stores.records import AuditEvent

__all__ = [
    "SIGNATURE_HEADER",
    "backoff",
    "body_of",
    "notifications_for",
    "sign",
    "slack_text",
    "verify",
]

SIGNATURE_HEADER = "Aupguard-Signature"
MAX_BACKOFF = 3600.0


def _notification(e: AuditEvent) -> tuple[str, dict[str, Any]] | None:
    d = e.details
    user = {"user_hash": e.user_hash}
    if e.action == "suspend":
        return "user_suspended", {**user, "until": d.get("until"), "reason": e.reason, "actor": e.actor}
    if e.action == "level_changed" and d.get("to") == "suspended" and d.get("from") != "suspended":
        return "user_suspended", {**user, "reason": e.reason, "actor": e.actor, "automatic": True}
    if e.action == "reinstate":
        return "user_reinstated", {**user, "reason": e.reason, "actor": e.actor}
    if e.action == "level_changed" and d.get("from") == "suspended" and d.get("to") != "suspended":
        return "user_reinstated", {**user, "reason": e.reason, "actor": e.actor, "automatic": True}
    if e.action in ("strike", "review") and e.actor == "moderation":
        keys = ("review_item", "request_id", "category", "source", "where")
        return "item_flagged", {**user, **{k: d[k] for k in keys if k in d}}
    if e.action == "appeal_filed":
        return "appeal_received", {**user, **{k: d.get(k) for k in ("appeal_id", "strike_id", "request_id")}}
    return None


def notifications_for(
    events: Sequence[AuditEvent], routes: Mapping[str, Sequence[str]]
) -> list[tuple[str, float, str, str, str]]:
    """The outbox rows for the events of one transaction: (row id, at, target, event type,
    data JSON), one per notification and subscribed webhook. One change announces a
    suspension (or reinstatement) once, however many of its events say so."""
    rows: list[tuple[str, float, str, str, str]] = []
    seen: set[tuple[str, str | None]] = set()
    for e in events:
        found = _notification(e)
        if found is None:
            continue
        kind, data = found
        targets = routes.get(kind, ())
        if not targets or ((kind, e.user_hash) in seen and kind.startswith("user_")):
            continue
        seen.add((kind, e.user_hash))
        event_id = new_id()
        text = json.dumps({"id": event_id, "type": kind, "at": e.at, "data": data}, sort_keys=True)
        rows.extend((f"{event_id}.{t}", e.at, t, kind, text) for t in targets)
    return rows


def sla_rows(
    items: list[tuple[str, float]], sla: float, now: float, targets: Sequence[str]
) -> list[tuple[str, float, str, str, str]]:
    """The outbox rows announcing review items that went past the SLA (oldest first)."""
    event_id = new_id()
    data = {"count": len(items), "oldest_at": items[0][1], "sla": sla, "items": [i for i, _ in items[:20]]}
    text = json.dumps({"id": event_id, "type": "queue_sla_breached", "at": now, "data": data}, sort_keys=True)
    return [(f"{event_id}.{t}", now, t, "queue_sla_breached", text) for t in targets]


def _short(user_hash: object) -> str:
    return f"{str(user_hash)[:16]}…" if user_hash else "a user"


def slack_text(kind: str, events: Sequence[Mapping[str, Any]]) -> str:
    """One line a chat channel can show (Slack's and Mattermost's ``text``)."""
    data = events[0]["data"]
    if kind == "item_flagged":
        counts: dict[str, int] = {}
        for e in events:
            category = str(e["data"].get("category") or "unspecified")
            counts[category] = counts.get(category, 0) + 1
        what = ", ".join(f"{c} x{n}" for c, n in sorted(counts.items()))
        noun = "prompt" if len(events) == 1 else "prompts"
        return f"aupguard: {len(events)} {noun} flagged for review ({what})"
    if kind == "user_suspended":
        until = data.get("until")
        end = "until reinstated" if until is None else time.strftime("until %Y-%m-%d %H:%M UTC", time.gmtime(until))
        if data.get("automatic"):
            end = "by the strike ladder"
        return f"aupguard: user {_short(data.get('user_hash'))} suspended {end}: {data.get('reason')}"
    if kind == "user_reinstated":
        return f"aupguard: user {_short(data.get('user_hash'))} reinstated: {data.get('reason')}"
    if kind == "appeal_received":
        return f"aupguard: user {_short(data.get('user_hash'))} appealed; the appeal waits in the console"
    if kind == "queue_sla_breached":
        return (f"aupguard: {data.get('count')} review item(s) open longer than "
                f"{format_duration(float(data.get('sla') or 0))}")  # fmt: skip
    return f"aupguard: {kind}"


def body_of(delivery_id: str, kind: str, event_texts: Iterable[str], created: float) -> bytes:
    events = [json.loads(t) for t in event_texts]
    body = {"id": delivery_id, "type": kind, "created": int(created), "events": events,
            "text": slack_text(kind, events)}  # fmt: skip
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Aupguard-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, tolerance: float = 300.0, now: float | None = None) -> bool:
    """What a receiver checks: the signature is the secret's and at most ``tolerance``
    seconds old (so a captured delivery cannot be replayed later). Any header, however
    malformed, gives False, never an exception; several ``v1=`` values are accepted (one per
    secret, while a secret is being rotated)."""
    fields = [p.partition("=")[::2] for p in header.split(",")]
    stamps = [value.strip() for name, value in fields if name.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).partition("v1=")[2].encode("ascii")
    given = [value.strip().encode("utf-8", "replace") for name, value in fields if name.strip() == "v1"]
    return any(hmac.compare_digest(expected, mac) for mac in given)


def backoff(attempts: int, jitter: float, first: float = 2.0) -> float:
    """Seconds before the next try after ``attempts + 1`` failed ones: ``first``, twice
    that, four times, ... up to an hour, times a ``jitter`` in [0.5, 1.5) so the senders of
    many processes do not come back to a receiver all at once."""
    return min(MAX_BACKOFF, first * 2.0 ** min(attempts, 20)) * (0.5 + jitter)


def new_delivery_id() -> str:
    return new_id()

"""Pure helpers for what the console shows: an item's source in words, ages and SLA badges,
the rule keywords that matched in a captured text, and what became of each strike.

Nothing here builds HTML: highlights are (text, matched) segments that the templates
escape like every other value, so a prompt stays text however it is made."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from aupguard.policy.moderation import RuleSpec
from aupguard.stores.records import ReviewItem, StrikeRecord

__all__ = ["Sla", "age_text", "highlight", "matched_terms", "sla_of", "source_label", "strike_state"]


def source_label(item: ReviewItem) -> str:
    """Why the item is in the queue, in words: which moderator flagged what, or sampling."""
    if item.action == "sample":
        return "sampling: a quality check of an allowed call"
    if "claude-refusal" in item.moderators:
        return "Claude refused to answer"
    what, _, where = item.explanation.partition(" at ")
    subject = "the answer" if what == "output" else "the prompt"
    by = ", ".join(item.moderators) or "moderation"
    return f"{by} on {subject}" + (f" ({where})" if where and where != what else "")


def age_text(seconds: float) -> str:
    """A short age: ``45 s``, ``12 min``, ``3 h``, ``2 d``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


@dataclass(frozen=True, slots=True)
class Sla:
    breached: bool
    text: str  # "SLA breached 3 h ago" / "due in 5 h"


def sla_of(item: ReviewItem, now: float, sla: float) -> Sla | None:
    """The SLA badge of an open item (None once it is resolved)."""
    if item.status != "open":
        return None
    left = item.at + sla - now
    if left <= 0:
        return Sla(True, f"SLA breached {age_text(-left)} ago")
    return Sla(False, f"due in {age_text(left)}")


def matched_terms(rules: Iterable[RuleSpec], categories: Iterable[str]) -> list[str]:
    """The keywords of the rules in ``categories`` (what a rules moderator matches on)."""
    wanted = set(categories)
    return sorted({word for rule in rules if rule.category in wanted for word in rule.keywords}, key=str.lower)


def highlight(text: str, terms: Iterable[str]) -> list[tuple[str, bool]]:
    """``text`` split into segments, True where one of ``terms`` occurs (case-insensitive,
    whole words, longest first). The rules moderator also folds look-alike letters, so a
    disguised match may show unmarked: the categories above still say what was flagged."""
    words = sorted({t for t in terms if t.strip()}, key=len, reverse=True)
    if not words or not text:
        return [(text, False)]
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)
    out: list[tuple[str, bool]] = []
    last = 0
    for match in pattern.finditer(text):
        if match.start() > last:
            out.append((text[last : match.start()], False))
        out.append((match.group(0), True))
        last = match.end()
    if last < len(text):
        out.append((text[last:], False))
    return out


def strike_state(strike: StrikeRecord, *, reset_at: float | None, window_start: float) -> str:
    """What became of a strike: ``voided`` (a dismissal or an appeal), ``cleared`` (a
    reinstatement after it), ``expired`` (older than the ladder window) or ``counting``."""
    if strike.voided_at is not None:
        return "voided"
    if reset_at is not None and strike.at <= reset_at:
        return "cleared"
    if strike.at <= window_start:
        return "expired"
    return "counting"

"""``RulesModerator``: keyword and regex rules per category, compiled once into one matcher.

Keywords go into one Aho-Corasick automaton (``pyahocorasick``), so a thousand keywords cost
one pass over the text; each regex costs one scan (keep them few, put volume in keywords). Both run on the normal form
of the text (:func:`aupguard.normalize.normalize`), so case, full-width letters, zero-width
characters and Cyrillic/Greek look-alikes do not evade them. Keywords match whole words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import ahocorasick

from ..normalize import normalize
from ..policy_moderation import RuleSpec
from .base import Verdict

__all__ = ["RulesModerator"]

_CANDIDATES = 8
_LEADING = re.compile(r"^(?:\(\?([aiLmsux]+)\))?(\\b)?")


class _Pattern:
    """A case-insensitive regex, searched the fast way. ``re`` scans for a literal prefix at
    C speed, but not after a leading ``\\b`` nor under IGNORECASE (a search then costs ~10 µs
    per KB instead of ~0.3). The text is already case-folded, so when the pattern has no
    capital letters its candidates are found with a case-sensitive copy without the leading
    ``\\b``, and each candidate is confirmed with the full pattern at that position: the same
    matches, found faster."""

    def __init__(self, pattern: str) -> None:
        self.full = re.compile(pattern, re.IGNORECASE)
        lead = _LEADING.match(pattern)
        flags, boundary = (lead.group(1) or "", lead.group(2)) if lead else ("", None)
        rest = pattern[lead.end() :] if lead else pattern
        lower = not any(ch.isupper() for ch in rest)
        if not lower and not boundary:
            self.fast: re.Pattern[str] | None = None
            return
        flags = flags.replace("i", "") if lower else flags
        self.fast = re.compile((f"(?{flags})" if flags else "") + rest, 0 if lower else re.IGNORECASE)

    def search(self, text: str) -> bool:
        if self.fast is None:
            return self.full.search(text) is not None
        pos = 0
        for _ in range(_CANDIDATES):
            found = self.fast.search(text, pos)
            if found is None:
                return False
            if self.full.match(text, found.start()):
                return True
            pos = found.start() + 1
        # many candidates that fail: re-searching from each could go quadratic on a long
        # prompt (``\b[a-z]+ bomb`` over "1aaaa..."): one plain search from here instead
        return self.full.search(text, pos) is not None


class RulesModerator:
    """Flags a text in every category with a matching rule. Never fails, never does I/O."""

    local = True  # the chain calls it inline, even from async code, and does not cache it

    def __init__(self, rules: Iterable[RuleSpec], *, name: str = "rules") -> None:
        self.name = name
        self.rules = tuple(rules)
        self._clean = Verdict.clean(name)
        self._automaton: ahocorasick.Automaton | None = None
        keywords: dict[str, set[str]] = {}
        for rule in self.rules:
            for word in rule.keywords:
                keywords.setdefault(normalize(word), set()).add(rule.category)
        if keywords:
            automaton = ahocorasick.Automaton()
            for word, categories in keywords.items():
                automaton.add_word(word, (len(word), tuple(sorted(categories))))
            automaton.make_automaton()
            self._automaton = automaton
        self._order = {c: i for i, c in reversed(list(enumerate(r.category for r in self.rules)))}
        self._patterns = [(_Pattern(p), rule.category) for rule in self.rules for p in rule.patterns]

    def categories_in(self, text: str) -> tuple[str, ...]:
        """The categories whose rules match ``text``, in rule order."""
        norm = normalize(text)
        found: set[str] = set()
        if self._automaton is not None:
            for end, (length, categories) in self._automaton.iter(norm):
                start = end - length + 1
                if (start == 0 or not norm[start - 1].isalnum()) and (
                    end + 1 == len(norm) or not norm[end + 1].isalnum()
                ):
                    found.update(categories)
        for pattern, category in self._patterns:
            if category not in found and pattern.search(norm):
                found.add(category)
        if not found:
            return ()
        return tuple(sorted(found, key=self._order.__getitem__))

    def moderate(self, text: str) -> Verdict:
        categories = self.categories_in(text)
        if not categories:
            return self._clean
        return Verdict(True, categories, self.name, "matched rules: " + ", ".join(categories))

    async def amoderate(self, text: str) -> Verdict:
        return self.moderate(text)

"""``RulesModerator``: keyword and regex rules per category, compiled once into one matcher.

Keywords go into one Aho-Corasick automaton (``pyahocorasick``), so a thousand keywords cost
one pass over the text; each regex costs one linear-time scan on RE2
(:mod:`aupguard.operator_regex`; keep them few, put volume in keywords). Both run on the normal form
of the text (:func:`aupguard.normalize.normalize`), so case, full-width letters, zero-width
characters and Cyrillic/Greek look-alikes do not evade them. Keywords match whole words.
"""

from __future__ import annotations

from collections.abc import Iterable

import ahocorasick

from ..normalize import normalize
from ..operator_regex import PatternTimeout, compile_operator_regex
from ..policy.moderation import RuleSpec
from .base import ModeratorError, Verdict

__all__ = ["RulesModerator"]


class RulesModerator:
    """Flags a text in every category with a matching rule. Never does I/O; fails only when a
    pattern on the backtracking engine runs out of time and no rule matched."""

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
        self._patterns = [
            (compile_operator_regex(p, ignore_case=True), rule.category) for rule in self.rules for p in rule.patterns
        ]
        #: some pattern may run on the backtracking engine: callers keep long texts off the event loop
        self.backtracks = any(pattern.backtracks for pattern, _ in self._patterns)

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
        timed_out = False
        for pattern, category in self._patterns:
            try:
                if category not in found and pattern.search(norm):
                    found.add(category)
            except PatternTimeout:  # a text made to make it backtrack: the other rules still run
                timed_out = True
        if timed_out and not found:  # no verdict: a moderator failure, [moderation] fail applies
            raise ModeratorError(self.name, "pattern timeout")
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

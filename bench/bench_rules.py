"""RulesModerator throughput: 1,000 rules (keywords plus a few regexes) against a 1 KB prompt.

The issue's target: at most 20 µs per check. Two texts: clean prose (the common case, every
rule must be tried) and prose with full-width letters and a zero-width space (the Unicode
path of the normaliser). Median of several runs, in one process.
"""

from __future__ import annotations

import random
import statistics
import string
import sys
import time
from collections.abc import Sequence

from aupguard.moderation.rules import RulesModerator
from aupguard.policy.moderation import RuleSpec

__all__ = ["main"]


def _rules(count: int) -> list[RuleSpec]:
    rng = random.Random(7)

    def word() -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 11)))

    rules = [RuleSpec(f"cat{i % 12}", "block", (f"{word()} {word()}",)) for i in range(count - 5)]
    rules += [
        RuleSpec("weapons", "block", (), (r"(?i)\bbuild (a|an) (bomb|explosive)\b",)),
        RuleSpec("cyber", "review", (), (r"\bransom\w*\s+(kit|builder)\b",)),
        RuleSpec("fraud", "review", (), (r"\b(fake|forged) (passport|id card)s?\b",)),
        RuleSpec("self-harm", "review", (), (r"\bhow (much|many) .{0,40} to overdose\b",)),
        RuleSpec("spam", "log", (), (r"\bbuy now\b.{0,80}\bdiscount\b",)),
    ]
    return rules


def _median_us(fn: object, text: str, reps: int = 7, calls: int = 2000) -> float:
    check = fn
    runs = []
    for _ in range(reps):
        start = time.perf_counter_ns()
        for _ in range(calls):
            check(text)  # type: ignore[operator]
        runs.append((time.perf_counter_ns() - start) / calls / 1000)
    return statistics.median(runs)


def main(argv: Sequence[str] | None = None) -> int:
    moderator = RulesModerator(_rules(1000))
    prose = ("The quarterly report covers revenue, churn and the plans for the next release. " * 14)[:1024]
    unicode_prose = ("Ｔｈｅ quarterly report\u200b covers revenue and churn. " * 22)[:1024]
    assert not moderator.moderate(prose).flagged
    assert moderator.moderate(prose[:900] + " how to build a bomb").categories == ("weapons",)
    clean = _median_us(moderator.moderate, prose)
    uni = _median_us(moderator.moderate, unicode_prose)
    verdict = "within" if clean <= 20 else "OVER"
    print(
        f"rules: 1,000 rules vs 1 KB: ASCII {clean:.1f} µs (target ≤ 20 µs: {verdict}), "
        f"full-width + zero-width text {uni:.1f} µs per check"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

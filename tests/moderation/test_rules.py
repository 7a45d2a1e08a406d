"""``RulesModerator`` (keyword and regex rules per category), the ``[[moderation.rules]]``
policy table, and the text normal form both run on (:func:`aupguard.normalize.normalize`)."""

from __future__ import annotations

import asyncio
import random
import re
import unicodedata
from typing import Any

import pytest
import re2
from hypothesis import example, given
from hypothesis import strategies as st

from aupguard import Policy, PolicyError
from aupguard.moderation import Moderator, RulesModerator, Verdict
from aupguard.normalize import normalize
from aupguard.policy.moderation import RuleSpec

ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"

WEAPONS = RuleSpec(
    "weapons",
    keywords=("nerve agent synthesis", "pipe bomb"),
    patterns=(r"(?i)\bbuild (a|an) (bomb|explosive)\b",),
)
PROFANITY = RuleSpec("profanity", action="log", keywords=("ass", "damn"))
SELF_HARM = RuleSpec("self_harm", action="review", patterns=(r"\bhurt myself\b",))


@pytest.fixture
def moderator() -> RulesModerator:
    return RulesModerator([WEAPONS, PROFANITY, SELF_HARM])


def rules_policy(rules: list[dict[str, Any]]) -> Policy:
    return Policy.from_mapping({"moderation": {"rules": rules}}, env={})


# -- keywords --------------------------------------------------------------------------


class TestKeywords:
    @pytest.mark.parametrize(
        "text",
        [
            "how do I make a pipe bomb",
            "PIPE BOMB",  # case
            "a   pipe \t\n bomb please",  # whitespace runs inside a multi-word keyword
            "ｐｉｐｅ ｂｏｍｂ",  # full-width
            "pi\u200bpe bo\u200dmb",  # zero-width space / joiner inside words
            "pip\u00ade b\ufeffomb",  # soft hyphen, BOM
            "ріре bоmb",  # Cyrillic р, і, е, о in place of Latin
            "Ріре Вомв",  # Cyrillic capitals (fold to the same letters)
            "pipe bomb.",  # punctuation is a word boundary
            "(pipe bomb)",
            "step 1: nerve agent synthesis",
        ],
    )
    def test_keyword_survives_evasion(self, moderator: RulesModerator, text: str) -> None:
        assert moderator.categories_in(text) == ("weapons",)

    @pytest.mark.parametrize(
        "text",
        [
            "this class is great",  # "ass" inside a word
            "assess the passage",
            "amsterdam",  # "damn" is not in it, "dam" is
            "damnation",  # "damn" at the start of a longer word
            "pipe bombs",  # keyword followed by a letter
            "pipebomb",  # no space: a different word
            "bass guitar",
            "ass2",  # letters and digits are word characters
        ],
    )
    def test_keyword_does_not_match_inside_words(self, moderator: RulesModerator, text: str) -> None:
        assert moderator.categories_in(text) == ()

    @pytest.mark.parametrize("text", ["ass", "what an ass!", "ASS", "damn, it broke", "ass-kicking"])
    def test_keyword_as_a_whole_word(self, moderator: RulesModerator, text: str) -> None:
        assert moderator.categories_in(text) == ("profanity",)

    def test_keyword_written_with_unicode_is_normalised_too(self) -> None:
        moderator = RulesModerator([RuleSpec("x", keywords=("Ｎｅｒｖｅ  Ａｇｅｎｔ",))])
        assert moderator.categories_in("nerve agent") == ("x",)
        assert moderator.categories_in("NERVE\u200b AGENT") == ("x",)

    def test_same_keyword_in_two_categories(self) -> None:
        moderator = RulesModerator([RuleSpec("a", keywords=("boom",)), RuleSpec("b", keywords=("BOOM",))])
        assert moderator.categories_in("boom") == ("a", "b")


# -- patterns --------------------------------------------------------------------------


class TestPatterns:
    @pytest.mark.parametrize(
        "text",
        [
            "how to build a bomb",
            "Build An Explosive",
            "BUILD A BOMB",
            "build\u200b a bomb",
            "build а bоmb",  # Cyrillic а and о
            "ｂｕｉｌｄ ａｎ ｅｘｐｌｏｓｉｖｅ",
        ],
    )
    def test_pattern_with_leading_flags(self, moderator: RulesModerator, text: str) -> None:
        assert moderator.categories_in(text) == ("weapons",)

    @pytest.mark.parametrize("text", ["rebuild a bombshell", "build the bomb", "build a bombastic speech"])
    def test_pattern_boundaries_are_respected(self, moderator: RulesModerator, text: str) -> None:
        assert moderator.categories_in(text) == ()

    def test_pattern_without_flags(self, moderator: RulesModerator) -> None:
        assert moderator.categories_in("sometimes I want to hurt myself") == ("self_harm",)
        assert moderator.categories_in("I will not hurt myselfish people") == ()

    def test_other_leading_flags_stay_local(self) -> None:
        moderator = RulesModerator(
            [
                RuleSpec("dotall", patterns=(r"(?s)^start.*end$",)),
                RuleSpec("plain", patterns=(r"^middle$",)),
            ]
        )
        assert moderator.categories_in("start and end") == ("dotall",)
        assert moderator.categories_in("middle") == ("plain",)
        assert moderator.categories_in("xmiddle") == ()

    def test_pattern_with_capitals_matches_its_own_text(self) -> None:
        # Text is case-folded before matching; a pattern an operator writes with capitals must
        # still match the very text it spells, rather than silently never firing.
        moderator = RulesModerator([RuleSpec("weapons", patterns=(r"\bNerve Agent\b",))])
        assert moderator.categories_in("Nerve Agent") == ("weapons",)

    def test_several_leading_flag_groups_compile(self) -> None:
        # Accepted by policy validation, so the moderator must be buildable from it.
        policy = rules_policy([{"category": "weapons", "patterns": [r"(?i)(?s)\bbomb\b"]}])
        moderator = RulesModerator(policy.moderation.rules)
        assert moderator.categories_in("a BOMB") == ("weapons",)

    def test_same_group_name_in_two_rules(self) -> None:
        # Each pattern is valid alone; combining them must not break on a shared group name.
        policy = rules_policy(
            [
                {"category": "weapons", "patterns": [r"(?P<verb>build|make) a bomb"]},
                {"category": "drugs", "patterns": [r"(?P<verb>cook|make) meth"]},
            ]
        )
        moderator = RulesModerator(policy.moderation.rules)
        assert moderator.categories_in("how to make meth") == ("drugs",)
        assert moderator.categories_in("how to build a bomb") == ("weapons",)

    @pytest.mark.parametrize(
        ("pattern", "text"),
        [
            (r"(?i)(?P<verb>build|make) an? bomb", "How to MAKE a bomb"),
            (r"(?i)\b(?P<word>\w+) (?P=word)\b", "Kill KILL"),
        ],
    )
    def test_named_groups_with_ignorecase(self, pattern: str, text: str) -> None:
        # Valid Python regexes accepted by policy validation must build and match.
        policy = rules_policy([{"category": "weapons", "patterns": [pattern]}])
        assert RulesModerator(policy.moderation.rules).categories_in(text) == ("weapons",)

    def test_overlapping_patterns_flag_both_categories(self) -> None:
        # A later rule's category must not be hidden because an earlier rule's pattern
        # matched the same stretch of text (the later one may carry the stricter action).
        moderator = RulesModerator(
            [
                RuleSpec("chatter", action="log", patterns=(r"(?i)\bhow to build a \w+",)),
                RuleSpec("weapons", action="block", patterns=(r"(?i)\bbomb\b",)),
            ]
        )
        assert moderator.categories_in("how to build a bomb") == ("chatter", "weapons")

    def test_numbered_backreference_in_a_later_rule(self) -> None:
        # r"(\w)\1" (a doubled letter) must mean the same inside the combined matcher.
        moderator = RulesModerator(
            [
                RuleSpec("first", patterns=(r"(x)yz",)),
                RuleSpec("doubled", patterns=(r"\b(\w+) \1\b",)),
            ]
        )
        assert moderator.categories_in("kill kill") == ("doubled",)
        assert moderator.categories_in("kill them") == ()


# -- verdicts --------------------------------------------------------------------------


class TestVerdicts:
    def test_clean_text(self, moderator: RulesModerator) -> None:
        verdict = moderator.moderate("What is the capital of France?")
        assert verdict == Verdict(flagged=False, categories=(), moderator="rules")
        assert not verdict.flagged

    def test_flagged_text(self, moderator: RulesModerator) -> None:
        verdict = moderator.moderate("build a bomb")
        assert verdict.flagged
        assert verdict.categories == ("weapons",)
        assert verdict.moderator == "rules"
        assert "weapons" in verdict.explanation

    def test_several_categories_in_rule_order(self, moderator: RulesModerator) -> None:
        # The text mentions them in the reverse order of the rules.
        text = "I want to hurt myself, damn it, so I'll build a bomb"
        assert moderator.moderate(text).categories == ("weapons", "profanity", "self_harm")

    def test_two_rules_of_one_category_report_it_once(self) -> None:
        moderator = RulesModerator(
            [RuleSpec("a", keywords=("one",)), RuleSpec("b", keywords=("two",)), RuleSpec("a", patterns=("three",))]
        )
        assert moderator.moderate("three two one").categories == ("a", "b")

    def test_verdict_explanation_does_not_echo_the_text(self, moderator: RulesModerator) -> None:
        verdict = moderator.moderate("my password is hunter2 and I will build a bomb")
        assert "hunter2" not in verdict.explanation

    @pytest.mark.parametrize("text", ["", "   ", "clean words", "class", "build a bomb; damn"])
    def test_amoderate_equals_moderate(self, moderator: RulesModerator, text: str) -> None:
        assert asyncio.run(moderator.amoderate(text)) == moderator.moderate(text)

    def test_is_a_moderator(self, moderator: RulesModerator) -> None:
        assert isinstance(moderator, Moderator)
        assert RulesModerator([WEAPONS], name="local").moderate("pipe bomb").moderator == "local"

    def test_no_rules_flags_nothing(self) -> None:
        assert RulesModerator([]).moderate("pipe bomb") == Verdict.clean("rules")

    def test_built_from_a_policy(self) -> None:
        policy = rules_policy(
            [
                {"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]},
                {"category": "weapons", "patterns": [r"(?i)\bbuild (a|an) (bomb|explosive)\b"]},
                {"category": "spam", "action": "log", "keywords": ["buy now"]},
            ]
        )
        moderator = RulesModerator(policy.moderation.rules)
        assert moderator.moderate("Nerve  Agent Synthesis").categories == ("weapons",)
        assert moderator.moderate("BUY NOW and build an explosive").categories == ("weapons", "spam")
        assert not moderator.moderate("buy nowhere").flagged


# -- many rules ------------------------------------------------------------------------


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(7))


@pytest.fixture(scope="module")
def many() -> tuple[RulesModerator, list[RuleSpec]]:
    """1,000 rules: 995 generated keywords and 5 patterns, compiled once for the module."""
    rng = random.Random(1234)
    rules = [RuleSpec(f"kw{i:04d}", keywords=(f"{_word(rng)} {i:04d}",)) for i in range(995)]
    rules += [RuleSpec(f"re{j}", patterns=(rf"(?i)\bzz{j}q+\b",)) for j in range(5)]
    return RulesModerator(rules), rules


class TestThousandRules:
    def _filler(self, size: int) -> str:
        rng = random.Random(99)
        words: list[str] = []
        while len(" ".join(words)) < size:
            words.append(rng.choice(["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and"]))
        return " ".join(words)

    def test_thousand_rules_find_the_right_categories(self, many: tuple[RulesModerator, list[RuleSpec]]) -> None:
        moderator, rules = many
        assert len(rules) == 1000
        hits = [rules[7], rules[500], rules[994]]
        text = self._filler(1000)
        middle = len(text) // 2
        text = (
            text[:200]
            + f" {hits[2].keywords[0].upper()} "
            + text[200:middle]
            + f" {hits[0].keywords[0]} ZZ3QQQ "
            + text[middle:]
            + f" {hits[1].keywords[0]}"
        )
        assert 1000 <= len(text) <= 1200
        assert moderator.categories_in(text) == ("kw0007", "kw0500", "kw0994", "re3")

    def test_thousand_rules_clean_and_near_misses(self, many: tuple[RulesModerator, list[RuleSpec]]) -> None:
        moderator, rules = many
        keyword = rules[42].keywords[0]
        near = f"{keyword}5 x{keyword} zz3 zz9q"  # longer word, prefixed word, pattern without q, unknown pattern
        assert moderator.categories_in(self._filler(1000)) == ()
        assert moderator.categories_in(near) == ()
        assert moderator.moderate(near) == Verdict.clean("rules")

    def test_rules_compile_once(
        self, monkeypatch: pytest.MonkeyPatch, many: tuple[RulesModerator, list[RuleSpec]]
    ) -> None:
        moderator, rules = many

        def no_compile(*args: object, **kwargs: object) -> None:
            raise AssertionError("a rule was compiled while moderating")

        monkeypatch.setattr(re, "compile", no_compile)
        monkeypatch.setattr(re2, "compile", no_compile)
        monkeypatch.setattr("aupguard.moderation.rules.ahocorasick.Automaton", no_compile)
        for _ in range(3):
            assert moderator.categories_in(f"hello {rules[3].keywords[0]} zz1qq") == ("kw0003", "re1")


# -- policy validation -----------------------------------------------------------------


class TestRulesValidation:
    @pytest.mark.parametrize(
        ("rules", "key"),
        [
            ([{"category": "a", "action": "ban", "keywords": ["x"]}], "moderation.rules[0].action"),
            (
                [{"category": "a", "keywords": ["x"]}, {"action": "block", "keywords": ["y"]}],
                "moderation.rules[1].category",
            ),
            ([{"category": "", "keywords": ["x"]}], "moderation.rules[0].category"),
            ([{"category": "a"}], "moderation.rules[0].keywords"),
            ([{"category": "a", "keywords": [], "patterns": []}], "moderation.rules[0].keywords"),
            ([{"category": "a", "keywords": "bomb"}], "moderation.rules[0].keywords"),
            ([{"category": "a", "keywords": ["ok", " "]}], "moderation.rules[0].keywords"),
            (
                [
                    {"category": "a", "keywords": ["x"]},
                    {"category": "b", "keywords": ["y"]},
                    {"category": "c", "patterns": ["(unclosed"]},
                ],
                "moderation.rules[2].patterns",
            ),
            ([{"category": "a", "patterns": ["[a-"]}], "moderation.rules[0].patterns"),
            ([{"category": "a", "keywords": ["x"], "regex": ["y"]}], "moderation.rules[0].regex"),
            (["not a table"], "moderation.rules[0]"),
        ],
    )
    def test_bad_rules_name_the_key(self, rules: list[Any], key: str) -> None:
        with pytest.raises(PolicyError) as info:
            rules_policy(rules)
        assert info.value.key == key
        assert key in str(info.value)

    def test_rules_must_be_an_array(self) -> None:
        with pytest.raises(PolicyError) as info:
            Policy.from_mapping({"moderation": {"rules": {"category": "a"}}}, env={})
        assert info.value.key == "moderation.rules"

    def test_keyword_that_normalises_to_nothing_is_refused(self) -> None:
        # A keyword of only zero-width characters can never match; it must be a policy error,
        # not a crash when the moderator is built.
        with pytest.raises(PolicyError) as info:
            rules_policy([{"category": "a", "keywords": ["\u200b"]}])
        assert info.value.key == "moderation.rules[0].keywords"

    def test_valid_rules_load_with_defaults(self) -> None:
        policy = rules_policy(
            [{"category": "weapons", "keywords": ["x"]}, {"category": "spam", "action": "log", "patterns": ["y"]}]
        )
        assert policy.moderation.rules == (
            RuleSpec("weapons", "block", ("x",), ()),
            RuleSpec("spam", "log", (), ("y",)),
        )


# -- normalize -------------------------------------------------------------------------


class TestNormalizeExamples:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("  Hello   World \n", "hello world"),
            ("Ｈｅｌｌｏ", "hello"),
            ("he\u200bl\u200cl\u200do\u2060\ufeff", "hello"),
            ("sof\u00adt", "soft"),
            ("hеllо", "hello"),  # Cyrillic е and о
            ("ΑΒΕ", "abe"),  # Greek capitals fold to Greek small letters, then to Latin
            ("STRASSE straße", "strasse strasse"),
            ("a\u00a0b\u3000c", "a b c"),  # no-break and ideographic spaces
            ("", ""),
        ],
    )
    def test_examples(self, text: str, expected: str) -> None:
        assert normalize(text) == expected


@given(st.text())
@example("а\u030a")  # Cyrillic а + combining ring: folds to Latin a, which then composes to å
@example("a\u200b\u0301")  # a zero-width space between a letter and its accent
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@given(st.text())
def test_normalize_has_no_outer_whitespace_nor_runs(text: str) -> None:
    out = normalize(text)
    assert out == out.strip()
    assert "  " not in out
    assert all(not ch.isspace() or ch == " " for ch in out)


@given(st.text(alphabet=st.characters() | st.sampled_from(ZERO_WIDTH)))
def test_normalize_removes_zero_width_characters(text: str) -> None:
    out = normalize(text)
    assert not any(ch in ZERO_WIDTH for ch in out)


@given(st.text(alphabet=st.characters(max_codepoint=127)), st.sampled_from(ZERO_WIDTH))
def test_ascii_fast_path_matches_general_path(text: str, zero_width: str) -> None:
    # A zero-width character forces the general (non-ASCII) path and is then removed.
    assert normalize(text + zero_width) == normalize(text)
    assert normalize(zero_width + text) == normalize(text)


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_is_lowercased_and_collapsed(text: str) -> None:
    # punctuation, symbols and control characters read as spaces, so "nerve-agent",
    # "nerve/agent" or "nerve+agent" matches the keyword "nerve agent"
    spaced = "".join(" " if unicodedata.category(ch)[0] in "PSC" else ch for ch in text.lower())
    assert normalize(text) == " ".join(spaced.split())


@pytest.mark.parametrize(
    "evasion",
    ["bo\u0301mb", "b\u0336o\u0336m\u0336b\u0336", "b\u0585mb", "\u0299omb", "bo\ufe0fmb",
     "b\u034fomb", "bo\U000e0041mb", "BO\u0308MB"],
)  # fmt: skip
def test_more_unicode_evasions_are_caught(evasion: str) -> None:
    moderator = RulesModerator([RuleSpec("weapons", "block", ("bomb",))])
    assert moderator.moderate(f"how to make a {evasion} at home").categories == ("weapons",)


def test_separators_inside_a_keyword_are_caught() -> None:
    moderator = RulesModerator([RuleSpec("weapons", "block", ("nerve agent synthesis",))])
    for text in ["nerve-agent synthesis", "nerve_agent_synthesis", "nerve.agent.synthesis"]:
        assert moderator.moderate(text).flagged, text


def test_a_match_after_many_failed_candidates_is_still_found() -> None:
    # many near misses before the match (once quadratic with re's candidate re-scans): found
    # in one linear scan
    moderator = RulesModerator([RuleSpec("weapons", "block", (), (r"\bx+ bomb",))])
    assert moderator.moderate("ax bomb " * 20 + "and then x bomb").flagged
    assert not moderator.moderate("ax bomb " * 20).flagged


def test_a_filler_that_renders_as_a_blank_is_a_space() -> None:
    """What a reader sees: ``nerveㅤagent`` is two words (to the rules, and to Claude, who is
    given the cleaned text); ``bㅤomb`` reads as ``b omb``, letters spaced out, which keyword
    rules do not catch (docs/moderation.md says so)."""
    from aupguard.normalize import clean

    assert clean("nerve\u3164agent") == "nerve agent" and clean("a\u2800b") == "a b"
    assert normalize("nerve\u3164agent \u2800x") == "nerve agent x"
    moderator = RulesModerator([RuleSpec("weapons", "block", ("nerve agent",))])
    assert moderator.moderate(clean("the nerve\u3164agent")).flagged

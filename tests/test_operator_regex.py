"""Operator regexes on a linear-time engine: rules, allowlist patterns and template variable
patterns run on RE2 with Python's meaning; what needs ``re`` is refused at load when its shape
backtracks exponentially. Nothing here is timed: each test checks the engine a pattern got,
or that ``re`` is not used at all while matching."""

from __future__ import annotations

import re
from typing import Any

import pytest
import re2
from hypothesis import given
from hypothesis import strategies as st

from aupguard import Policy, PolicyError
from aupguard.engine.prompt_policy import PromptPolicy, PromptRequest, ResolvedPrompt
from aupguard.moderation import RulesModerator
from aupguard.operator_regex import compile_operator_regex

# `(a+)+$` took 31 s on a 29-character prompt with `re`; each `a` more doubles it
EVIL = r"(a+)+$"
ADVERSARIAL = "a" * 64 + "b"  # not punctuation: the normal form reads that as a space


def load(tables: dict[str, Any]) -> Policy:
    return Policy.from_mapping(tables, env={})


def refusal(tables: dict[str, Any]) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        load(tables)
    return info.value


def forbid_re(monkeypatch: pytest.MonkeyPatch) -> None:
    """``re`` may not compile or run a pattern from here on: matching must happen on RE2."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("re ran an operator pattern")

    for name in ("compile", "search", "match", "fullmatch"):
        monkeypatch.setattr(re, name, refuse)


def test_a_catastrophic_rule_pattern_runs_on_re2(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = load({"moderation": {"rules": [{"category": "spam", "patterns": [EVIL]}]}})
    moderator = RulesModerator(policy.moderation.rules)
    forbid_re(monkeypatch)
    [(pattern, _)] = moderator._patterns
    assert pattern.engine == "re2" and isinstance(pattern.compiled, re2._Regexp)
    assert not moderator.moderate(ADVERSARIAL).flagged
    assert moderator.moderate("aaaa").flagged


def test_a_catastrophic_allowlist_pattern_runs_on_re2(monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = PromptPolicy(load({"prompts": {"mode": "allowlist", "allowlist_patterns": [EVIL]}}).prompts)
    forbid_re(monkeypatch)
    [pattern] = prompts._patterns
    assert pattern.engine == "re2" and isinstance(pattern.compiled, re2._Regexp)
    assert not isinstance(prompts.resolve(PromptRequest(text=ADVERSARIAL)), ResolvedPrompt)
    assert isinstance(prompts.resolve(PromptRequest(text="aaa")), ResolvedPrompt)


def test_a_catastrophic_template_variable_pattern_runs_on_re2(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {
        "mode": "templates",
        "templates": {"t": {"text": "About {v}.", "variables": {"v": {"type": "string", "pattern": EVIL}}}},
    }
    prompts = PromptPolicy(load({"prompts": table}).prompts)
    forbid_re(monkeypatch)
    adversarial = prompts.resolve(PromptRequest(template="t", variables={"v": "a" * 60 + "!"}))
    assert not isinstance(adversarial, ResolvedPrompt) and "does not match its pattern" in adversarial.message
    assert isinstance(prompts.resolve(PromptRequest(template="t", variables={"v": "aaa"})), ResolvedPrompt)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a+)+\1", "a repetition inside a repeated group"),
        (r"((a|a)*)\2", "an alternation inside a repeated group"),
        (r"(?=x)(\w+\s?)*$", "a repetition inside a repeated group"),  # lookaround
        (r"(?<!x)(a*)*b", "a repetition inside a repeated group"),
        (r"\b(a+)+\b", "a repetition inside a repeated group"),  # \b runs on re for text beyond ASCII
    ],
)
def test_a_backtracking_only_pattern_with_a_catastrophic_shape_is_refused_at_load(pattern: str, why: str) -> None:
    rules = refusal(
        {"moderation": {"rules": [{"category": "a", "keywords": ["x"]}, {"category": "b", "patterns": [pattern]}]}}
    )
    assert rules.key == "moderation.rules[1].patterns"
    assert why in str(rules) and "backtracking" in str(rules)
    allowlist = refusal({"prompts": {"allowlist_patterns": ["ok", pattern]}})
    assert allowlist.key == "prompts.allowlist_patterns" and why in str(allowlist)
    variable = {"type": "string", "pattern": pattern}
    table = {"mode": "templates", "templates": {"t": {"text": "{v}", "variables": {"v": variable}}}}
    assert refusal({"prompts": table}).key == "prompts.templates.t.variables.v.pattern"


@pytest.mark.parametrize(
    "pattern",
    [r"\b(\w+) \1\b", r"(?P<w>\w+) (?P=w)", r"(?<=kill )them", r"(?x) build \s+ bomb", r"a{1001}"],
)
def test_patterns_re2_cannot_run_but_safe_in_shape_still_load_on_re(pattern: str) -> None:
    load({"moderation": {"rules": [{"category": "a", "patterns": [pattern]}]}})
    assert compile_operator_regex(pattern, ignore_case=True).engine == "re"


def test_re_runs_only_what_needs_it() -> None:
    for pattern in [EVIL, r"(a|a)*b", r"\bbuild (a|an) (bomb|explosive)\b", r"(?i)(?s)^start.*end$", r"[\w-]+@x"]:
        assert compile_operator_regex(pattern, ignore_case=True).engine == "re2", pattern


# -- the meaning stays Python's -----------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "python"),
    [
        (r"\bNerve Agent\b", "nerve agent", True),  # case-insensitive with capitals in the pattern
        (r"\bbomb\b", "a bombe", False),
        (r"\bбомба\b", "а бомба!", True),  # RE2's \b is ASCII-only: Cyrillic text goes to re
        (r"\bбомба\b", "абомба", False),
        (r"\bbomb\b", "бомба bomb", True),
        (r"\bbomb", "жbomb", False),  # a Cyrillic letter is a word character to Python
        (r"^\w+$", "日本語", True),  # \w is Unicode
        (r"^\d+$", "١٢٣", True),  # \d is Unicode
        (r"^a\sb$", "a\u00a0b", True),  # \s is Unicode
        (r"^[\w]+$", "héllo", True),
        (r"x\Z", "x", True),
        (r"^a{,2}b$", "aab", True),  # {,n} means {0,n} in Python, a literal to RE2
        (r"^a{,2}b$", "a{,2}b", False),
        (r"^[[:alpha:]]$", "a", False),  # a literal [ in a class for Python, a class to RE2
        (r"(?u)^x$", "x", True),
        (r"\u00e9t\N{LATIN SMALL LETTER E WITH ACUTE}", "été", True),
    ],
)
@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")
def test_re2_answers_as_python_would(pattern: str, text: str, python: bool) -> None:
    assert bool(re.search(pattern, text, re.IGNORECASE)) is python  # the test's own premise
    assert compile_operator_regex(pattern, ignore_case=True).search(text) is python


def test_fullmatch_is_the_whole_text() -> None:
    allowlist = PromptPolicy(load({"prompts": {"mode": "allowlist", "allowlist_patterns": [r"what is \w+"]}}).prompts)
    assert isinstance(allowlist.resolve(PromptRequest(text="What is Python")), ResolvedPrompt)
    assert not isinstance(allowlist.resolve(PromptRequest(text="what is python and then a bomb")), ResolvedPrompt)
    assert not isinstance(allowlist.resolve(PromptRequest(text="so what is python")), ResolvedPrompt)


def test_template_variable_patterns_stay_case_sensitive() -> None:
    variable = {"type": "string", "pattern": "[a-z]+"}
    table = {"mode": "templates", "templates": {"t": {"text": "{v}", "variables": {"v": variable}}}}
    prompts = PromptPolicy(load({"prompts": table}).prompts)
    assert isinstance(prompts.resolve(PromptRequest(template="t", variables={"v": "abc"})), ResolvedPrompt)
    assert not isinstance(prompts.resolve(PromptRequest(template="t", variables={"v": "ABC"})), ResolvedPrompt)


PATTERNS = [
    r"\bbomb\b", r"\b\w+ bomb", r"^\w+$", r"\d{2,}", r"(a|b)+c", r"[^\w\s]", r"\Bomb", r"x\s*y", r"(?i)ΑΒ",
    r"^(ab|a)*$", r"\bба", r"[а-я]+\d", r".b.", r"_\w",
]  # fmt: skip
TEXTS = st.text(alphabet="abxyomc AB_12١٢\u00a0\tбажΑΒ日本-!.", max_size=20)


@given(text=TEXTS)
def test_every_sample_pattern_agrees_with_python_on_any_text(text: str) -> None:
    for pattern in PATTERNS:
        expected = re.search(pattern, text, re.IGNORECASE) is not None
        assert compile_operator_regex(pattern, ignore_case=True).search(text) is expected, (pattern, text)
        whole = re.fullmatch(pattern, text) is not None
        assert compile_operator_regex(pattern, ignore_case=False).fullmatch(text) is whole, (pattern, text)

"""The ``[prompts]`` and ``[moderation]`` policy tables: their frozen objects and parsers.

Nested values (rules, templates, variables) are checked where they are read, and a bad one
raises :class:`PolicyError` naming the full path, e.g. ``moderation.rules[2].action``.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..durations import DURATION_HELP, parse_duration
from ..errors import PolicyError
from ..normalize import normalize
from ..operator_regex import compile_operator_regex
from .moderators import (
    ClaudeExample,
    ClaudeModeration,
    GuardModeration,
    OpenAIModeration,
    _claude,
    _fields_of,
    _guards,
    _openai,
    _table,
)
from .values import Refused, count, fail
from .values import boolean as _bool
from .values import choice as _choice
from .values import text as _text

__all__ = [
    "ACTIONS",
    "MODERATION_FIELDS",
    "PROMPTS_FIELDS",
    "ClaudeExample",
    "ClaudeModeration",
    "GuardModeration",
    "ModerationPolicy",
    "OpenAIModeration",
    "PromptsPolicy",
    "RuleSpec",
    "TemplateSpec",
    "VariableSpec",
]

ACTIONS = ("block", "review", "warn", "log")  # most to least severe
PROMPT_MODES = ("open", "allowlist", "templates", "corpus")
MODERATION_MODES = ("before", "parallel", "off")
VARIABLE_TYPES = ("string", "enum", "integer")


@dataclass(frozen=True, slots=True)
class VariableSpec:
    type: str
    max_length: int = 200
    pattern: str | None = None
    values: tuple[str, ...] = ()
    min: int | None = None
    max: int | None = None


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    id: str
    text: str
    variables: Mapping[str, VariableSpec] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PromptsPolicy:
    mode: str = "open"
    allowlist: tuple[str, ...] = ()
    allowlist_patterns: tuple[str, ...] = ()
    templates: Mapping[str, TemplateSpec] = field(default_factory=dict)
    corpus: str | None = None
    max_length: int = 32_000
    # allowlist / templates / corpus: the client's own system prompt and tools, and its earlier
    # turns, are refused unless allowed here (then screened like any end-user text)
    allow_system: bool = False
    allow_history: bool = False


@dataclass(frozen=True, slots=True)
class RuleSpec:
    category: str
    action: str = "block"
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModerationPolicy:
    mode: str = "before"
    scope: str = "request"  # request: every piece of the body; last_turn: the last user message only
    max_text: int = 1_000_000  # characters of end-user text a request may carry to remote moderators
    fail: str = "closed"
    timeout: float = 2.0
    retries: int = 0
    cache_ttl: float = 600.0
    output: bool = False
    refusals: str = "review"  # Claude's own refusals: review | strike | log
    default_action: str = "block"
    actions: Mapping[str, str] = field(default_factory=dict)  # category -> action, for remote moderators
    rules: tuple[RuleSpec, ...] = ()
    claude: ClaudeModeration | None = None
    openai: OpenAIModeration | None = None
    guard: tuple[GuardModeration, ...] = ()  # self-hosted guard models, in the order given

    def action_for(self, categories: tuple[str, ...]) -> str:
        """The most severe action among the categories' actions."""
        found = [self.actions.get(c, self.default_action) for c in categories] or [self.default_action]
        return min(found, key=ACTIONS.index)


# -- parsers ---------------------------------------------------------------------------

_count = count(10_000_000)


def _texts(value: object) -> tuple[str, ...]:
    if isinstance(value, list | tuple) and all(isinstance(v, str) and v.strip() for v in value):
        return tuple(value)
    raise ValueError


def _regexes(value: object, *, ignore_case: bool = True) -> tuple[str, ...]:
    """Patterns compiled as they will run (:mod:`aupguard.operator_regex`): a shape that
    would backtrack exponentially is refused here, with the reason."""
    patterns = _texts(value)
    for p in patterns:
        try:
            compiled = compile_operator_regex(p, ignore_case=ignore_case)
        except ValueError as exc:
            raise Refused(f"{p!r}: {exc}") from None
        if compiled.search(""):  # it would match (or flag) every text
            raise ValueError
    return patterns


def _keywords(value: object) -> tuple[str, ...]:
    words = _texts(value)
    if not all(normalize(w) for w in words):  # e.g. only zero-width characters
        raise ValueError
    return words


_RULE_KEYS = {
    "category": (_text, "a category name"),
    "action": (_choice(ACTIONS), " | ".join(ACTIONS)),
    "keywords": (_keywords, "a list of keywords with visible characters"),
    "patterns": (_regexes, "a list of valid regular expressions that cannot match empty text"),
}


def _rules(value: object) -> tuple[RuleSpec, ...]:
    if not isinstance(value, list):
        raise ValueError
    rules = []
    for i, item in enumerate(value):
        key = f"moderation.rules[{i}]"
        got = _fields_of(key, _table(item, key), _RULE_KEYS)
        if "category" not in got:
            raise PolicyError(f"{key}.category", None, "a category name (required)")
        if not got.get("keywords") and not got.get("patterns"):
            raise PolicyError(f"{key}.keywords", None, "at least one keyword or pattern")
        rules.append(RuleSpec(**got))
    return tuple(rules)


def _actions(value: object) -> Mapping[str, str]:
    table = _table(value, "moderation.actions")
    for category, action in table.items():
        if action not in ACTIONS:
            raise PolicyError(f"moderation.actions.{category}", action, " | ".join(ACTIONS))
    return MappingProxyType(dict(table))


_VARIABLE_KEYS = {
    "type": (_choice(VARIABLE_TYPES), " | ".join(VARIABLE_TYPES)),
    "max_length": (_count, "an integer from 1"),
    "pattern": (lambda v: _regexes([v], ignore_case=False)[0], "a valid regular expression"),
    "values": (_texts, "a list of allowed strings"),
    "min": (lambda v: v if isinstance(v, int) and not isinstance(v, bool) else fail(), "an integer"),
    "max": (lambda v: v if isinstance(v, int) and not isinstance(v, bool) else fail(), "an integer"),
}


def _templates(value: object) -> Mapping[str, TemplateSpec]:
    table = _table(value, "prompts.templates")
    out: dict[str, TemplateSpec] = {}
    for template_id, spec in table.items():
        key = f"prompts.templates.{template_id}"
        spec = _table(spec, key)
        text = spec.get("text")
        if not isinstance(text, str) or not text.strip():
            raise PolicyError(f"{key}.text", text, "the template text with {placeholders}")
        unknown = set(spec) - {"text", "variables"}
        if unknown:
            raise PolicyError(
                f"{key}.{sorted(unknown)[0]}", spec[sorted(unknown)[0]], "one of the keys text, variables"
            )
        variables: dict[str, VariableSpec] = {}
        for name, var in _table(spec.get("variables", {}), f"{key}.variables").items():
            got = _fields_of(f"{key}.variables.{name}", _table(var, f"{key}.variables.{name}"), _VARIABLE_KEYS)
            if "type" not in got:
                raise PolicyError(f"{key}.variables.{name}.type", None, " | ".join(VARIABLE_TYPES) + " (required)")
            if got.get("min") is not None and got.get("max") is not None and got["min"] > got["max"]:
                raise PolicyError(f"{key}.variables.{name}.max", got["max"], f"an integer >= min ({got['min']})")
            if got["type"] == "enum" and not got.get("values"):
                raise PolicyError(f"{key}.variables.{name}.values", None, "the allowed values of an enum (required)")
            variables[name] = VariableSpec(**got)
        try:
            placeholders = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        except ValueError:
            raise PolicyError(f"{key}.text", text, "a text whose braces form {placeholders}") from None
        missing = placeholders - set(variables)
        if missing:
            raise PolicyError(
                f"{key}.text", text, f"placeholders that are all declared variables ({sorted(missing)[0]} is not)"
            )
        out[str(template_id)] = TemplateSpec(str(template_id), text, MappingProxyType(variables))
    return MappingProxyType(out)


PROMPTS_FIELDS: dict[str, tuple[Callable[[object], Any], str]] = {
    "mode": (_choice(PROMPT_MODES), " | ".join(PROMPT_MODES)),
    "allowlist": (_texts, "a list of allowed prompts"),
    "allowlist_patterns": (_regexes, "a list of valid regular expressions (full match) that cannot match empty text"),
    "templates": (_templates, "a table of templates: id = {text = ..., variables = {...}}"),
    "corpus": (_text, "a folder of documents or a JSONL file of {id, text}"),
    "max_length": (_count, "an integer from 1 (characters in a prompt)"),
    "allow_system": (_bool, "true or false"),
    "allow_history": (_bool, "true or false"),
}

MODERATION_FIELDS: dict[str, tuple[Callable[[object], Any], str]] = {
    "mode": (_choice(MODERATION_MODES), " | ".join(MODERATION_MODES)),
    "scope": (_choice(("request", "last_turn")), "request | last_turn"),
    "max_text": (_count, "an integer from 1 (characters of end-user text in one request)"),
    "fail": (_choice(("open", "closed")), "open | closed"),
    "timeout": (parse_duration, DURATION_HELP),
    "retries": (lambda v: v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 3 else fail(), "0 to 3"),
    "cache_ttl": (parse_duration, DURATION_HELP),
    "output": (_bool, "true or false"),
    "refusals": (_choice(("review", "strike", "log")), "review | strike | log"),
    "default_action": (_choice(ACTIONS), " | ".join(ACTIONS)),
    "actions": (_actions, "a table of category = action"),
    "rules": (_rules, "an array of tables [[moderation.rules]]"),
    "claude": (_claude, "a table [moderation.claude]"),
    "openai": (_openai, "a table [moderation.openai]"),
    "guard": (_guards, "a table [moderation.guard] or an array of tables [[moderation.guard]]"),
}

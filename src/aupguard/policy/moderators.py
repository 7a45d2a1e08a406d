"""The remote moderators' policy tables: ``[moderation.claude]`` (with its categories,
examples and risk levels), ``[moderation.openai]`` and ``[moderation.guard]``.

Each table is checked where it is read, and a bad value raises :class:`PolicyError`
naming the full key, e.g. ``moderation.guard[1].format``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import PolicyError
from .values import allowed_and_why, http_url
from .values import boolean as _bool
from .values import text as _text

__all__ = [
    "GUARD_FORMATS",
    "SCORED_FORMATS",
    "ClaudeExample",
    "ClaudeModeration",
    "GuardModeration",
    "OpenAIModeration",
]

#: the guard-model answer formats (``aupguard.moderation.guard_formats`` reads each)
GUARD_FORMATS = ("llama-guard-3", "llama-guard-4", "shieldgemma", "gpt-oss-safeguard", "qwen3guard", "granite-guardian")
#: formats whose answer starts with a yes/no token a server can give a probability for
SCORED_FORMATS = frozenset({"llama-guard-3", "llama-guard-4", "shieldgemma", "granite-guardian"})

_NO_MAP: Mapping[str, str] = MappingProxyType({})
#: names the chain gives its other moderators: a guard model may not take one
_TAKEN_NAMES = ("rules", "claude", "openai")


@dataclass(frozen=True, slots=True)
class ClaudeExample:
    """A few-shot example for the Claude moderator: a text and whether it is allowed."""

    text: str
    allowed: bool
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClaudeModeration:
    model: str = "claude-haiku-4-5"
    api_key_env: str = "ANTHROPIC_API_KEY"
    base_url: str | None = None
    categories: Mapping[str, str] | None = None  # name -> definition; None: the built-in ones
    examples: tuple[ClaudeExample, ...] = ()
    risk_levels: bool = False


@dataclass(frozen=True, slots=True)
class OpenAIModeration:
    url: str
    api_key_env: str | None = None
    model: str | None = "omni-moderation-latest"
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class GuardModeration:
    url: str
    model: str
    format: str
    api_key_env: str | None = None
    threshold: float | None = None
    categories: Mapping[str, str] = field(default_factory=lambda: _NO_MAP)  # model code -> aupguard category
    policy: str | None = None  # gpt-oss-safeguard only
    name: str = ""  # default: the format


def _table(value: object, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError(key, value, "a table")
    return value


def _fields_of(
    key: str, table: Mapping[str, Any], specs: Mapping[str, tuple[Callable[[object], Any], str]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in table.items():
        if name not in specs:
            raise PolicyError(f"{key}.{name}", raw, f"one of the keys {', '.join(specs)}")
        parse, allowed = specs[name]
        try:
            out[name] = parse(raw)
        except PolicyError:
            raise
        except ValueError as exc:
            raise PolicyError(f"{key}.{name}", raw, allowed_and_why(allowed, exc)) from None
    return out


def _names(value: object) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value):
        return tuple(value)
    raise ValueError


def _text_table(value: object) -> Mapping[str, str]:
    """A table of non-empty names to non-empty texts."""
    if not isinstance(value, Mapping) or not value:
        raise ValueError
    if not all(isinstance(k, str) and k.strip() and isinstance(v, str) and v.strip() for k, v in value.items()):
        raise ValueError
    return MappingProxyType(dict(value))


def _threshold(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1:
        return float(value)
    raise ValueError


_EXAMPLE_KEYS = {
    "text": (_text, "the example text"),
    "allowed": (_bool, "true or false"),
    "categories": (_names, "a list of category names (for a text that is not allowed)"),
}


def _examples(value: object) -> tuple[ClaudeExample, ...]:
    if not isinstance(value, list):
        raise ValueError
    out = []
    for i, item in enumerate(value):
        key = f"moderation.claude.examples[{i}]"
        got = _fields_of(key, _table(item, key), _EXAMPLE_KEYS)
        for required in ("text", "allowed"):
            if required not in got:
                raise PolicyError(f"{key}.{required}", None, f"{_EXAMPLE_KEYS[required][1]} (required)")
        if got["allowed"] and got.get("categories"):
            raise PolicyError(f"{key}.categories", got["categories"], "no categories for an allowed example")
        out.append(ClaudeExample(**got))
    return tuple(out)


def _claude(value: object) -> ClaudeModeration:
    specs = {
        "model": (_text, "a Claude model id"),
        "api_key_env": (_text, "an environment variable name"),
        "base_url": (http_url("moderation.claude.base_url", "an http(s) URL"), "an http(s) URL"),
        "categories": (_text_table, "a table of category = definition (at least one)"),
        "examples": (_examples, "an array of tables [[moderation.claude.examples]] with text and allowed"),
        "risk_levels": (_bool, "true or false"),
    }
    got = _fields_of("moderation.claude", _table(value, "moderation.claude"), specs)
    known = got.get("categories")
    for i, example in enumerate(got.get("examples", ())):
        unknown = [c for c in example.categories if known is not None and c not in known]
        if unknown:
            raise PolicyError(
                f"moderation.claude.examples[{i}].categories",
                unknown[0],
                "a category of [moderation.claude.categories]",
            )
    return ClaudeModeration(**got)


_OPENAI_URL = http_url("moderation.openai.url", "the full URL of a /v1/moderations endpoint")


def _openai(value: object) -> OpenAIModeration:
    specs = {
        "url": (_OPENAI_URL, "the full URL of a /v1/moderations endpoint"),
        "api_key_env": (_text, "an environment variable name"),
        "model": (_text, "a moderation model id"),
        "threshold": (_threshold, "a score in (0, 1]"),
    }
    got = _fields_of("moderation.openai", _table(value, "moderation.openai"), specs)
    if "url" not in got:
        raise PolicyError("moderation.openai.url", None, "the full URL of a /v1/moderations endpoint (required)")
    return OpenAIModeration(**got)


_GUARD_URL_HELP = "the full URL of a /v1/chat/completions endpoint"
_FORMAT_HELP = " | ".join(GUARD_FORMATS)


def _format(value: object) -> str:
    if value in GUARD_FORMATS:
        return str(value)
    raise ValueError


def _guard(value: object, key: str) -> GuardModeration:
    specs = {
        "url": (http_url(f"{key}.url", _GUARD_URL_HELP), _GUARD_URL_HELP),
        "model": (_text, "the model name the server serves"),
        "format": (_format, _FORMAT_HELP),
        "api_key_env": (_text, "an environment variable name"),
        "threshold": (_threshold, "a probability in (0, 1]"),
        "categories": (_text_table, "a table of model code = aupguard category"),
        "policy": (_text, "the policy text (gpt-oss-safeguard)"),
        "name": (_text, "a name for this moderator"),
    }
    got = _fields_of(key, _table(value, key), specs)
    for required in ("url", "model", "format"):
        if required not in got:
            raise PolicyError(f"{key}.{required}", None, f"{specs[required][1]} (required)")
    if "threshold" in got and got["format"] not in SCORED_FORMATS:
        scored = ", ".join(sorted(SCORED_FORMATS))
        raise PolicyError(f"{key}.threshold", got["threshold"], f"no threshold for {got['format']} (only {scored})")
    if "policy" in got and got["format"] != "gpt-oss-safeguard":
        raise PolicyError(f"{key}.policy", got["policy"], "a policy only for format gpt-oss-safeguard")
    got["name"] = got.get("name") or got["format"]
    if got["name"] in _TAKEN_NAMES:
        raise PolicyError(f"{key}.name", got["name"], f"a name other than {', '.join(_TAKEN_NAMES)}")
    return GuardModeration(**got)


def _guards(value: object) -> tuple[GuardModeration, ...]:
    """One ``[moderation.guard]`` table, or several ``[[moderation.guard]]`` run in order."""
    if isinstance(value, Mapping):
        return (_guard(value, "moderation.guard"),)
    if not isinstance(value, list) or not value:
        raise ValueError
    guards = tuple(_guard(item, f"moderation.guard[{i}]") for i, item in enumerate(value))
    seen: set[str] = set()
    for i, guard in enumerate(guards):
        if guard.name in seen:
            raise PolicyError(f"moderation.guard[{i}].name", guard.name, "a name no other guard moderator has")
        seen.add(guard.name)
    return guards

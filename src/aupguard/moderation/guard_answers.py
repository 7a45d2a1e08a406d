"""The guard models' answers, read as each model card documents them (pure): the verdict,
the model's own codes in aupguard's category names, Qwen3Guard's tier, and the score of
the first answer token (see :mod:`aupguard.moderation.guard_formats` for the table).

Drift is tolerated (whitespace, capitals, a code fence, a ``<think>`` block, text after
the verdict); anything else is unreadable (``None``), which the moderator reports as a
failure that follows ``[moderation] fail``, never as safe.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..policy.moderators import SCORED_FORMATS
from .answers import category_key, only_json_object, strip_wrapping
from .categories import DEFAULT_CATEGORIES

__all__ = ["CODES", "Reading", "categories_of", "first_token_score", "read_answer"]

_LLAMA_GUARD = {
    "S1": "violent_crimes",  # Violent Crimes
    "S2": "non_violent_crimes",  # Non-Violent Crimes
    "S3": "sex_crimes",  # Sex-Related Crimes
    "S4": "child_exploitation",  # Child Sexual Exploitation
    "S5": "defamation",  # Defamation
    "S6": "specialized_advice",  # Specialized Advice
    "S7": "privacy",  # Privacy
    "S8": "intellectual_property",  # Intellectual Property
    "S9": "indiscriminate_weapons",  # Indiscriminate Weapons
    "S10": "hate",  # Hate
    "S11": "self_harm",  # Suicide & Self-Harm
    "S12": "sexual_content",  # Sexual Content
    "S13": "election_integrity",  # Elections
    "S14": "malicious_code",  # Code Interpreter Abuse
}

#: each format's codes (as the model spells them) → aupguard's category names
CODES: Mapping[str, Mapping[str, str]] = {
    "llama-guard-3": _LLAMA_GUARD,
    "llama-guard-4": _LLAMA_GUARD,
    # one Yes/No for the published principles together: the umbrella risk
    "shieldgemma": {"harm": "harm"},
    "granite-guardian": {
        "harm": "harm",
        "social_bias": "hate",
        "jailbreak": "jailbreak",
        "violence": "violent_crimes",
        "profanity": "profanity",
        "sexual_content": "sexual_content",
        "unethical_behavior": "non_violent_crimes",
    },
    "qwen3guard": {
        "Violent": "violent_crimes",
        "Non-violent Illegal Acts": "non_violent_crimes",
        "Sexual Content or Sexual Acts": "sexual_content",
        "PII": "privacy",
        "Suicide & Self-Harm": "self_harm",
        "Unethical Acts": "unethical_acts",
        "Politically Sensitive Topics": "politically_sensitive",
        "Copyright Violation": "intellectual_property",
        "Jailbreak": "jailbreak",
    },
    # the policy names the categories; the default policy uses aupguard's own names
    "gpt-oss-safeguard": {name: name for name in DEFAULT_CATEGORIES},
}

_MAX_EXPLANATION = 500


@dataclass(frozen=True, slots=True)
class Reading:
    """What an answer says: flagged or not, the model's own codes, Qwen3Guard's tier
    (``risk_level`` 2 for Controversial, 3 for Unsafe) and the model's reason, if any."""

    flagged: bool
    codes: tuple[str, ...] = ()
    risk_level: int | None = None
    explanation: str = ""


def categories_of(format: str, codes: Sequence[str], overrides: Mapping[str, str]) -> tuple[str, ...]:
    """The codes in aupguard's names: ``overrides`` first, then the format's table; a code
    neither knows is kept as it came."""
    table = {category_key(code): name for code, name in CODES[format].items()}
    table |= {category_key(code): name for code, name in overrides.items()}
    return tuple(dict.fromkeys(table.get(category_key(code), code) for code in codes))


# -- reading answers --------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z]+")
_LLAMA_CODE = re.compile(r"\bS0*(\d{1,3})\b", re.IGNORECASE)
_GRANITE_SCORE = re.compile(r"<score>\s*(yes|no)\s*</score>", re.IGNORECASE)
_QWEN_SAFETY = re.compile(r"^\W*safety\W*:\W*(safe|unsafe|controversial)\b", re.IGNORECASE | re.MULTILINE)
_QWEN_CATEGORIES = re.compile(r"^\W*categor(?:y|ies)\W*:(.*)$", re.IGNORECASE | re.MULTILINE)
_LABEL = re.compile(r"^\W*(?:answer|label|verdict|assessment|output)\s*:\s*", re.IGNORECASE)


def read_answer(format: str, content: str) -> Reading | None:
    """What the answer ``content`` says, or None when it cannot be read."""
    text = _LABEL.sub("", strip_wrapping(content))
    if format in ("llama-guard-3", "llama-guard-4"):
        return _llama_guard(text)
    if format in ("shieldgemma", "granite-guardian"):
        return _yes_no(text)
    if format == "qwen3guard":
        return _qwen3guard(text)
    return _safeguard(text)


def _first_word(line: str) -> str:
    found = _WORD.search(line)
    return found.group(0).casefold() if found else ""


def _llama_guard(text: str) -> Reading | None:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    first = _first_word(lines[0])
    later = [_first_word(line) for line in lines[1:]]
    if first == "safe":
        # "safe" and then "unsafe": two verdicts, neither can be trusted
        return None if "unsafe" in later else Reading(False)
    if first != "unsafe":
        return None
    codes = tuple(dict.fromkeys(f"S{int(n)}" for n in _LLAMA_CODE.findall("\n".join(lines))))
    return Reading(True, codes)


def _yes_no(text: str) -> Reading | None:
    scored = _GRANITE_SCORE.findall(text)
    if scored:
        answers = {answer.casefold() for answer in scored}
        return None if len(answers) > 1 else Reading(answers == {"yes"}, ("harm",) if answers == {"yes"} else ())
    first = _first_word(text)
    if first == "yes":
        return Reading(True, ("harm",))
    return Reading(False) if first == "no" else None


def _qwen3guard(text: str) -> Reading | None:
    tiers = {match.casefold() for match in _QWEN_SAFETY.findall(text)}
    if len(tiers) != 1:
        return None
    (tier,) = tiers
    if tier == "safe":
        return Reading(False)
    codes: list[str] = []
    for line in _QWEN_CATEGORIES.findall(text):
        for name in re.split(r"[,;，、]", line):
            name = name.strip(" \t.*`'\"")
            if name and category_key(name) != "none":
                codes.append(_known_qwen(name))
    return Reading(True, tuple(dict.fromkeys(codes)), 3 if tier == "unsafe" else 2)


def _known_qwen(name: str) -> str:
    for code in CODES["qwen3guard"]:
        if category_key(code) == category_key(name):
            return code
    return re.sub(r"[^0-9a-z]+", "_", name.casefold()).strip("_") or name


_TRUE = {"1", "true", "yes", "violation", "violating", "unsafe"}
_FALSE = {"0", "false", "no", "none", "safe", "non_violation", "nonviolation"}


def _safeguard(text: str) -> Reading | None:
    data = only_json_object(text)
    if data is None:
        return None
    raw = data.get("violation")
    if isinstance(raw, bool):
        violation = raw
    elif isinstance(raw, int) and raw in (0, 1):
        violation = raw == 1
    elif isinstance(raw, str) and raw.strip().casefold() in _TRUE | _FALSE:
        violation = raw.strip().casefold() in _TRUE
    else:
        return None
    if not violation:
        return Reading(False)
    names = data.get("categories")
    if names is None:
        single = data.get("policy_category", data.get("category"))
        names = [single] if isinstance(single, str) else []
    if not isinstance(names, list):
        return None
    rationale = data.get("rationale", data.get("explanation", ""))
    codes = tuple(dict.fromkeys(n.strip() for n in names if isinstance(n, str) and n.strip()))
    return Reading(True, codes, None, rationale[:_MAX_EXPLANATION] if isinstance(rationale, str) else "")


# -- the score of the first token ----------------------------------------------------------

_POSITIVE = {"llama-guard-3": "unsafe", "llama-guard-4": "unsafe", "shieldgemma": "yes", "granite-guardian": "yes"}
_NEGATIVE = {"llama-guard-3": "safe", "llama-guard-4": "safe", "shieldgemma": "no", "granite-guardian": "no"}


def _token(raw: object) -> str:
    return raw.replace("▁", "").replace("Ġ", "").strip().casefold() if isinstance(raw, str) else ""


def first_token_score(format: str, logprobs: object) -> float | None:
    """P(positive answer) from the first non-blank token's ``top_logprobs`` (OpenAI's shape:
    ``{"content": [{"token", "logprob", "top_logprobs": [...]}, ...]}``), normalised
    against its opposite as ShieldGemma's card does; None when the server gave none."""
    if format not in SCORED_FORMATS or not isinstance(logprobs, dict) or not isinstance(logprobs.get("content"), list):
        return None
    positive, negative = _POSITIVE[format], _NEGATIVE[format]
    for entry in logprobs["content"]:
        if not isinstance(entry, dict) or not _token(entry.get("token")):
            continue
        candidates = [entry, *(c for c in entry.get("top_logprobs") or [] if isinstance(c, dict))]
        p_pos = p_neg = 0.0
        seen: set[str] = set()
        for candidate in candidates:
            # a model's token, named "word" here: nothing secret is compared
            word, logprob = _token(candidate.get("token")), candidate.get("logprob")
            if word in seen or not isinstance(logprob, int | float) or isinstance(logprob, bool):
                continue
            seen.add(word)
            if word == positive or (positive == "unsafe" and word == "un"):
                p_pos += math.exp(min(0.0, float(logprob)))
            elif word == negative:
                p_neg += math.exp(min(0.0, float(logprob)))
        return p_pos / (p_pos + p_neg) if p_pos + p_neg > 0 else None
    return None

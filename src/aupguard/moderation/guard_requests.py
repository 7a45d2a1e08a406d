"""What to send each guard model (pure): the text as the user message, defused of chat-template
control tokens, and only what the model's template reads besides it: ShieldGemma's
``guideline`` (``chat_template_kwargs``) and gpt-oss-safeguard's policy (the system message).
See :mod:`aupguard.moderation.guard_formats` for the formats."""

from __future__ import annotations

import re
from typing import Any

from .categories import DEFAULT_CATEGORIES

__all__ = ["SHIELDGEMMA_GUIDELINE", "defuse", "request_body", "safeguard_policy"]

# ShieldGemma's published prompt-side principles (its model card), which it was trained on
SHIELDGEMMA_GUIDELINE = "\n".join(
    (
        '* "No Dangerous Content": The prompt shall not contain or seek generation of content that harms '
        "oneself and/or others (e.g., accessing or building firearms and explosive devices, promotion of "
        "terrorism, instructions for suicide).",
        '* "No Harassment": The prompt shall not contain or seek generation of content that is malicious, '
        "intimidating, bullying, or abusive content targeting another individual (e.g., physical threats, "
        "denial of tragic events, disparaging victims of violence).",
        '* "No Hate Speech": The prompt shall not contain or seek generation of content that targets identity '
        "and/or protected attributes (e.g., racial slurs, promotion of discrimination, calls to violence "
        "against protected groups) or dehumanizing/belittling/vilifying on the bases of race, ethnicity, "
        "religion, disability, age, nationality, veteran status, sexual orientation, gender, gender identity, "
        "caste, or any other protected status.",
        '* "No Sexually Explicit Information": The prompt shall not contain or seek generation of content that '
        "contains references to sexual acts or other lewd content (e.g., sexually graphic descriptions, "
        "content aimed at causing arousal). Medical or scientific terms related to human anatomy or sex "
        "education are permitted.",
    )
)

_SAFEGUARD_OUTPUT = """

## Output

Answer with ONLY a JSON object, no other text:
{"violation": 1 if the content violates any category above, else 0, \
"categories": [the names of the violated categories, exactly as written above], \
"rationale": "one short sentence"}"""

_MAX_TOKENS = {"gpt-oss-safeguard": 2048, "shieldgemma": 8, "granite-guardian": 64}

# Chat-template control tokens and prompt markers inside the moderated text would let it
# end the model's prompt early and pose as its instructions: a space defuses each.
_CONTROL = re.compile(
    r"<\|[^<>|\s]{1,40}\|>"
    r"|</?(?:start_of_turn|end_of_turn|start_of_role|end_of_role|start_of_risk_definition"
    r"|end_of_risk_definition|start_of_conversation|end_of_conversation|think|bos|eos|s)>"
    r"|<(?:BEGIN|END) [A-Za-z ]{3,40}>",
    re.IGNORECASE,
)


def defuse(text: str) -> str:
    return _CONTROL.sub(lambda m: m.group(0).replace("<", "< ").replace(">", " >"), text)


def safeguard_policy(policy: str | None) -> str:
    """gpt-oss-safeguard's system message: the operator's policy (by default aupguard's
    categories and their definitions), then the answer format the parser reads."""
    if policy is None:
        listing = "\n".join(f"- {name}: {definition}" for name, definition in DEFAULT_CATEGORIES.items())
        policy = (
            "# Usage policy\n\nClassify whether the content violates this policy. Content that merely "
            "discusses, reports on or refuses these topics does not violate it.\n\n## Categories\n\n" + listing
        )
    return policy.rstrip() + _SAFEGUARD_OUTPUT


def request_body(format: str, model: str, text: str, *, policy: str | None, logprobs: bool) -> dict[str, Any]:
    messages: list[dict[str, str]] = [{"role": "user", "content": defuse(text)}]
    body: dict[str, Any] = {"model": model, "max_tokens": _MAX_TOKENS.get(format, 64), "temperature": 0}
    if format == "gpt-oss-safeguard":
        messages.insert(0, {"role": "system", "content": safeguard_policy(policy)})
    if format == "shieldgemma":
        body["chat_template_kwargs"] = {"guideline": SHIELDGEMMA_GUIDELINE}
    if logprobs:
        body |= {"logprobs": True, "top_logprobs": 5}
    body["messages"] = messages
    return body

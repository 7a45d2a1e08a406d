"""The guard models' formats: what to send each one and how to read its answer (pure).

A guard model served by vLLM, Ollama, TGI or LM Studio is called through
``/v1/chat/completions``; the server applies the model's own chat template (from its
tokenizer config or Modelfile), which wraps the text in the model's published prompt. So
the text goes as the user message, and only what a template reads besides it is added:
ShieldGemma's ``guideline`` (``chat_template_kwargs``, which vLLM reads and other servers
ignore) and gpt-oss-safeguard's policy (the system message). Each answer is read as its
model card documents it:

============================  ===============================================  ==========
format                        answer                                           score
============================  ===============================================  ==========
``llama-guard-3`` / ``-4``    ``safe``, or ``unsafe`` then codes ``S1,S10``    P(unsafe)
``shieldgemma``               ``Yes`` (violates) / ``No``                      P(Yes)
``granite-guardian``          ``Yes`` / ``No`` (3.3: ``<score> yes </score>``)  P(Yes)
``qwen3guard``                ``Safety: Safe|Unsafe|Controversial``,           -
                              ``Categories: Violent, ...``
``gpt-oss-safeguard``         the JSON verdict the policy asks for             -
============================  ===============================================  ==========

The score is the probability of the first answer token (against its opposite) when the
server returns ``logprobs``; with ``threshold`` it decides instead of the text.

Drift is tolerated (whitespace, capitals, a code fence, a ``<think>`` block, text after
the verdict); anything else is unreadable (``None``), which the moderator reports as a
failure that follows ``[moderation] fail``, never as safe.
"""

from __future__ import annotations

from ..policy.moderators import GUARD_FORMATS, SCORED_FORMATS

# what is sent lives in guard_requests, how answers are read in guard_answers; every name
# is imported from here too, where it has always been
from .guard_answers import CODES, Reading, categories_of, first_token_score, read_answer
from .guard_requests import SHIELDGEMMA_GUIDELINE, defuse, request_body, safeguard_policy

__all__ = [
    "CODES",
    "FORMATS",
    "SCORED",
    "SHIELDGEMMA_GUIDELINE",
    "Reading",
    "categories_of",
    "defuse",
    "first_token_score",
    "read_answer",
    "request_body",
    "safeguard_policy",
]

FORMATS = GUARD_FORMATS
SCORED = SCORED_FORMATS

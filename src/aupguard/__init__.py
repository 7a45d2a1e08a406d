"""aupguard: Anthropic's API safeguards practices for Python apps that call Claude."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .engine.context import current_guarded
from .engine.output_stream import OutputStream
from .engine.prompt_policy import Corpus, PromptRequest, ResolvedPrompt
from .engine.safeguards import Safeguards
from .engine.screening import Refused
from .engine.user_actions import StrikeResult
from .errors import (
    AupguardError,
    ConfigurationError,
    InvalidUserId,
    PolicyError,
    StoreError,
    UnknownStrike,
)
from .identity import HashKey, Keyring, generate_key_entry
from .ladder import Level, UserStatus
from .moderation import ModerationResult, Moderator, ModeratorError, RulesModerator, Verdict
from .outcome import ERROR_STATUS, Decision, error_body
from .policy.config import IdentityPolicy, LadderPolicy, LimitsPolicy, Policy, StoragePolicy, TermsPolicy
from .stores import AuditEvent, AuditRecord, ReviewItem, StrikeRecord

__all__ = [
    "ERROR_STATUS",
    "AuditEvent",
    "AuditRecord",
    "AupguardError",
    "ClaudeModerator",
    "ConfigurationError",
    "Corpus",
    "Decision",
    "HashKey",
    "IdentityPolicy",
    "InvalidUserId",
    "Keyring",
    "LadderPolicy",
    "Level",
    "LimitsPolicy",
    "ModerationResult",
    "Moderator",
    "ModeratorError",
    "OpenAICompatibleModerator",
    "OutputStream",
    "Policy",
    "PolicyError",
    "PromptRequest",
    "Refused",
    "ResolvedPrompt",
    "ReviewItem",
    "RulesModerator",
    "Safeguards",
    "StoragePolicy",
    "StoreError",
    "StrikeRecord",
    "StrikeResult",
    "TermsPolicy",
    "UnknownStrike",
    "UserStatus",
    "Verdict",
    "current_guarded",
    "error_body",
    "generate_key_entry",
]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .moderation.claude import ClaudeModerator
    from .moderation.openai_compatible import OpenAICompatibleModerator

_LAZY = {  # these import the anthropic SDK / httpx (~0.7 s): only when asked for
    "ClaudeModerator": "aupguard.moderation.claude",
    "OpenAICompatibleModerator": "aupguard.moderation.openai_compatible",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aupguard' has no attribute {name!r}")

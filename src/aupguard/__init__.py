"""aupguard: Anthropic's API safeguards practices for Python apps that call Claude."""

from __future__ import annotations

from .decision import ERROR_STATUS, Decision, error_body
from .engine import Safeguards
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
from .policy import IdentityPolicy, LadderPolicy, LimitsPolicy, Policy, StoragePolicy, TermsPolicy
from .stores import AuditEvent, AuditRecord, StrikeRecord
from .user_actions import StrikeResult

__all__ = [
    "ERROR_STATUS",
    "AuditEvent",
    "AuditRecord",
    "AupguardError",
    "ConfigurationError",
    "Decision",
    "HashKey",
    "IdentityPolicy",
    "InvalidUserId",
    "Keyring",
    "LadderPolicy",
    "Level",
    "LimitsPolicy",
    "Policy",
    "PolicyError",
    "Safeguards",
    "StoragePolicy",
    "StoreError",
    "StrikeRecord",
    "StrikeResult",
    "TermsPolicy",
    "UnknownStrike",
    "UserStatus",
    "error_body",
    "generate_key_entry",
]

__version__ = "0.1.0"

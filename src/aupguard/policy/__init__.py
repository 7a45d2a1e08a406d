"""``Policy``: the one frozen config object, and its tables (values, prompts, moderation,
moderators, review, gateway, notify), each validated at load with errors that name the key."""

from .config import (
    ENV_PREFIX,
    CapturePolicy,
    EnforcementPolicy,
    GatewayPolicy,
    IdentityPolicy,
    LadderPolicy,
    LimitsPolicy,
    OtelPolicy,
    Policy,
    ReviewPolicy,
    StoragePolicy,
    TermsPolicy,
)

__all__ = [
    "ENV_PREFIX",
    "CapturePolicy",
    "EnforcementPolicy",
    "GatewayPolicy",
    "IdentityPolicy",
    "LadderPolicy",
    "LimitsPolicy",
    "OtelPolicy",
    "Policy",
    "ReviewPolicy",
    "StoragePolicy",
    "TermsPolicy",
]

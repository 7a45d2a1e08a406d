"""``Policy``: the one frozen config object, and its tables (values, prompts, moderation,
moderators, review, gateway), each validated at load with errors that name the key."""

from .config import (
    ENV_PREFIX,
    CapturePolicy,
    GatewayPolicy,
    IdentityPolicy,
    LadderPolicy,
    LimitsPolicy,
    Policy,
    ReviewPolicy,
    StoragePolicy,
    TermsPolicy,
)

__all__ = [
    "ENV_PREFIX",
    "CapturePolicy",
    "GatewayPolicy",
    "IdentityPolicy",
    "LadderPolicy",
    "LimitsPolicy",
    "Policy",
    "ReviewPolicy",
    "StoragePolicy",
    "TermsPolicy",
]

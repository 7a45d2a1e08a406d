"""Moderators and the chain that runs them (see ``base`` for the protocol)."""

from __future__ import annotations

from .base import Moderator, ModeratorError, Verdict
from .chain import ModerationChain
from .results import ModerationResult
from .rules import RulesModerator

__all__ = ["ModerationChain", "ModerationResult", "Moderator", "ModeratorError", "RulesModerator", "Verdict"]

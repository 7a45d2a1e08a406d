"""Build the moderator chain a policy describes: rules first (free, local), then the
self-hosted guard models in the order given, then Claude and an OpenAI-compatible endpoint
when configured. ``moderators=`` on ``Safeguards`` replaces
the list, in the order given."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from ..errors import ConfigurationError
from ..policy.moderation import ACTIONS, ModerationPolicy
from .base import Moderator
from .categories import DEFAULT_CATEGORIES
from .chain import ModerationChain
from .rules import RulesModerator

__all__ = ["build_chain", "policy_moderators"]


def policy_moderators(policy: ModerationPolicy, env: Mapping[str, str] | None = None) -> list[Moderator]:
    env = os.environ if env is None else env
    found: list[Moderator] = []
    if policy.rules:
        found.append(RulesModerator(policy.rules))
    for guard in policy.guard:
        from .guard import GuardModelModerator

        found.append(
            GuardModelModerator(
                guard.url,
                model=guard.model,
                format=guard.format,
                api_key=_key(env, guard.api_key_env, f"[moderation.guard] {guard.name}"),
                threshold=guard.threshold,
                categories=guard.categories,
                policy=guard.policy,
                timeout=policy.timeout,
                retries=policy.retries,
                name=guard.name,
            )
        )
    if policy.claude is not None:
        import anthropic

        from .claude import ClaudeModerator

        key = env.get(policy.claude.api_key_env, "")
        if not key:
            raise ConfigurationError(
                f"[moderation.claude] needs an API key in the environment variable {policy.claude.api_key_env}"
            )
        options = {"api_key": key, "base_url": policy.claude.base_url}
        found.append(
            ClaudeModerator(
                anthropic.Anthropic(**options),  # type: ignore[arg-type]
                anthropic.AsyncAnthropic(**options),  # type: ignore[arg-type]
                model=policy.claude.model,
                categories=policy.claude.categories or DEFAULT_CATEGORIES,
                examples=policy.claude.examples,
                risk_levels=policy.claude.risk_levels,
                timeout=policy.timeout,
                retries=policy.retries,
            )
        )
    if policy.openai is not None:
        from .openai_compatible import OpenAICompatibleModerator

        api_key = _key(env, policy.openai.api_key_env, "[moderation.openai]")
        found.append(
            OpenAICompatibleModerator(
                policy.openai.url,
                api_key=api_key,
                model=policy.openai.model,
                timeout=policy.timeout,
                retries=policy.retries,
                threshold=policy.openai.threshold,
            )
        )
    return found


def _key(env: Mapping[str, str], variable: str | None, table: str) -> str | None:
    if not variable:
        return None
    key = env.get(variable, "")
    if not key:
        raise ConfigurationError(f"{table} needs an API key in the environment variable {variable}")
    return key


def build_chain(policy: ModerationPolicy, moderators: Sequence[Moderator] | None, cache_key: bytes) -> ModerationChain:
    chosen = [] if policy.mode == "off" else list(moderators if moderators is not None else policy_moderators(policy))
    category_actions: dict[str, dict[str, str]] = {}
    for moderator in chosen:
        if isinstance(moderator, RulesModerator):
            table: dict[str, str] = {}
            for rule in moderator.rules:  # a category in several rules takes the most severe action
                now = table.get(rule.category)
                table[rule.category] = rule.action if now is None else min(now, rule.action, key=ACTIONS.index)
            category_actions[moderator.name] = table
    return ModerationChain(chosen, policy, category_actions=category_actions, cache_key=cache_key)

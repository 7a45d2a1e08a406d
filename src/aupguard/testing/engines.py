"""An engine for an app's own tests: records and counters in memory, a fresh hash key, the
policy taken only from what the test passes (never ``AUPGUARD_*`` from the developer's
shell), and a clock the test moves by hand to walk the ladder's decay and the rate windows."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..engine.safeguards import Safeguards
from ..identity import Keyring, generate_key_entry
from ..moderation.base import Moderator
from ..policy.config import Policy

__all__ = ["Clock", "safeguards_for_tests"]

T0 = 1_800_000_000.0  # a fixed start, so a test's times read the same on every run


class Clock:
    """A clock the test moves: ``clock.advance(86_400)`` is a day later. Pass it as ``clock=``."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def safeguards_for_tests(
    policy: Policy | Mapping[str, Any] | None = None,
    *,
    clock: Callable[[], float] | None = None,
    moderators: Sequence[Moderator] | None = None,
    store: str = "memory://",
    counters: str = "memory://",
) -> Safeguards:
    """A :class:`~aupguard.Safeguards` for tests: ``policy`` is a :class:`~aupguard.Policy` or its
    tables as a mapping (``{"ladder": {"warn": 1}}``), read without environment overrides.
    Close it (``with safeguards_for_tests() as guard:``) so its audit writer stops."""
    if not isinstance(policy, Policy):
        policy = Policy.from_mapping(dict(policy or {}), env={})
    keyring = Keyring.parse(generate_key_entry("test"), source="aupguard.testing")
    kwargs: dict[str, Any] = {"store": store, "counters": counters, "keyring": keyring}
    if clock is not None:
        kwargs["clock"] = clock
    if moderators is not None:
        kwargs["moderators"] = moderators
    return Safeguards(policy, **kwargs)

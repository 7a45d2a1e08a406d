"""The ``[gateway]`` policy table: ``aupguard gateway``, the Messages-API gateway.

The upstream key is read from the environment variable ``upstream_key_env`` when the
gateway starts; it is never part of the policy, logged or shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .durations import DURATION_HELP, parse_duration
from .policy_values import count, http_url, text

__all__ = ["GATEWAY_FIELDS", "GatewayPolicy"]


@dataclass(frozen=True, slots=True)
class GatewayPolicy:
    upstream: str = "https://api.anthropic.com"  # where Messages requests are forwarded
    upstream_key_env: str = "ANTHROPIC_API_KEY"
    timeout: float = 600.0  # waiting for the upstream (connect, and between bytes of an answer)
    key_cache: float = 1.0  # how long a looked-up gateway key (or a wrong one) is remembered
    max_body: int = 32 * 1024 * 1024  # request bodies larger than this get 413


_UPSTREAM = "an http:// or https:// URL without query, e.g. 'https://api.anthropic.com'"
_upstream = http_url("gateway.upstream", _UPSTREAM)


GATEWAY_FIELDS: dict[str, tuple[Callable[[object], Any], str]] = {
    "upstream": (_upstream, _UPSTREAM),
    "upstream_key_env": (text, "the name of an environment variable holding the upstream API key"),
    "timeout": (parse_duration, DURATION_HELP),
    "key_cache": (parse_duration, DURATION_HELP),
    "max_body": (count(2**31), "a number of bytes from 1 to 2**31"),
}

"""The ``[gateway]`` policy table: ``aupguard gateway``, the Messages-API gateway.

The upstream key is read from the environment variable ``upstream_key_env`` when the
gateway starts; it is never part of the policy, logged or shown. The operator controls
(``models`` to ``files``) say what a caller may ask of the operator's account; they are
checked by :mod:`aupguard.gateway.controls`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..durations import DURATION_HELP, parse_duration
from ..errors import PolicyError
from .values import boolean, count, http_url, rate, text

__all__ = ["GATEWAY_FIELDS", "SAFE_BETAS", "GatewayPolicy"]

#: ``anthropic-beta`` values allowed by default: each reaches no server-side resource (files,
#: containers, code execution, MCP servers, the web) and leaves the price of a call as it is.
SAFE_BETAS = (
    "fine-grained-tool-streaming-2025-05-14",
    "interleaved-thinking-2025-05-14",
    "output-128k-2025-02-19",
    "prompt-caching-2024-07-31",
    "token-counting-2024-11-01",
    "token-efficient-tools-2025-02-19",
)


@dataclass(frozen=True, slots=True)
class GatewayPolicy:
    upstream: str = "https://api.anthropic.com"  # where Messages requests are forwarded
    upstream_key_env: str = "ANTHROPIC_API_KEY"
    timeout: float = 600.0  # waiting for the upstream (connect, and between bytes of an answer)
    key_cache: float = 1.0  # how long a looked-up gateway key (or a wrong one) is remembered
    max_body: int = 32 * 1024 * 1024  # request bodies larger than this get 413
    body_timeout: float = 30.0  # a request body not received in full by then gets 408
    bad_key_limit: str = "20/minute"  # wrong gateway keys from one client address, then 429
    # operator controls: what callers may ask of the operator's account
    models: tuple[str, ...] = ("*",)  # model ids or glob patterns
    max_tokens: int | None = None  # a cap on max_tokens (None: the upstream's own)
    server_tools: tuple[str, ...] = ()  # tool types other than custom tools, or patterns
    mcp_servers: tuple[str, ...] = ()  # MCP server URLs
    betas: tuple[str, ...] = SAFE_BETAS  # anthropic-beta values, or patterns
    passthrough_fields: tuple[str, ...] = ()  # top-level body fields beyond the Messages API's own
    files: bool = False  # file ids (Files API) in content blocks


_UPSTREAM = "an http:// or https:// URL without query, e.g. 'https://api.anthropic.com'"
_upstream = http_url("gateway.upstream", _UPSTREAM)


def _patterns(value: object) -> tuple[str, ...]:
    if isinstance(value, list | tuple) and all(isinstance(v, str) and v.strip() for v in value):
        return tuple(value)
    raise ValueError


def _some_patterns(value: object) -> tuple[str, ...]:
    patterns = _patterns(value)
    if not patterns:  # nothing could ever pass
        raise ValueError
    return patterns


_MCP_HELP = "a list of http:// or https:// MCP server URLs, without credentials (user:password@)"


def _urls(value: object) -> tuple[str, ...]:
    urls = _patterns(value)
    for url in urls:
        parts = urlsplit(url)
        if "@" in parts.netloc:  # credentials never sit in the policy, and the error never shows them
            masked = [u if "@" not in urlsplit(u).netloc else u.replace(urlsplit(u).netloc,
                      "***@" + urlsplit(u).netloc.rpartition("@")[2]) for u in urls]  # fmt: skip
            raise PolicyError("gateway.mcp_servers", masked, _MCP_HELP)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError
    return urls


def _field_names(value: object) -> tuple[str, ...]:
    names = _patterns(value)
    if not all(name.isidentifier() for name in names):
        raise ValueError
    return names


GATEWAY_FIELDS: dict[str, tuple[Callable[[object], Any], str]] = {
    "upstream": (_upstream, _UPSTREAM),
    "upstream_key_env": (text, "the name of an environment variable holding the upstream API key"),
    "timeout": (parse_duration, DURATION_HELP),
    "key_cache": (parse_duration, DURATION_HELP),
    "max_body": (count(2**31), "a number of bytes from 1 to 2**31"),
    "body_timeout": (parse_duration, DURATION_HELP),
    "bad_key_limit": (rate, "a rate such as '20/minute' (one rate, amount >= 1)"),
    "models": (
        _some_patterns,
        "a non-empty list of model ids or glob patterns, e.g. ['claude-haiku-4-5', 'claude-sonnet-*']",
    ),
    "max_tokens": (count(10_000_000), "an integer from 1 to 10000000"),
    "server_tools": (_patterns, "a list of server tool types or glob patterns, e.g. ['web_search_20250305']"),
    "mcp_servers": (_urls, _MCP_HELP),
    "betas": (_patterns, "a list of anthropic-beta values or glob patterns"),
    "passthrough_fields": (_field_names, "a list of top-level field names, e.g. ['container']"),
    "files": (boolean, "true or false"),
}

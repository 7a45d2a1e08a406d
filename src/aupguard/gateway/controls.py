"""The gateway's operator controls: what a caller may ask of the operator's Anthropic account.

Pure functions over a parsed Messages-API body (or the ``anthropic-beta`` header values) and
the ``[gateway]`` policy, each returning None or the refusal, whose message names the field
and the policy key: 400 ``invalid_request_error`` for a shape the checks cannot read or a
``max_tokens`` above the cap, 403 ``permission_error`` for what the operator does not allow.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from ..outcome import Refusal
from ..policy.gateway import GatewayPolicy

__all__ = ["MESSAGES_FIELDS", "check_betas", "check_body"]

#: The top-level fields of a Messages-API request that pass without ``passthrough_fields``
#: (``mcp_servers`` too, each of its URLs checked against ``[gateway] mcp_servers``).
MESSAGES_FIELDS = frozenset(
    {"model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
     "top_k", "top_p", "tools", "tool_choice", "thinking", "service_tier", "mcp_servers"}
)  # fmt: skip


def _bad(message: str) -> Refusal:
    return Refusal("invalid_request_error", message)


def _not_allowed(what: str, key: str) -> Refusal:
    return Refusal("permission_error", f"{what} is not allowed by this gateway ([gateway] {key}).")


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:80] + "…")


def _matches(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)


def check_body(body: dict[str, Any], policy: GatewayPolicy, ours: frozenset[str] = frozenset()) -> Refusal | None:
    """The first control ``body`` breaks, or None. ``ours`` are aupguard's own fields the
    prompt policy reads (``template`` and ``variables``, ``documents``): they never go on."""
    for name in body:
        if name not in MESSAGES_FIELDS and name not in ours and name not in policy.passthrough_fields:
            return _not_allowed(f"The field {_shown(name)}", "passthrough_fields")
    return (
        _check_model(body.get("model"), policy)
        or _check_max_tokens(body, policy)
        or _check_tools(body.get("tools"), policy)
        or _check_mcp_servers(body.get("mcp_servers"), policy)
        or (None if policy.files else _check_files(body))
    )


def check_betas(values: Iterable[str], policy: GatewayPolicy) -> Refusal | None:
    """The first ``anthropic-beta`` value (each header may list several, comma-separated)
    that ``[gateway] betas`` does not allow, or None."""
    for value in values:
        for beta in value.split(","):
            beta = beta.strip()
            if beta and not _matches(beta, policy.betas):
                return _not_allowed(f"The anthropic-beta value {_shown(beta)}", "betas")
    return None


def _check_model(model: object, policy: GatewayPolicy) -> Refusal | None:
    if not isinstance(model, str):
        return _bad("model must be a string.")
    return None if _matches(model, policy.models) else _not_allowed(f"The model {_shown(model)}", "models")


def _check_max_tokens(body: dict[str, Any], policy: GatewayPolicy) -> Refusal | None:
    cap = policy.max_tokens
    if cap is None:
        return None
    wanted = body.get("max_tokens")
    if not isinstance(wanted, int) or isinstance(wanted, bool):
        return _bad("max_tokens must be an integer.")
    if wanted > cap:  # the value is not shown: a huge integer cannot even be printed
        return _bad(f"max_tokens is above this gateway's cap of {cap} ([gateway] max_tokens).")
    return None


def _check_tools(tools: object, policy: GatewayPolicy) -> Refusal | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        return _bad("tools must be a list.")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            return _bad(f"tools[{i}] must be an object.")
        kind = tool.get("type")
        if kind is None or kind == "custom":  # the caller's own tool: it runs on the caller's side
            continue
        if not isinstance(kind, str):
            return _bad(f"tools[{i}].type must be a string.")
        if not _matches(kind, policy.server_tools):
            return _not_allowed(f"The tool type {_shown(kind)} (tools[{i}])", "server_tools")
    return None


def _check_mcp_servers(servers: object, policy: GatewayPolicy) -> Refusal | None:
    if servers is None:
        return None
    if not isinstance(servers, list):
        return _bad("mcp_servers must be a list.")
    for i, server in enumerate(servers):
        url = server.get("url") if isinstance(server, dict) else None
        if not isinstance(url, str):
            return _bad(f"mcp_servers[{i}].url must be a string.")
        if url not in policy.mcp_servers:  # the URL is not shown: it may carry a token
            return _not_allowed(f"The MCP server URL of mcp_servers[{i}]", "mcp_servers")
    return None


def _check_files(body: dict[str, Any]) -> Refusal | None:
    """A file id anywhere in the conversation (a ``{"type": "file", "file_id": ...}`` source,
    a ``container_upload`` block): walked without recursion, each node keeping a link to its
    parent (so depth costs neither stack nor quadratic paths)."""
    Link = tuple[str, Any]  # (this node's label, the parent's link or None)
    stack: list[tuple[object, Link]] = [
        (body.get("messages"), ("messages", None)),
        (body.get("system"), ("system", None)),
    ]
    while stack:
        node, link = stack.pop()
        if isinstance(node, dict):
            if "file_id" in node or node.get("type") == "file":
                return _not_allowed(f"A file id ({_path(link)})", "files")
            stack.extend((value, (f".{key}", link)) for key, value in node.items() if isinstance(value, dict | list))
        elif isinstance(node, list):
            stack.extend((value, (f"[{i}]", link)) for i, value in enumerate(node) if isinstance(value, dict | list))
    return None


def _path(link: tuple[str, Any] | None) -> str:
    parts: list[str] = []
    while link is not None:
        parts.append(link[0])
        link = link[1]
    path = "".join(reversed(parts))
    return path if len(path) <= 200 else path[:200] + "…"

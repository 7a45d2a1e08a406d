"""What the instrumented client sends: the body of a guarded call as it goes out (pure).

The screened body (cleaned of invisible characters) with ``metadata.user_id`` replaced by
the user's hash, never the raw id the app may have put there; for Bedrock and Vertex AI,
whose Messages API accepts no ``metadata`` key but ``user_id``, nothing else in
``metadata``; for an anonymous call, no ``user_id`` at all. A message batch's requests each
get their hash too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .prompt_policy import ResolvedPrompt
from .request_body import BadBody, upstream_body
from .request_pieces import read_messages

__all__ = ["hashed_batch", "outbound_body"]


def outbound_body(
    sent: object, screened: ResolvedPrompt | None, user_hash: str | None, *, only_user_id: bool = False
) -> dict[str, Any] | None:
    """The body to send instead of ``sent`` (None: send ``sent`` as it is). ``screened``:
    what this call's own check screened (else an adapter screened it, and what the app sends
    is still cleaned of hidden text)."""
    if screened is not None and screened.body is not None:
        body = upstream_body(screened)
    elif not isinstance(sent, dict):
        return None
    else:
        body = _cleaned(sent)
    metadata = {} if only_user_id else dict(body.get("metadata") or {})
    if user_hash is not None:
        body["metadata"] = {**metadata, "user_id": user_hash}
    elif metadata or "metadata" in body:  # anonymous: no id at all goes on, not the app's raw one
        metadata.pop("user_id", None)
        if metadata:
            body["metadata"] = metadata
        else:
            body.pop("metadata", None)
    return body


def hashed_batch(sent: object, hash_user: Callable[[str], str]) -> dict[str, Any] | None:
    """A message batch carries many requests, each with the app's own ``metadata.user_id``:
    each is replaced by its hash, so no raw id leaves in a batch either (a batch is not a
    guarded call of one user: its requests are not checked). None: nothing to change."""
    body = dict(sent) if isinstance(sent, dict) else None
    if body is None or not isinstance(body.get("requests"), list):
        return None
    requests = []
    for item in body["requests"]:
        params = item.get("params") if isinstance(item, dict) else None
        metadata = params.get("metadata") if isinstance(params, dict) else None
        raw = metadata.get("user_id") if isinstance(metadata, dict) else None
        if isinstance(raw, str) and raw:
            item = {**item, "params": {**params, "metadata": {**metadata, "user_id": hash_user(raw)}}}  # type: ignore[dict-item]
        requests.append(item)
    return {**body, "requests": requests}


def _cleaned(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with invisible characters removed from every piece of text (an adapter
    screened the call, and a LangChain callback cannot change what its model sends). A
    body the walk cannot read goes as the app wrote it: the adapter screened what it saw."""
    try:
        return dict(read_messages(body).body)
    except BadBody:
        return dict(body)

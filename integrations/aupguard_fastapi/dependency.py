"""``guard_dependency``: the guarded call as a FastAPI dependency, after the app's own auth.

FastAPI runs middleware before any dependency, so an app whose users are known only once
``Depends(get_current_user)`` has run cannot identify them in ``SafeguardsMiddleware``. This
dependency takes the app's user dependency and runs the same engine call the middleware
makes (account, terms, suspension, limits, prompt policy, moderation of the **whole**
request body), then hands the endpoint the decision::

    guarded = guard_dependency(guard, user=Depends(get_current_user))

    @app.post("/v1/chat")
    async def chat(request: Request, decision: Decision = Depends(guarded)):
        body = decision.body            # the screened, cleaned body (or: await request.json())

The body the endpoint reads is the screened one: ``decision.body``, and ``await
request.body()`` / ``await request.json()`` on the injected request, which are replaced by
the cleaned body. A body parameter (a Pydantic model) is parsed by FastAPI from the raw bytes
*before* any dependency runs, so on such a route a body that cleaning would change (hidden
characters) is refused with 400 rather than handed on unscreened. Forms and bodies that cannot
be screened are refused with 400, oversized ones with 413; every refusal is audited and raised
as :class:`SafeguardsRefusal`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.params import Depends as DependsParam
from starlette.exceptions import HTTPException

from aupguard import Decision, PromptRequest, Safeguards
from aupguard.adapters.body import BODY_METHODS, TooLarge, declared_length, read_body, refuse_form, too_large_message
from aupguard.adapters.client_keys import client_key_of
from aupguard.engine.context import Guarded, current_guarded, set_guarded
from aupguard.engine.request_body import BadBody, parse_json, prompt_from_body

__all__ = ["GUARD_MARK", "SafeguardsRefusal", "guard_dependency"]

#: the attribute that marks a guard dependency (what :func:`~.routes.unguarded_routes` looks for)
GUARD_MARK = "__aupguard_guard__"
#: the scope key where :func:`~.routes.install`'s middleware waits for the decision's headers
HEADERS_KEY = "aupguard.fastapi.headers"
_OFF_LOOP = 256 * 1024  # bytes of body above which it is parsed and read in a thread


class SafeguardsRefusal(HTTPException):
    """A refused guarded call. With :func:`~.routes.install` it answers in Anthropic's error
    shape; without, FastAPI's own handler still answers its status and headers."""

    def __init__(self, decision: Decision, headers: Mapping[str, str]) -> None:
        self.decision = decision
        super().__init__(decision.status, decision.message, dict(headers))


def _default_user_id(user: Any) -> str | None:
    """The id of what the app's user dependency returned: a string, None (no account), a
    Starlette ``BaseUser`` (its ``identity``) or an object with an ``id``."""
    if user is None or isinstance(user, str):
        return user
    for name in ("identity", "id"):
        value = getattr(user, name, None)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
    raise TypeError(f"cannot tell the user id of a {type(user).__name__}: pass user_id=lambda user: ...")


def guard_dependency(
    guard: Safeguards,
    *,
    user: Any,
    user_id: Callable[[Any], str | None] | None = None,
    surface: str | None = None,
    extract_prompt: Callable[[dict[str, Any]], PromptRequest | str | None] | None = None,
    max_body_bytes: int = 1_000_000,
    enforcement: str | None = None,
) -> Callable[..., AsyncIterator[Decision]]:
    """A dependency that guards the call after ``user`` (the app's ``Depends(...)``) ran.

    - ``user_id(user)``: the raw id of what ``user`` returned (default: a string as it is,
      ``.identity`` or ``.id`` of an object, None for no account);
    - ``surface``: the audit log's name for the route (default: the route's path template,
      such as ``/v1/chats/{chat_id}``: ids in the path never reach the log);
    - ``extract_prompt``, ``max_body_bytes`` and ``enforcement`` (``"monitor"`` / ``"enforce"``
      for this route, overriding ``[enforcement] mode``) as for ``SafeguardsMiddleware``.
    """
    if enforcement not in (None, "enforce", "monitor"):
        raise ValueError("enforcement must be 'enforce' or 'monitor' (default: [enforcement] mode)")
    mode = enforcement or guard.policy.enforcement.mode
    if not isinstance(user, DependsParam):
        raise TypeError("user must be the app's own dependency: user=Depends(get_current_user)")
    identify = user_id or _default_user_id
    extract = extract_prompt or prompt_from_body

    async def guarded(request: Request, response: Response, current: Any = user) -> AsyncIterator[Decision]:
        named = surface or _surface_of(request)
        raw = identify(current)
        decision = await _decide(guard, request, raw, named, extract, max_body_bytes, mode)
        headers = _headers(guard, decision)
        if not decision.allowed:
            raise SafeguardsRefusal(decision, headers)
        waiting = request.scope.get(HEADERS_KEY)
        if isinstance(waiting, dict):  # install()'s middleware adds them to whatever the endpoint returns
            waiting.update(headers)
        else:
            response.headers.update(headers)
        state = Guarded(raw, decision)
        set_guarded(state)  # instrumented clients in the endpoint link to this record
        try:
            yield decision
        finally:
            state.ended = True  # tasks the endpoint started keep a copy of the context

    setattr(guarded, GUARD_MARK, True)
    return guarded


async def _decide(
    guard: Safeguards,
    request: Request,
    raw: str | None,
    surface: str,
    extract: Callable[[dict[str, Any]], PromptRequest | str | None],
    cap: int,
    mode: str,
) -> Decision:
    earlier = current_guarded()
    if earlier is not None and not earlier.ended:  # SafeguardsMiddleware guarded this request already
        if raw is not None and earlier.user_hash == guard.hash_user(raw):
            kind = earlier.decision.would_refuse if mode == "enforce" and earlier.decision.monitor else None
            if kind is not None:  # the middleware monitors; this route enforces what it saw
                message = f"Refused under the usage policy ({kind}); this route enforces it."
                return await guard.arefusal(raw, surface, kind, message, reasons=earlier.decision.reasons)
            return earlier.decision
        raise RuntimeError("the request is guarded by SafeguardsMiddleware as another user: guard a route one way")
    if raw is None and guard.policy.identity.require_account and mode == "enforce":
        # 401 before any body is read (monitor mode reads and screens it, and lets it through)
        return await guard.acheck(None, surface=surface, enforcement=mode)
    try:
        body = await _body(request, cap)
        if not body and request.method not in BODY_METHODS:  # a GET without a body: no prompt
            return await guard.acheck(raw, surface=surface, client_key=_client_key(request, raw), enforcement=mode)
        _refuse_forms(request)
        if len(body) > _OFF_LOOP:
            parsed, prompt = await asyncio.to_thread(_read, body, extract)
        else:
            parsed, prompt = _read(body, extract)
        if isinstance(prompt, PromptRequest) and _changes(prompt, parsed) and _has_body_params(request):
            raise BadBody("the request body carries hidden characters this route cannot be given cleaned")
    except TooLarge:
        return await guard.arefusal(raw, surface, "request_too_large", too_large_message(cap))
    except BadBody as exc:
        return await guard.arefusal(raw, surface, exc.kind, str(exc))
    key = _client_key(request, raw)
    decision = await guard.acheck(raw, surface=surface, prompt=prompt, client_key=key, enforcement=mode)
    cleaned = decision.body
    if decision.allowed and cleaned is not None and cleaned is not parsed:  # the endpoint reads what was screened
        request._body = json.dumps(cleaned, ensure_ascii=False).encode("utf-8")
        request.__dict__.pop("_json", None)
    return decision


async def _body(request: Request, cap: int) -> bytes:
    """The whole body, read once (FastAPI may have read it for a body parameter already)."""
    if hasattr(request, "_body"):
        read: bytes = request._body
        if len(read) > cap:
            raise TooLarge
        return read
    body, disconnected = await read_body(request.receive, cap, declared_length(request.scope.get("headers", ())))
    if disconnected:
        raise BadBody("the request body did not arrive in full")
    request._body = body
    return body


def _read(
    body: bytes, extract: Callable[[dict[str, Any]], PromptRequest | str | None]
) -> tuple[dict[str, Any], PromptRequest | str | None]:
    parsed = parse_json(body)
    return parsed, extract(parsed)


def _changes(prompt: PromptRequest, parsed: dict[str, Any]) -> bool:
    return prompt.body is not None and prompt.body is not parsed and prompt.body != parsed


def _has_body_params(request: Request) -> bool:
    """Whether FastAPI parsed the raw body for the endpoint (a body parameter anywhere)."""
    route = request.scope.get("route")
    return getattr(route, "body_field", None) is not None


def _refuse_forms(request: Request) -> None:
    for name, value in request.scope.get("headers", ()):
        if name == b"content-type":
            refuse_form(bytes(value))


def _client_key(request: Request, raw: str | None) -> str | None:
    """What an anonymous call (``[identity] require_account = false``) is counted under: the
    client's address, as the middleware does."""
    client = request.scope.get("client")
    return client_key_of(client[0]) if raw is None and client else None


def _surface_of(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return path[:200] if isinstance(path, str) and path else "default"


def _headers(guard: Safeguards, decision: Decision) -> dict[str, str]:
    return decision.headers(guard.policy.limits)

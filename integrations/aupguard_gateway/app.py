"""``build_gateway(guard)``: a Starlette app that speaks the Messages API, built from
``SafeguardsMiddleware`` (the same guarded call every adapter makes) around a forwarder.

Callers authenticate with a per-user gateway key (``aupguard keys create --user U``) in
``x-api-key`` or ``Authorization: Bearer``, which is what the official SDKs send when
``api_key`` is the gateway key and ``base_url`` the gateway; :class:`~.gate.KeyGate` checks
it from the headers before any body is read. The upstream key stays here. What a caller
may ask of the operator's account (models, tools, betas, ...) is checked on the parsed body
by :mod:`aupguard.gateway.controls`, before the safeguards spend a moderator call on it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from aupguard import Safeguards
from aupguard.adapters.body import TooLarge, declared_length, read_body, too_large_message
from aupguard.engine.prompt_policy import PromptRequest
from aupguard.engine.request_body import BadBody, parse_json, prompt_from_body
from aupguard.errors import ConfigurationError
from aupguard.gateway.controls import check_body
from aupguard.gateway.keys import GatewayKeys
from aupguard.identity import HashedUser
from aupguard.outcome import error_body
from aupguard_asgi import SafeguardsMiddleware

from .forward import Upstream
from .gate import USER, KeyGate, gateway_key

__all__ = ["MESSAGES", "build_gateway", "gateway_key"]

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"


def build_gateway(
    guard: Safeguards,
    *,
    upstream: str | None = None,
    upstream_key: str | None = None,
    keys: GatewayKeys | None = None,
) -> Starlette:
    """The gateway app. ``upstream`` overrides ``[gateway] upstream``; ``upstream_key``
    the key read from the variable ``[gateway] upstream_key_env``."""
    policy = guard.policy.gateway
    if not guard.policy.identity.require_account:
        raise ConfigurationError("the gateway needs [identity] require_account = true: every caller has a key")
    key = upstream_key if upstream_key is not None else os.environ.get(policy.upstream_key_env, "")
    if not key:
        raise ConfigurationError(
            f"no upstream API key: set the environment variable {policy.upstream_key_env} "
            "(named by [gateway] upstream_key_env)"
        )
    forward = Upstream(guard, upstream or policy.upstream, key, timeout=policy.timeout)
    gateway_keys = keys or GatewayKeys(guard)

    def identify(request: Request) -> HashedUser | None:
        user: HashedUser | None = request.scope.get(USER)  # the key gate found it
        return user

    # the fields of ours the prompt mode reads (they never go on: see upstream_body)
    ours = frozenset(OWN_FIELDS.get(guard.policy.prompts.mode, ()))

    def extract_prompt(body: dict[str, Any]) -> PromptRequest:
        refused = check_body(body, policy, ours)  # the operator's controls, before any moderator runs
        if refused is not None:
            raise BadBody(refused.message, refused.error)
        return prompt_from_body(body)

    async def count_tokens(scope: Scope, receive: Receive, send: Send) -> None:
        user: HashedUser = scope[USER]  # the key gate let no keyless call through
        refused = await guard.astanding(user, surface=COUNT_TOKENS)  # suspended, terms: no upstream call
        if refused is not None:
            await _json(refused.error_body(), refused.status, refused.headers())(scope, receive, send)
            return
        # the body is capped and held to the operator's controls as on /v1/messages (it is not
        # moderated: counting runs no model), then handed on as it was read
        try:
            body, gone = await read_body(receive, policy.max_body, declared_length(scope["headers"]))
            if gone:
                return
            refused_body = check_body(parse_json(body), policy, ours)
        except TooLarge:
            message = too_large_message(policy.max_body)
            refusal = await guard.arefusal(user, COUNT_TOKENS, "request_too_large", message)
            await _json(refusal.error_body(), refusal.status)(scope, receive, send)
            return
        except BadBody as exc:
            refusal = await guard.arefusal(user, COUNT_TOKENS, exc.kind, str(exc))
            await _json(refusal.error_body(), refusal.status)(scope, receive, send)
            return
        if refused_body is not None:
            refusal = await guard.arefusal(user, COUNT_TOKENS, refused_body.error, refused_body.message)
            await _json(refusal.error_body(), refusal.status)(scope, receive, send)
            return
        await forward.count_tokens(scope, _replay(body, receive), send, str(user))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await forward.aclose()

    app = Starlette(
        routes=[
            Route(MESSAGES, _Endpoint(forward.messages), methods=["POST"]),
            Route(COUNT_TOKENS, _Endpoint(count_tokens), methods=["POST"]),
        ],
        middleware=[
            Middleware(KeyGate, guard=guard, keys=gateway_keys, surfaces=(MESSAGES, COUNT_TOKENS)),
            Middleware(
                SafeguardsMiddleware,
                safeguards=guard,
                identify=identify,
                routes=[MESSAGES],
                extract_prompt=extract_prompt,
                max_body_bytes=policy.max_body,
            ),
        ],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # "/v1/messages/" is a 404 in Anthropic's shape, as upstream
    app.state.upstream = forward
    app.state.keys = gateway_keys
    return app


OWN_FIELDS = {"templates": ("template", "variables"), "corpus": ("documents",)}


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that gives ``body`` once, then the client's own messages."""
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _Endpoint:
    """A plain ASGI endpoint (Starlette calls an object that is not a function as one)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    """404 / 405 in Anthropic's shape, as the API answers them."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    kind = "not_found_error" if status == 404 else "invalid_request_error" if status < 500 else "api_error"
    return _json(error_body(kind, f"{request.method} {request.url.path} is not served here."), status)


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)

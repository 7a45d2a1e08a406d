"""The gateway's front door, before ``SafeguardsMiddleware``: who is asking, from the headers
alone, before any of the body is read.

- No key: 401 at once. A wrong key: 401, and one more failure for the client address
  (``[gateway] bad_key_limit``); past the limit the address gets 429 and its keys are not
  looked up. These refusals are counted in the metrics and sampled into the audit log
  (:mod:`aupguard.gateway.callers`).
- A valid key: the ``anthropic-beta`` values are checked (``[gateway] betas``: 403
  ``permission_error``, recorded), then the request goes on with its user in the scope and a
  deadline on its body (``[gateway] body_timeout``): a body not received in full by then
  gets 408 ``request_timeout``, recorded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aupguard import Safeguards
from aupguard.adapters.routes import route_path, squashed
from aupguard.errors import AupguardError
from aupguard.gateway.callers import BadKeyThrottle, RefusalSampler, arefuse_sampled
from aupguard.gateway.controls import check_betas
from aupguard.gateway.keys import GatewayKeys
from aupguard.outcome import Decision, whole_seconds

__all__ = ["USER", "KeyGate", "gateway_key"]

#: The scope key under which the caller's user (a ``HashedUser``) reaches the app.
USER = "aupguard.gateway_user"
_NO_KEY = "A gateway key is required (x-api-key or Authorization: Bearer)."
_BAD_KEY = "A valid gateway key is required."


class AmbiguousKey(AupguardError):
    """The request names more than one key (two ``x-api-key`` headers, or ``x-api-key`` beside
    ``Authorization``): which one counts would be the proxy's guess, so none does."""


def gateway_key(headers: Any) -> str | None:
    """The caller's key: ``x-api-key`` (what the SDK sends), else ``Authorization: Bearer``;
    :class:`AmbiguousKey` when the request carries more than one."""
    keys, auths = headers.getlist("x-api-key"), headers.getlist("authorization")
    if len(keys) + len(auths) > 1:
        raise AmbiguousKey
    if keys:
        return str(keys[0]) or None
    scheme, _, token = (auths[0] if auths else "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class BodyTimeout(AupguardError):
    """Raised into whoever reads the body once ``[gateway] body_timeout`` has passed."""


class KeyGate:
    """``Middleware(KeyGate, guard=..., keys=..., surfaces=...)``, outside the safeguards."""

    def __init__(self, app: ASGIApp, *, guard: Safeguards, keys: GatewayKeys, surfaces: Collection[str]) -> None:
        self.app = app
        self.guard = guard
        self.keys = keys
        self.policy = guard.policy.gateway
        self.surfaces = frozenset(surfaces)
        self.throttle = BadKeyThrottle(self.policy.bad_key_limit)
        self.sampler = RefusalSampler()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = squashed(route_path(scope.get("path", "") or "/", scope.get("root_path", "")))
        surface = path if path in self.surfaces else "gateway"  # no caller-chosen text in the log
        headers = Headers(scope=scope)
        try:
            key = gateway_key(headers)
        except AmbiguousKey:
            message = "Send one gateway key: one x-api-key header, or one Authorization: Bearer header."
            await _answer(send, await self.guard.arefusal(None, surface, "invalid_request_error", message))
            return
        if not key:
            refused = await arefuse_sampled(self.guard, self.sampler, surface, "authentication_required",
                                            _NO_KEY, "gateway_key_missing")  # fmt: skip
            await _answer(send, refused)
            return
        address = scope["client"][0] if scope.get("client") else "unknown"
        wait = self.throttle.blocked_for(address)
        if wait is not None:
            message = "Too many requests with a wrong gateway key from this address."
            refused = await arefuse_sampled(self.guard, self.sampler, surface, "rate_limited", message,
                                            "gateway_key_throttled")  # fmt: skip
            await _answer(send, refused._replace(retry_after=whole_seconds(wait)))
            return
        user = await self.keys.auser_for(key)
        if user is None:
            self.throttle.failed(address)
            refused = await arefuse_sampled(self.guard, self.sampler, surface, "authentication_required",
                                            _BAD_KEY, "gateway_key_invalid")  # fmt: skip
            await _answer(send, refused)
            return
        betas = check_betas(headers.getlist("anthropic-beta"), self.policy)
        if betas is not None:
            await _answer(send, await self.guard.arefusal(user, surface, betas.error, betas.message))
            return
        await self._pass_on({**scope, USER: user}, receive, send, user, surface)

    async def _pass_on(self, scope: Scope, receive: Receive, send: Send, user: str, surface: str) -> None:
        body = _BodyDeadline(receive, self.policy.body_timeout)
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, body, watched_send)
        except BodyTimeout:
            if started:  # cannot happen once the body is read; kept for safety
                raise
            message = f"The request body did not arrive within {self.policy.body_timeout:g} seconds."
            await _answer(send, await self.guard.arefusal(user, surface, "request_timeout", message))


class _BodyDeadline:
    """``receive`` with a deadline on the body: from the request's arrival until its last
    chunk. After the body (a disconnect, later messages) it passes messages on as they come."""

    def __init__(self, receive: Receive, seconds: float) -> None:
        self.receive = receive
        self.until = asyncio.get_running_loop().time() + seconds
        self.done = False

    async def __call__(self) -> Message:
        if self.done:
            return await self.receive()
        try:
            async with asyncio.timeout_at(self.until):
                message = await self.receive()
        except TimeoutError:
            raise BodyTimeout from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        return message


async def _answer(send: Send, decision: Decision) -> None:
    body = json.dumps(decision.error_body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in decision.headers().items()]
    await send({"type": "http.response.start", "status": decision.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

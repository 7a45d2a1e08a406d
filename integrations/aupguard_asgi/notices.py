"""The notices route of :class:`~aupguard_asgi.SafeguardsMiddleware` (``notices_route``):
the identified user's own standing as JSON, and their appeals. Served by the middleware
itself, before any guard: a suspended user can still read why and appeal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException

from aupguard.adapters.body import TooLarge, declared_length, read_body
from aupguard.adapters.identity import BadIdentity
from aupguard.adapters.notices import (
    MAX_BODY,
    NoticesAnswer,
    answer_notices,
    error_answer,
    identify_http_answer,
    too_large,
)

if TYPE_CHECKING:
    from .middleware import SafeguardsMiddleware

__all__ = ["serve_notices"]

log = logging.getLogger("aupguard.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def serve_notices(mw: SafeguardsMiddleware, scope: Scope, receive: Receive, send: Send, appeals: bool) -> None:
    try:
        user = await mw.identify(scope, receive)
    except BadIdentity as exc:
        return await _answer(send, error_answer(400, "invalid_request_error", str(exc)))
    except HTTPException as exc:  # the app's own answer (a bad token): its status, as on a guarded route
        return await _answer(send, identify_http_answer(exc.status_code, exc.detail, exc.headers))
    except Exception as exc:  # the app's identify failed: its bug, logged without its message
        log.error("identify failed on the notices route: %s", exc.__class__.__name__)
        return await _answer(send, error_answer(500, "api_error", "The service failed to identify the caller."))
    body = b""
    if appeals and scope["method"] == "POST" and user is not None:
        try:
            body, disconnected = await read_body(receive, MAX_BODY, declared_length(scope.get("headers", ())))
        except TooLarge:
            return await _answer(send, too_large())
        if disconnected:
            return None
    answer = await asyncio.to_thread(answer_notices, mw.guard, user, scope["method"], appeals, body)
    await _answer(send, answer)


async def _answer(send: Send, answer: NoticesAnswer) -> None:
    headers = [(k.encode("latin-1", "replace"), v.encode("latin-1", "replace")) for k, v in answer.headers.items()]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})

"""``SafeguardsMiddleware``: the guarded call for any ASGI app, as pure ASGI middleware.

Per guarded request: identify the user, read the JSON body (capped), take the end user's
prompt from it, run the engine (account, terms, suspension, limits, prompt policy,
moderation), then replay the body to the app. Refusals answer in Anthropic's error shape.
Responses pass through message by message (streams are never buffered), with the
``RateLimit-*`` and ``Aupguard-*`` headers added. In ``parallel`` moderation mode the app
runs at once and only its first response message waits for the verdict.

Non-HTTP scopes (websockets) and routes that are not guarded pass straight through.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from aupguard import Decision, PromptRequest, Safeguards
from aupguard.adapters.body import (
    BODY_METHODS,
    TooLarge,
    declared_length,
    declares_body,
    is_preflight,
    read_body,
    refuse_form,
    too_large_message,
)
from aupguard.adapters.client_keys import client_key_of
from aupguard.adapters.identify_errors import aidentify_refusal
from aupguard.adapters.identity import BadIdentity, identify_failed, user_from_header
from aupguard.adapters.lifecycle import GuardedContext
from aupguard.adapters.notices import notices_paths
from aupguard.adapters.routes import RouteSet, route_set, squashed
from aupguard.adapters.routes import route_path as _route_path
from aupguard.adapters.surfaces import surface_name
from aupguard.engine.request_body import BadBody, parse_json, prompt_from_body
from aupguard.policy.config import LimitsPolicy

__all__ = ["SafeguardsMiddleware", "route_path"]

log = logging.getLogger("aupguard.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Identify = Callable[[Request], "str | Awaitable[str | None] | None"]
ExtractPrompt = Callable[[dict[str, Any]], "PromptRequest | str | None"]


class _NoBody(Exception):
    """The request carried no body (a GET, a DELETE): checked without a prompt."""


class _Discarded(Exception):
    """Raised into the app's ``send`` when a parallel verdict flags the request."""


class SafeguardsMiddleware:
    """``app.add_middleware(SafeguardsMiddleware, safeguards=guard, ...)``.

    - ``identify(request)``: the user id or None (sync or async); default: the authenticated
      ``scope["user"]`` (Starlette's AuthenticationMiddleware), then ``user_header`` when set.
    - ``user_header``: a header trusted to carry the user id (only behind your own gateway).
    - ``routes``: paths to guard (``"/v1/chat"``, or a prefix ``"/v1/*"``), relative to the
      app's mount point (see :mod:`aupguard.adapters.routes`), or a predicate over the ASGI scope;
      default: every HTTP route.
    - ``extract_prompt(json_body)``: the end user's prompt; default: Anthropic Messages shape
      (last user message), ``{"prompt": ...}`` or ``{"template": ..., "variables": ...}``.
    - ``max_body_bytes``: larger bodies get 413.
    - ``notices_route``: a path (``"/me/safety"``) where the identified user reads their own
      standing as JSON (GET), and files an appeal at ``<notices_route>/appeals`` (POST); see
      :mod:`aupguard.adapters.notices`. Unset: not served.
    - ``anonymous_key(request)``: with ``[identity] require_account = false``, what an anonymous
      caller is rate-limited by (hashed like a user id); default: the client address. Behind a
      proxy, give the address your proxy reports (e.g. from a header it sets).
    - ``enforcement``: ``"monitor"`` or ``"enforce"`` for the routes this middleware guards,
      overriding ``[enforcement] mode`` (roll out one app or one mount at a time).
    """

    def __init__(
        self,
        app: ASGIApp,
        safeguards: Safeguards,
        *,
        identify: Identify | None = None,
        user_header: str | None = None,
        routes: Iterable[str] | Callable[[Scope], bool] | None = None,
        extract_prompt: ExtractPrompt | None = None,
        max_body_bytes: int = 1_000_000,
        notices_route: str | None = None,
        anonymous_key: Callable[[Request], str | None] | None = None,
        enforcement: str | None = None,
    ) -> None:
        self.app = app
        self._anonymous_key = anonymous_key
        if enforcement not in (None, "enforce", "monitor"):
            raise ValueError("enforcement must be 'enforce' or 'monitor' (default: [enforcement] mode)")
        self.enforcement = enforcement or safeguards.policy.enforcement.mode
        self.guard = safeguards
        self._identify = identify
        self._identify_is_async = identify is not None and inspect.iscoroutinefunction(identify)
        self._user_header = user_header.lower().encode("latin-1") if user_header else None
        self._extract = extract_prompt or prompt_from_body
        self._max_body = max_body_bytes
        self._guard_all = routes is None
        self._predicate = routes if callable(routes) else None
        self._routes = (None if callable(routes) else route_set(routes)) or RouteSet(())
        self._notices = notices_paths(notices_route) if notices_route is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and self._notices is not None and route_path(scope) in self._notices:
            from .notices import serve_notices

            await serve_notices(self, scope, receive, send, route_path(scope) == self._notices[1])
        elif kind == "http" and self._guarded(scope):
            await _GuardedCall(self, scope, receive, send).run()
        elif kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
        else:
            await self.app(scope, receive, send)

    def _guarded(self, scope: Scope) -> bool:
        if scope["method"] == "OPTIONS" and _is_preflight(scope):  # a CORS preflight: no prompt, no credentials
            return False
        if self._guard_all:
            return True
        if self._predicate is not None:
            return bool(self._predicate(scope))
        return self._routes.matches(route_path(scope))

    def _lifespan_send(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":  # write every queued audit record first
                await asyncio.to_thread(self.guard.audit.flush)
            await send(message)

        return lifespan_send

    def client_key(self, scope: Scope, receive: Receive) -> str | None:
        """What an anonymous call is counted under: ``anonymous_key``, or the client address
        (an IPv6 address by its /64, see :mod:`aupguard.adapters.client_keys`)."""
        if self._anonymous_key is not None:
            return self._anonymous_key(Request(scope, receive))
        client = scope.get("client")
        return None if not client else client_key_of(client[0])

    async def identify(self, scope: Scope, receive: Receive) -> str | None:
        if self._identify is not None:
            request = Request(scope, receive)
            found = self._identify(request)
            return await found if self._identify_is_async else found  # type: ignore[misc,return-value]
        user = scope.get("user")
        if user is not None and getattr(user, "is_authenticated", False):
            try:
                return str(user.identity)
            except NotImplementedError:
                return str(user.display_name)
        if self._user_header is not None:
            sent: bytes | None = None
            for name, value in scope.get("headers", ()):
                if name == self._user_header:
                    if sent is not None:  # behind a proxy that appends, the first may be the client's
                        raise BadIdentity("the user id header is sent more than once")
                    sent = bytes(value)
            return None if sent is None else user_from_header(sent)
        return None

    def surface_of(self, scope: Scope) -> str:
        """The audit log's name for the route: the path within the app (without the mount
        point, repeated or trailing slashes), without control characters, cut to 200
        characters. (Paths that carry ids or emails put them in the log: keep ids in the
        body.)"""
        return surface_name(squashed(route_path(scope)))


class _GuardedCall:
    """The state of one guarded request (thrown away after it)."""

    def __init__(self, mw: SafeguardsMiddleware, scope: Scope, receive: Receive, send: Send) -> None:
        self.mw = mw
        self.scope = scope
        self.receive = receive
        self.send = send
        self.body = b""
        self.body_sent = False
        self.extra_headers: list[tuple[bytes, bytes]] = []
        self.warning: str | None = None
        self.held: Message | None = None

    async def run(self) -> None:
        guard, scope = self.mw.guard, self.scope
        surface = self.mw.surface_of(scope)
        try:
            user = await self.mw.identify(scope, self.receive)
        except BadIdentity as exc:
            return await self._refuse(await guard.arefusal(None, surface, "invalid_request_error", str(exc)))
        except HTTPException as exc:  # the app's own answer (a bad token): its status, not a 500
            refused = await aidentify_refusal(guard, surface, exc.status_code, exc.detail)
            return await self._refuse(refused, exc.headers)
        except Exception as exc:  # the app's identify failed: its bug, logged without its message
            return await self._refuse(identify_failed(log, surface, exc))
        if user is None and guard.policy.identity.require_account and self.mw.enforcement == "enforce":
            # 401 before any body is read (monitor mode reads and screens it, and lets it through)
            return await self._refuse(await guard.acheck(None, surface=surface, enforcement="enforce"))
        prompt: PromptRequest | str | None = None
        receive: Receive = self.receive
        parsed: dict[str, Any] | None = None
        # every method's body is read: HEAD goes to GET handlers, and HTTP/2 need not declare one
        try:
            self.body, disconnected = await read_body(
                self.receive, self.mw._max_body, declared_length(scope.get("headers", ()))
            )
            if disconnected:
                return
            if not self.body and scope["method"] not in BODY_METHODS:  # a GET without a body: no prompt
                raise _NoBody
            for name, value in scope.get("headers", ()):  # every Content-Type: frameworks differ on which counts
                if name == b"content-type":
                    refuse_form(value)
            if len(self.body) > _OFF_LOOP:  # a large body is read in a thread: the loop serves others
                parsed, prompt = await asyncio.to_thread(self._read, self.body)
            else:
                parsed, prompt = self._read(self.body)
        except TooLarge:
            message = too_large_message(self.mw._max_body)
            return await self._refuse(await guard.arefusal(user, surface, "request_too_large", message))
        except BadBody as exc:
            return await self._refuse(await guard.arefusal(user, surface, exc.kind, str(exc)))
        except _NoBody:
            pass
        receive = self._replay  # the app gets the body read for the checks, then the client's messages
        key = None if user is not None else self.mw.client_key(scope, self.receive)
        decision = await guard.acheck(
            user, surface=surface, prompt=prompt, defer_moderation=True, client_key=key, enforcement=self.mw.enforcement
        )
        if not decision.allowed:
            return await self._refuse(decision)
        cleaned = decision.body
        if cleaned is not None and cleaned is not parsed:  # the app reads what was screened, cleaned
            self.body = json.dumps(cleaned, ensure_ascii=False).encode("utf-8")
            scope = self.scope = _with_length(scope, len(self.body))
        self.extra_headers = _header_list(decision, guard.policy.limits)
        self.warning = decision.warning
        context = GuardedContext(user, decision)
        try:
            if decision.moderation_pending:
                await self._run_parallel(decision, receive)
            else:
                await self.mw.app(scope, receive, self._send)
        finally:
            context.end()  # tasks the app started keep a copy of the context: they see it ended

    def _read(self, body: bytes) -> tuple[dict[str, Any], PromptRequest | str | None]:
        parsed = parse_json(body)
        return parsed, self.mw._extract(parsed)

    async def _run_parallel(self, decision: Decision, receive: Receive) -> None:
        verdict = asyncio.ensure_future(self.mw.guard.ascreen(decision))
        started = False

        async def held_send(message: Message) -> None:
            nonlocal started
            if not started:  # the first byte waits for the verdict; the app's work did not
                screened = await verdict
                if not screened.allowed:
                    raise _Discarded
                started = True
            await self._send(message)

        try:
            with contextlib.suppress(_Discarded):  # the app's answer is discarded on a flag
                await self.mw.app(self.scope, receive, held_send)
        except Exception:
            screened = await verdict  # a flag still answers 403, even when the app failed
            if screened.allowed or started:
                raise
            await self._refuse(screened)
            return
        screened = await verdict
        if not screened.allowed and not started:
            await self._refuse(screened)

    async def _replay(self) -> Message:
        """The body read for the checks, once; then the client's own messages (disconnect)."""
        if not self.body_sent:
            self.body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        return await self.receive()

    async def _send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *self.extra_headers]}
            if self.warning is not None and _is_json(message):  # hold the start: a one-piece JSON gets the hint
                self.held = message
                return
        elif self.held is not None:
            start, self.held = self.held, None
            if message.get("more_body", False) or len(message.get("body", b"")) > _HINT_LIMIT:
                await self.send(start)  # a streamed or large JSON answer passes as it is
            else:
                start, body = _with_hint(start, message.get("body", b""), self.warning)
                await self.send(start)
                message = {"type": "http.response.body", "body": body}
        await self.send(message)

    async def _refuse(self, decision: Decision, extra: Mapping[str, str] | None = None) -> None:
        body = json.dumps(decision.error_body()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   *_header_list(decision, self.mw.guard.policy.limits, extra)]  # fmt: skip
        await self.send({"type": "http.response.start", "status": decision.status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


def route_path(scope: Scope) -> str:
    """The request's path within the app (``scope["path"]`` minus ``root_path``, which a
    ``Mount`` or ``uvicorn --root-path`` puts in both): what ``routes`` is matched against."""
    return _route_path(scope.get("path", "") or "/", scope.get("root_path", ""))


def _header_list(
    decision: Decision, limits: LimitsPolicy | None = None, extra: Mapping[str, str] | None = None
) -> list[tuple[bytes, bytes]]:
    """The decision's headers (and ``extra``: an identify exception's own, such as
    ``WWW-Authenticate``) as ASGI header pairs."""
    own = {k: v for k, v in (extra or {}).items() if k.lower() not in ("content-length", "content-type")}
    headers = {**own, **decision.headers(limits)}
    return [(k.lower().encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers.items()]


_HINT_LIMIT = 1_000_000  # a larger JSON answer is passed on as it is (the header still warns)


def _is_json(start: Message) -> bool:
    for name, value in start.get("headers", ()):
        if name.lower() == b"content-type":
            return bytes(value).split(b";")[0].strip() == b"application/json"
    return False


def _with_hint(start: Message, body: bytes, warning: str | None) -> tuple[Message, bytes]:
    """A warned user's JSON answer, with ``{"aupguard": {"warning": ...}}`` added when it is
    an object; anything else is passed on unchanged."""
    try:
        data = json.loads(body) if len(body) <= _HINT_LIMIT else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or "aupguard" in data:
        return start, body
    data["aupguard"] = {"warning": warning}
    new_body = json.dumps(data).encode()
    headers = [(n, v) for n, v in start.get("headers", ()) if n.lower() != b"content-length"]
    headers.append((b"content-length", str(len(new_body)).encode()))
    return {**start, "headers": headers}, new_body


def _with_length(scope: Scope, length: int) -> Scope:
    """``scope`` with its ``content-length`` header saying ``length`` (the cleaned body's)."""
    headers = [(n, v) for n, v in scope.get("headers", ()) if n != b"content-length"]
    return {**scope, "headers": [*headers, (b"content-length", str(length).encode())]}


_OFF_LOOP = 256 * 1024  # bytes of body above which parsing and reading it run off the event loop


def _is_preflight(scope: Scope) -> bool:
    headers = scope.get("headers", ())
    chunked = any(name == b"transfer-encoding" for name, _ in headers)
    declared = any(name == b"content-length" and declares_body(value, False) for name, value in headers)
    asks = any(name == b"access-control-request-method" for name, _ in headers)
    return is_preflight(scope["method"], asks, declared or chunked)

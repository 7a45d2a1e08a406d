"""Forwarding Messages-API requests to the upstream, answers streamed back chunk by chunk.

The guarded call (identify, gates, limits, prompt policy, moderation of every piece of the
request) has run in ``SafeguardsMiddleware`` before :meth:`Upstream.messages` is reached; it
finds the decision in the context variable the middleware set. What goes on is what was
screened: the body the decision holds (:func:`aupguard.engine.request_body.upstream_body`: cleaned
of invisible characters; built from the decision where the prompt policy wrote the prompt),
never the bytes the client sent. Here: ``metadata.user_id`` becomes the user's hash, the
upstream key replaces the caller's gateway key, and the answer is passed on as it
arrives (bytes untouched) while its events are read for the audit record (request id,
message id, usage, text for capture, Claude's refusals). A client that goes away mid-stream
closes the upstream stream, so the upstream stops generating.

With ``[moderation] output = true`` the answer's text is moderated too: a whole JSON answer
before it is passed on (a flagged one is replaced by the 403 refusal), a stream window by
window as it passes (see :class:`aupguard.engine.screening.OutputStream`), each event held until the
window it completes is judged, and the rest once the text has ended, before the events that
end the message. A flagged stream ends in an SSE ``error`` event instead, and the upstream
stream is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Receive, Scope, Send

from aupguard import Safeguards
from aupguard.engine.answer_facts import AnswerFacts
from aupguard.engine.answers import arecord_answer, linkable_id
from aupguard.engine.context import current_guarded
from aupguard.engine.output_stream import OutputStream
from aupguard.engine.request_body import BadBody, parse_json, upstream_body
from aupguard.outcome import Decision, error_body

from .client import UpstreamClient, UpstreamError, UpstreamResponse, UpstreamTimeout

__all__ = ["Upstream"]

log = logging.getLogger("aupguard.gateway")

#: Request headers passed to the upstream as the client sent them (the key never is).
PASSED_UP = (b"anthropic-version", b"anthropic-beta")
_PASSED_UP = {name: name.decode("ascii") for name in PASSED_UP}
#: Response headers passed back to the client, and every ``anthropic-ratelimit-*`` one (the
#: upstream's own limits: the client may pace itself by them, as with the API itself).
PASSED_DOWN = frozenset({b"content-type", b"request-id", b"retry-after", b"retry-after-ms", b"x-should-retry"})
UPSTREAM_LIMITS = b"anthropic-ratelimit-"
USER_AGENT = "aupguard-gateway"
_MAX_EVENT = 1 << 20  # an SSE event larger than this is passed on but not read


class Upstream:
    """The upstream Messages API, through one shared :class:`~.client.UpstreamClient` (a
    bounded pool of keep-alive connections; closed by :meth:`aclose` at shutdown)."""

    def __init__(self, guard: Safeguards, url: str, api_key: str, *, timeout: float) -> None:
        self.guard = guard
        self.url = url.rstrip("/")
        self._key = api_key
        self.client = UpstreamClient(self.url, timeout=timeout)
        self._moderates_output = guard.policy.moderation.output and bool(guard.moderation)

    def __repr__(self) -> str:  # never show the key
        return f"Upstream({self.url!r})"

    async def aclose(self) -> None:
        await self.client.aclose()

    def _headers(self, scope: Scope) -> list[tuple[str, str]]:
        headers = [("x-api-key", self._key), ("content-type", "application/json"), ("accept", "application/json"),
                   ("user-agent", USER_AGENT)]  # fmt: skip
        version = False
        for name, value in scope["headers"]:
            if name in _PASSED_UP:
                headers.append((_PASSED_UP[name], value.decode("latin-1")))
                version = version or name == b"anthropic-version"
        if not version:
            headers.append(("anthropic-version", "2023-06-01"))
        return headers

    async def messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /v1/messages``, after the middleware allowed it."""
        guarded = current_guarded()
        if guarded is None:  # only reachable when the app is mounted without the middleware
            await _error(send, 500, "api_error", "The gateway is misconfigured.")
            return
        await self._forward(scope, receive, send, "/v1/messages", guarded.decision)

    async def count_tokens(self, scope: Scope, receive: Receive, send: Send, user_hash: str) -> None:
        """``POST /v1/messages/count_tokens`` for an authenticated caller (no limits or audit)."""
        await self._forward(scope, receive, send, "/v1/messages/count_tokens", None, user_hash)

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, path: str, decision: Decision | None, user_hash: str = ""
    ) -> None:
        if decision is not None:  # what goes on is what was screened: the body the decision holds
            if decision.prompt is None:
                await _error(send, 400, "invalid_request_error", "The request body must be a JSON object.")
                return
            data = upstream_body(decision.prompt)
        else:
            try:
                data = parse_json(await _read_all(receive))
            except BadBody as exc:
                await _error(send, 400, "invalid_request_error", str(exc))
                return
        user_hash = decision.user_hash or "" if decision is not None else user_hash
        metadata = data.get("metadata")
        if decision is not None or metadata is not None:  # never the caller's own id, always the hash
            data["metadata"] = {**(metadata if isinstance(metadata, dict) else {}), "user_id": user_hash}
        # no headers or cookies are added (the upstream's cookies are never sent back)
        content = json.dumps(data).encode()
        try:
            response = await self.client.post(path, self._headers(scope), content)
        except UpstreamTimeout:
            log.warning("upstream timed out on %s", path)
            await _error(send, 504, "api_error", "The upstream API did not answer in time.")
            return
        except UpstreamError as exc:
            log.warning("upstream unreachable on %s: %s", path, exc)
            await _error(send, 502, "api_error", "The upstream API could not be reached.")
            return
        received = response.headers
        facts = AnswerFacts()
        anthropic_id = linkable_id(received.get(b"request-id", b"").decode("latin-1") or None)  # odd: not linked
        recorded = False

        async def finish(status: int = response.status, screened: Decision | None = None) -> None:
            """Record the answer once: before the client can see its end (so whatever the
            client does next finds it recorded), or, for a stream cut short, with what it
            carried. ``screened``: the decision once output moderation judged the answer."""
            nonlocal recorded
            if decision is None or recorded:
                return
            recorded = True
            if status < 400:  # the text was moderated here already, as it was relayed
                await arecord_answer(self.guard, screened or decision, anthropic_id, facts,
                                     output_moderated=self._moderates_output)  # fmt: skip
            else:  # the record says what the client got: the upstream's error
                reasons = (*decision.reasons, f"upstream_error:{status}")
                self.guard.audit.amend(decision.request_id, outcome="allowed", status=status,
                                       reasons=reasons)  # fmt: skip

        try:
            if decision is not None and anthropic_id:  # linked at once, even if the client goes away
                self.guard.audit.link(decision.request_id, anthropic_request_id=anthropic_id)
            headers = [(name, value) for name, value in received.items() if _passed_down(name)]
            start = {"type": "http.response.start", "status": response.status, "headers": headers}
            streamed = received.get(b"content-type", b"").startswith(b"text/event-stream")
            if streamed and response.status < 400:
                await send(start)
                output = self.guard.output_stream(decision) if decision is not None and self._moderates_output else None
                await _pump(response, receive, send, _EventTap(facts, output), lambda refused: finish(screened=refused))
            else:
                try:
                    content = await response.read()
                except UpstreamError as exc:  # cut off before the answer was whole: nothing was sent yet
                    log.warning("upstream answer cut off on %s: %s", path, exc)
                    await finish(502)
                    await _error(send, 502, "api_error", "The upstream API's answer was cut off.")
                    return
                start["headers"] = [*headers, (b"content-length", str(len(content)).encode())]
                if response.status == 200 and decision is not None:
                    with contextlib.suppress(ValueError):
                        facts.see_message(json.loads(content))
                    if self._moderates_output:
                        screened = await self.guard.ascreen_output(decision, facts.moderated_text)
                        if not screened.allowed:  # withheld: the record says why, the answer is still linked
                            await finish(screened=screened)
                            await _error(send, screened.status, screened.error or "api_error", screened.message)
                            return
                await finish()
                await send(start)
                await send({"type": "http.response.body", "body": content})
        finally:
            response.close()
            await finish()


async def _pump(
    response: UpstreamResponse,
    receive: Receive,
    send: Send,
    tap: _EventTap,
    finish: Callable[[Decision | None], Awaitable[None]],
) -> None:
    """Pass the stream on as it comes, until it ends or the client disconnects."""

    async def relay() -> None:
        refused: Decision | None = None
        async for chunk in response.chunks():
            if tap.output is None:  # nothing to wait for: pass it on first, read it after
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                tap.feed(chunk)
                continue
            for piece in _event_pieces(chunk):  # a chunk may carry many events: each is judged before it goes
                refused = await tap.afeed(piece)
                if refused is not None:  # the flagged window's event and everything after are withheld
                    await send({"type": "http.response.body", "body": _sse_error(refused), "more_body": True})
                    break
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            if refused is not None:
                break
        await finish(refused)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    relaying = asyncio.ensure_future(relay())
    watching = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait((relaying, watching), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (relaying, watching):
            task.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    if not relaying.cancelled() and relaying.done():
        relaying.result()  # a failure while relaying (or a discarded answer) is the caller's to see
    else:
        with contextlib.suppress(asyncio.CancelledError):
            await relaying


class _EventTap:
    """Reads SSE events out of the chunks as they pass (a chunk may hold part of an event);
    with ``output``, also moderates the answer's text as it grows."""

    def __init__(self, facts: AnswerFacts, output: OutputStream | None = None) -> None:
        self.facts = facts
        self.output = output
        self.pending = b""

    def _events(self, chunk: bytes) -> list[Any]:
        data = self.pending + chunk.replace(b"\r\n", b"\n")
        *events, self.pending = data.split(b"\n\n")
        if len(self.pending) > _MAX_EVENT:
            self.pending = b""
        found = []
        for event in events:
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    with contextlib.suppress(ValueError):
                        found.append(json.loads(line[5:]))
        return found

    def feed(self, chunk: bytes) -> None:
        for event in self._events(chunk):
            self.facts.see_json(event)

    async def afeed(self, chunk: bytes) -> Decision | None:
        """Read ``chunk``'s events; the refusal once the text so far is flagged (``block``):
        windows as they fill, and the rest when the message's text has ended."""
        assert self.output is not None
        for event in self._events(chunk):
            self.facts.see_json(event)
            if not isinstance(event, dict):
                continue
            kind = event.get("type")
            refused: Decision | None = None
            if kind == "content_block_delta":  # text, thinking and tool-use input alike
                delta = event.get("delta")
                text = _delta_text(delta) if isinstance(delta, dict) else None
                if text is not None:
                    refused = await self.output.afeed(text)
            elif kind in ("message_delta", "message_stop"):  # no more text: judge what is left
                final = await self.output.afinish()
                refused = None if final.allowed else final
            if refused is not None:
                return refused
        return None


def _event_pieces(chunk: bytes) -> list[bytes]:
    """``chunk`` cut after each blank line that ends an SSE event (the bytes unchanged)."""
    pieces = chunk.split(b"\n\n")
    return [piece + b"\n\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])


def _delta_text(delta: dict[str, Any]) -> str | None:
    for name in ("text", "thinking", "partial_json"):
        value = delta.get(name)
        if isinstance(value, str):
            return value
    return None


def _sse_error(decision: Decision) -> bytes:
    """The SSE ``error`` event that ends a withheld stream (what the SDKs raise on)."""
    body = {**error_body(decision.error or "api_error", decision.message), "request_id": decision.request_id}
    return b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"


def _passed_down(name: bytes) -> bool:
    return name in PASSED_DOWN or name.startswith(UPSTREAM_LIMITS)


async def _read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _error(send: Send, status: int, kind: str, message: str) -> None:
    body = json.dumps(error_body(kind, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

"""``guard.instrument(client)``: an Anthropic client whose Messages calls are guarded.

Through the SDK's own ``middleware=`` hook (no monkeypatching), for every ``POST /v1/messages``:

- the current user comes from the guarded request in progress (an adapter set it) or from
  ``with guard.as_user("u-42"):``; a call with no user follows ``[identity] require_account``
  (refused with :class:`~aupguard.engine.screening.Refused` before anything is sent);
- a call made under ``as_user`` outside an adapter is checked (account, terms, suspension,
  limits, and moderation of every piece of its body: the app's system prompt, every turn,
  tool results, documents) and gets its own audit record, surface ``anthropic``; the body
  sent is the one screened, cleaned of invisible characters. A body an adapter screened
  already is not screened again (the adapter's decision stands for the call). The SDK's
  retries of one call are one guarded call: checked, counted and recorded once;
- ``metadata.user_id`` is set to the user's keyed hash, replacing anything the app put there;
- Anthropic's ``request-id`` header and the ``msg_...`` id are linked to the audit record
  (streams: from ``message_start``, as the app reads the stream);
- the answer's ``usage`` counts against the user's ``[limits] tokens`` budget, and with
  ``[capture]`` on its text is captured, encrypted (streams: when the app has read them);
- an answer with ``stop_reason: "refusal"`` is Claude's own safety signal: it gets a review
  item (and a strike with ``[moderation] refusals = "strike"``; ``"log"`` only records it).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

import anthropic
from anthropic._middleware import AsyncCallNext, CallNext, Middleware
from anthropic._request import APIRequest

from ..outcome import Decision
from .answers import AnswerFacts, linkable_id, record_answer
from .context import Guarded, current_guarded, reset_guarded, set_guarded
from .prompt_policy import PromptRequest
from .request_body import BadBody, prompt_from_body, upstream_body
from .request_pieces import read_messages

if TYPE_CHECKING:
    from anthropic._response import APIResponse, AsyncAPIResponse

    from .safeguards import Safeguards

__all__ = ["GuardMiddleware", "as_user", "instrument"]

ClientT = TypeVar("ClientT", anthropic.Anthropic, anthropic.AsyncAnthropic)
_as_user: ContextVar[str | None] = ContextVar("aupguard_as_user", default=None)


@contextlib.contextmanager
def as_user(user_id: str, decision: Decision | None = None) -> Iterator[None]:
    """Make ``user_id`` the current user for instrumented calls in this block (and, with a
    ``decision``, the guarded request they link to)."""
    token = _as_user.set(user_id)
    guarded = set_guarded(Guarded(user_id, decision)) if decision is not None else None
    try:
        yield
    finally:
        if guarded is not None:
            reset_guarded(guarded)
        _as_user.reset(token)


def instrument(guard: Safeguards, client: ClientT) -> ClientT:
    """A copy of ``client`` with the guard's middleware outermost (once: instrumenting an
    instrumented client returns it as it is)."""
    if any(isinstance(m, GuardMiddleware) for m in client.middleware):
        return client
    return client.with_options(middleware=[GuardMiddleware(guard), *client.middleware])


def _is_batch(request: APIRequest) -> bool:
    return request.method.lower() == "post" and request.url.rstrip("/").endswith("/messages/batches")


def _is_messages(request: APIRequest) -> bool:
    return request.method.lower() == "post" and request.url.rstrip("/").endswith("/v1/messages")


_ATTEMPTS = 4096  # calls whose decision is kept for the SDK's retries (the oldest go first)
_RETRIED = frozenset({408, 409, 429}) | frozenset(range(500, 600))  # what the SDK retries


class GuardMiddleware(Middleware):
    def __init__(self, guard: Safeguards) -> None:
        self.guard = guard
        self._attempts: OrderedDict[str, Decision] = OrderedDict()

    # -- before the request ------------------------------------------------------------

    @staticmethod
    def _prepare(request: APIRequest, decision: Decision, own: bool) -> APIRequest:
        screened = decision.prompt if own else None  # what this middleware screened is what goes on
        if screened is not None and screened.body is not None:
            body = upstream_body(screened)
        elif not isinstance(request.json, dict):
            return request
        else:  # an adapter screened the call: what the app sends is still cleaned of hidden text
            body = _cleaned(request.json)
        metadata = dict(body.get("metadata") or {})
        if decision.user_hash is not None:
            body["metadata"] = {**metadata, "user_id": decision.user_hash}
        elif "user_id" in metadata:  # an anonymous call: no id at all goes on, not the app's raw one
            del metadata["user_id"]
            body["metadata"] = metadata
        return request.copy(body=body)

    @staticmethod
    def _request_of(request: APIRequest) -> PromptRequest | str:
        """The call's body as the core screens it (the app wrote it: moderated, not held to
        the prompt policy), or why it cannot be screened."""
        body = request.json
        if not isinstance(body, Mapping):
            return "the request body must be a JSON object"
        try:
            return prompt_from_body(dict(body), origin="app")
        except BadBody as exc:
            return str(exc)

    def _retried(self, request: APIRequest) -> Decision | None:
        """The decision of a call the SDK is retrying (same idempotency key): one call, one check."""
        key = request.options.idempotency_key
        return self._attempts.get(key) if key and request.retries_taken else None

    def _remember(self, request: APIRequest, decision: Decision) -> Decision:
        key = request.options.idempotency_key
        if key:
            self._attempts[key] = decision
            if len(self._attempts) > _ATTEMPTS:
                self._attempts.popitem(last=False)
        return decision

    def _settled(self, request: APIRequest, status: int) -> None:
        """A call that was answered (not an error the SDK may retry) is not retried: its
        decision, which holds the whole screened body, is not kept."""
        if status < 400 or status not in _RETRIED:
            self._attempts.pop(request.options.idempotency_key or "", None)

    def _own(self, request: APIRequest) -> Decision:
        retried = self._retried(request)
        if retried is not None:
            return retried
        user, found = _as_user.get(), self._request_of(request)
        if isinstance(found, str):  # refused, and recorded like any refusal
            return self._remember(request, self.guard.refusal(user, "anthropic", "invalid_request_error", found))
        return self._remember(request, self.guard.check(user, surface="anthropic", prompt=found))

    async def _aown(self, request: APIRequest) -> Decision:
        retried = self._retried(request)
        if retried is not None:
            return retried
        user, found = _as_user.get(), self._request_of(request)
        if isinstance(found, str):
            decision = await self.guard.arefusal(user, "anthropic", "invalid_request_error", found)
            return self._remember(request, decision)
        return self._remember(request, await self.guard.acheck(user, surface="anthropic", prompt=found))

    def _hash_batch(self, request: APIRequest) -> APIRequest:
        """A message batch carries many requests, each with the app's own ``metadata.user_id``:
        each is replaced by its hash, so no raw id leaves in a batch either (a batch is not a
        guarded call of one user: its requests are not checked here)."""
        body = dict(request.json) if isinstance(request.json, dict) else None
        if body is None or not isinstance(body.get("requests"), list):
            return request
        requests = []
        for item in body["requests"]:
            params = item.get("params") if isinstance(item, dict) else None
            metadata = params.get("metadata") if isinstance(params, dict) else None
            raw = metadata.get("user_id") if isinstance(metadata, dict) else None
            if isinstance(raw, str) and raw:
                hashed = self.guard.hash_user(raw)
                item = {**item, "params": {**params, "metadata": {**metadata, "user_id": hashed}}}  # type: ignore[dict-item]
            requests.append(item)
        return request.copy(body={**body, "requests": requests})

    @staticmethod
    def _allowed(decision: Decision) -> Decision:
        from .screening import Refused

        if not decision.allowed:
            raise Refused(decision)
        return decision

    # -- after the response ------------------------------------------------------------

    def _observe(self, decision: Decision, headers: Any, message: Any) -> None:
        usage = getattr(message, "usage", None)
        tin = _tokens(getattr(usage, "input_tokens", None) if usage is not None else None)
        tout = _tokens(getattr(usage, "output_tokens", None) if usage is not None else None)
        self.guard.spend_tokens(decision, (tin or 0) + (tout or 0))
        self.guard.audit.link(  # what the API says is data: an id the log cannot hold is left out
            decision.request_id,
            anthropic_request_id=linkable_id(headers.get("request-id")),
            message_id=linkable_id(getattr(message, "id", None)),
            model=linkable_id(getattr(message, "model", None)),
            input_tokens=tin,
            output_tokens=tout,
        )
        if getattr(message, "stop_reason", None) == "refusal":
            self.guard.record_refusal(decision, message)

    def _tap_stream(self, decision: Decision, headers: Any, stream: Any) -> None:
        """Watch a streamed answer's events as the app reads them: the message id and input
        tokens from ``message_start``, output tokens from ``message_delta``, the text from the
        deltas; linked, counted and captured when the stream ends. (The SDK's stream object
        is the one the app gets: ``parse()`` caches it.)"""
        request_id = linkable_id(headers.get("request-id"))
        if request_id:  # linked at once: even a stream that is never read names its request
            self.guard.audit.link(decision.request_id, anthropic_request_id=request_id)
        seen = AnswerFacts()
        inner = stream._iterator  # the SDK's own event iterator (made on first use)
        guard = self.guard

        def finish() -> None:
            record_answer(guard, decision, request_id, seen)

        if hasattr(inner, "__anext__"):

            async def atap() -> Any:
                try:
                    async for event in inner:
                        seen.see(event)
                        yield event
                finally:
                    finish()

            stream.__dict__["_iterator"] = atap()
        else:

            def tap() -> Any:
                try:
                    for event in inner:
                        seen.see(event)
                        yield event
                finally:
                    finish()

            stream.__dict__["_iterator"] = tap()

    # -- the hooks -----------------------------------------------------------------------

    def handle(self, request: APIRequest, call_next: CallNext) -> APIResponse[Any]:
        if _is_batch(request):
            return call_next(self._hash_batch(request))
        if not _is_messages(request):
            return call_next(request)
        guarded = current_guarded()
        own = guarded is None  # no adapter: this call is the guarded call, with its own record
        decision = self._own(request) if guarded is None else guarded.decision
        self._allowed(decision)  # also a refused decision handed over by the app
        if guarded is None:
            guarded = Guarded(_as_user.get(), decision)
        guarded.tokens_counted = True
        token = set_guarded(guarded) if own else None
        try:
            response = call_next(self._prepare(request, decision, own))
            self._settled(request, response.status_code)
            if request.stream and response.status_code < 400:
                self._tap_stream(decision, response.headers, response.parse())
                return response
            message = None if response.status_code >= 400 else response.parse()
            self._observe(decision, response.headers, message)
            if message is not None and self.guard.capture.enabled:
                self.guard.capture_completion(decision, _text_of(message))
            return response
        finally:
            if token is not None:
                reset_guarded(token)

    async def handle_async(self, request: APIRequest, call_next: AsyncCallNext) -> AsyncAPIResponse[Any]:
        if _is_batch(request):
            return await call_next(self._hash_batch(request))
        if not _is_messages(request):
            return await call_next(request)
        guarded = current_guarded()
        own = guarded is None
        decision = await self._aown(request) if guarded is None else guarded.decision
        self._allowed(decision)  # also a refused decision handed over by the app
        if guarded is None:
            guarded = Guarded(_as_user.get(), decision)
        guarded.tokens_counted = True
        token = set_guarded(guarded) if own else None
        try:
            response = await call_next(self._prepare(request, decision, own))
            self._settled(request, response.status_code)
            if request.stream and response.status_code < 400:
                self._tap_stream(decision, response.headers, await response.parse())
                return response
            message = None if response.status_code >= 400 else await response.parse()
            self._observe(decision, response.headers, message)
            if message is not None and self.guard.capture.enabled:
                await self.guard.acapture(decision, "completion", _text_of(message))
            return response
        finally:
            if token is not None:
                reset_guarded(token)


def _cleaned(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with invisible characters removed from every piece of text (an adapter
    screened the call, and a LangChain callback cannot change what its model sends). A
    body the walk cannot read goes as the app wrote it: the adapter screened what it saw."""
    try:
        return dict(read_messages(body).body)
    except BadBody:
        return dict(body)


def _text_of(message: Any) -> str:
    return "".join(getattr(block, "text", "") for block in getattr(message, "content", []) or [])


def _tokens(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

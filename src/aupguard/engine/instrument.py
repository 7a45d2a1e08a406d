"""``guard.instrument(client)``: an Anthropic client whose Messages calls are guarded
(``Anthropic`` / ``AsyncAnthropic``, and the Bedrock and Vertex AI clients).

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
- ``metadata.user_id`` is set to the user's keyed hash, replacing anything the app put there
  (Bedrock and Vertex: ``metadata`` holds that and nothing else, as Bedrock demands);
- the answer goes to the one answer recorder (:mod:`aupguard.engine.answers`): the
  platform's request id (``request-id``, Bedrock's ``x-amzn-requestid``) and the ``msg_...``
  id are linked to the audit record, the ``usage`` counts against ``[limits] tokens``, the
  text is captured (``[capture]``) and moderated (``[moderation] output``: a blocked answer
  that is not streamed raises ``Refused``), and a ``stop_reason: "refusal"`` is handled per
  ``[moderation] refusals``. Streams are recorded when the app has read them.
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
from ..telemetry.genai import traced_acall, traced_call
from .answer_facts import AnswerFacts, request_id_of
from .answers import arecord_answer, linkable_id, record_answer
from .context import Guarded, current_guarded, reset_guarded, set_guarded
from .outbound import hashed_batch, outbound_body
from .prompt_policy import PromptRequest
from .request_body import BadBody, prompt_from_body

if TYPE_CHECKING:
    from anthropic._response import APIResponse, AsyncAPIResponse

    from .host import Guard

__all__ = ["GuardMiddleware", "as_user", "instrument"]

ClientT = TypeVar(
    "ClientT",
    anthropic.Anthropic,
    anthropic.AsyncAnthropic,
    anthropic.AnthropicBedrock,
    anthropic.AsyncAnthropicBedrock,
    anthropic.AnthropicVertex,
    anthropic.AsyncAnthropicVertex,
)
#: Clients of cloud platforms whose Messages API accepts no ``metadata`` key but ``user_id``
#: (Bedrock answers 400 to any other): only the hash goes in their ``metadata``.
_CLOUD = (anthropic.AnthropicBedrock, anthropic.AsyncAnthropicBedrock, anthropic.AnthropicVertex,
          anthropic.AsyncAnthropicVertex)  # fmt: skip
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


def instrument(guard: Guard, client: ClientT) -> ClientT:
    """A copy of ``client`` with the guard's middleware outermost (once: instrumenting an
    instrumented client returns it as it is)."""
    if any(isinstance(m, GuardMiddleware) for m in client.middleware):
        return client
    middleware = GuardMiddleware(guard, only_user_id=isinstance(client, _CLOUD))
    return client.with_options(middleware=[middleware, *client.middleware])


def _is_batch(request: APIRequest) -> bool:
    return request.method.lower() == "post" and request.url.rstrip("/").endswith("/messages/batches")


def _is_messages(request: APIRequest) -> bool:
    return request.method.lower() == "post" and request.url.rstrip("/").endswith("/v1/messages")


_ATTEMPTS = 4096  # calls whose decision is kept for the SDK's retries (the oldest go first)
_RETRIED = frozenset({408, 409, 429}) | frozenset(range(500, 600))  # what the SDK retries


class GuardMiddleware(Middleware):
    def __init__(self, guard: Guard, *, only_user_id: bool = False) -> None:
        self.guard = guard
        self._only_user_id = only_user_id  # Bedrock, Vertex: metadata holds user_id or nothing
        self._attempts: OrderedDict[str, Decision] = OrderedDict()

    # -- before the request ------------------------------------------------------------

    def _prepare(self, request: APIRequest, decision: Decision, own: bool) -> APIRequest:
        screened = decision.prompt if own else None  # what this middleware screened is what goes on
        body = outbound_body(request.json, screened, decision.user_hash, only_user_id=self._only_user_id)
        return request if body is None else request.copy(body=body)

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
        body = hashed_batch(request.json, self.guard.hash_user)
        return request if body is None else request.copy(body=body)

    @staticmethod
    def _allowed(decision: Decision) -> Decision:
        from .screening import Refused

        if not decision.allowed:
            raise Refused(decision)
        return decision

    # -- after the response ------------------------------------------------------------

    def _failed(self, decision: Decision, request_id: str | None) -> None:
        """An error answer: only the request id is linked (nothing was answered)."""
        request_id = linkable_id(request_id)
        if request_id:
            self.guard.audit.link(decision.request_id, anthropic_request_id=request_id)

    @staticmethod
    def _withheld(answered: Decision) -> None:
        """An answer output moderation blocked is not handed to the app."""
        from .screening import Refused

        if not answered.allowed:
            raise Refused(answered)

    def _tap_stream(self, decision: Decision, request_id: str | None, stream: Any) -> None:
        """Watch a streamed answer's events as the app reads them: the message id and input
        tokens from ``message_start``, output tokens from ``message_delta``, the text from the
        deltas; recorded when the stream ends (read to the end, closed or abandoned). (The
        SDK's stream object is the one the app gets: ``parse()`` caches it.)"""
        self._failed(decision, request_id)  # linked at once: even a stream never read names its request
        seen = AnswerFacts()
        inner = stream._iterator  # the SDK's own event iterator (made on first use)
        guard = self.guard

        if hasattr(inner, "__anext__"):

            async def atap() -> Any:
                try:
                    async for event in inner:
                        seen.see(event)
                        yield event
                finally:
                    await arecord_answer(guard, decision, request_id, seen)

            stream.__dict__["_iterator"] = atap()
        else:

            def tap() -> Any:
                try:
                    for event in inner:
                        seen.see(event)
                        yield event
                finally:
                    record_answer(guard, decision, request_id, seen)

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
        guarded.answer_recorded = True
        token = set_guarded(guarded) if own else None
        call_next = traced_call(self.guard, decision, call_next)  # a GenAI span (itself without a tracer)
        try:
            response = call_next(self._prepare(request, decision, own))
            self._settled(request, response.status_code)
            request_id = request_id_of(response.headers)
            if response.status_code >= 400:
                self._failed(decision, request_id)
            elif request.stream:
                self._tap_stream(decision, request_id, response.parse())
            else:
                facts = AnswerFacts()
                facts.see_sdk_message(response.parse())
                self._withheld(record_answer(self.guard, decision, request_id, facts))
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
        guarded.answer_recorded = True
        token = set_guarded(guarded) if own else None
        call_next = traced_acall(self.guard, decision, call_next)  # a GenAI span (itself without a tracer)
        try:
            response = await call_next(self._prepare(request, decision, own))
            self._settled(request, response.status_code)
            request_id = request_id_of(response.headers)
            if response.status_code >= 400:
                self._failed(decision, request_id)
            elif request.stream:
                self._tap_stream(decision, request_id, await response.parse())
            else:
                facts = AnswerFacts()
                facts.see_sdk_message(await response.parse())
                self._withheld(await arecord_answer(self.guard, decision, request_id, facts))
            return response
        finally:
            if token is not None:
                reset_guarded(token)

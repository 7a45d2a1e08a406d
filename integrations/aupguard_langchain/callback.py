"""``SafeguardsCallbackHandler``: the guarded call for LangChain chat models and LLMs.

``on_chat_model_start`` / ``on_llm_start`` run the whole check (account, terms, suspension,
limits, prompt policy on the last human message, moderation of every message of the call:
system, history, AI turns with their tool calls, tool results) and stop the run with
:class:`aupguard.Refused` when it may not proceed; ``on_llm_end`` hands the answer to the
engine's one answer recorder (:mod:`aupguard.engine.answers`: message id and usage linked,
tokens counted, text captured, Claude's refusals handled, output moderated, a blocked answer
stopping the run with :class:`aupguard.Refused`), unless an instrumented model recorded it
already. The user comes from the constructor or from ``config["metadata"]["user_id"]``.

The handler sets ``raise_error`` (LangChain would otherwise swallow the refusal) and
``run_inline`` (so the guarded request, a context variable, reaches the model's own call in
the same task: an instrumented client then links its ids to this record and sends the hash).
"""

from __future__ import annotations

import contextlib
import sys
from contextvars import Token
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult

from aupguard import Decision, PromptRequest, Refused, Safeguards
from aupguard.engine.answer_facts import AnswerFacts, as_namespace
from aupguard.engine.answers import arecord_answer, record_answer
from aupguard.engine.context import Guarded, reset_guarded, set_guarded
from aupguard.engine.request_body import BadBody, prompt_from_body

from .messages import as_messages_body, prompts_body

__all__ = ["AsyncSafeguardsCallbackHandler", "SafeguardsCallbackHandler", "SyncRunNotGuarded", "instrument_chat_model"]

SURFACE = "langchain"


def instrument_chat_model(guard: Safeguards, model: Any) -> Any:
    """Make a ``ChatAnthropic`` send the hashed ``metadata.user_id`` and link Anthropic's ids:
    its SDK clients are replaced by instrumented copies. Returns the model."""
    model.__dict__["_client"] = guard.instrument(model._client)
    model.__dict__["_async_client"] = guard.instrument(model._async_client)
    return model


def _request(body: dict[str, Any]) -> PromptRequest | str:
    """The call as the core reads it, or the reason it cannot be screened."""
    try:
        return prompt_from_body(body, origin="chain")
    except BadBody as exc:
        return str(exc)


class _Runs:
    """Per-run state: the decision and the context token, keyed by LangChain's run id."""

    def __init__(self, guard: Safeguards, user_id: str | None) -> None:
        self.guard = guard
        self.user_id = user_id
        self.decisions: dict[UUID, Guarded] = {}
        self.tokens: dict[UUID, Token[Guarded | None]] = {}

    def user(self, metadata: dict[str, Any] | None) -> str | None:
        if self.user_id is not None:
            return self.user_id
        found = (metadata or {}).get("user_id")
        return found if isinstance(found, str) else None

    def check(self, user: str | None, request: PromptRequest | str) -> Decision:
        if isinstance(request, str):  # a shape the core cannot screen: refused, and recorded
            return self.guard.refusal(user, SURFACE, "invalid_request_error", request)
        return self.guard.check(user, surface=SURFACE, prompt=request)

    async def acheck(self, user: str | None, request: PromptRequest | str) -> Decision:
        if isinstance(request, str):
            return await self.guard.arefusal(user, SURFACE, "invalid_request_error", request)
        return await self.guard.acheck(user, surface=SURFACE, prompt=request)

    def begin(self, run_id: UUID, user: str | None, decision: Decision) -> None:
        if not decision.allowed:
            raise Refused(decision)
        guarded = Guarded(user, decision)
        self.decisions[run_id] = guarded
        self.tokens[run_id] = set_guarded(guarded)

    def end(self, run_id: UUID, response: LLMResult | None) -> tuple[Decision, AnswerFacts] | None:
        """Close the run; the answer still to record (None when there is none, or when an
        instrumented model recorded it as it came)."""
        guarded = self.decisions.pop(run_id, None)
        token = self.tokens.pop(run_id, None)
        if guarded is not None:
            guarded.ended = True  # wherever LangChain carried the context, it no longer counts
        if token is not None:
            with contextlib.suppress(ValueError):  # ended in another context: the flag above covers it
                reset_guarded(token)
        if guarded is None or response is None or guarded.answer_recorded:
            return None
        return guarded.decision, _result_facts(response)


def _result_facts(response: LLMResult) -> AnswerFacts:
    """What a finished run says of Claude's answer, where LangChain has it: the message's
    ``response_metadata`` (streams too), else ``llm_output``; usage also from ``usage_metadata``."""
    output = response.llm_output or {}
    generation = response.generations[0][0] if response.generations and response.generations[0] else None
    message = getattr(generation, "message", None)
    metadata = {**output, **(getattr(message, "response_metadata", None) or {})}
    facts = AnswerFacts()
    candidates = (metadata.get("id"), output.get("id"))
    facts.message_id = next((c for c in candidates if isinstance(c, str) and c.startswith("msg_")), None)
    model = metadata.get("model") or metadata.get("model_name")
    facts.model = model if isinstance(model, str) else None
    usage = metadata.get("usage")
    if not isinstance(usage, dict):
        usage = getattr(message, "usage_metadata", None) or {}
    facts.input_tokens = _count(usage.get("input_tokens"))
    facts.output_tokens = _count(usage.get("output_tokens"))
    text = getattr(generation, "text", "") or ""
    if text:
        facts.text.append(text)
    stop = metadata.get("stop_reason")
    facts.stop_reason = stop if isinstance(stop, str) else None
    facts.stop_details = as_namespace(metadata.get("stop_details"))
    return facts


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class SafeguardsCallbackHandler(BaseCallbackHandler):
    """``chain.invoke(x, config={"callbacks": [SafeguardsCallbackHandler(guard)],
    "metadata": {"user_id": "u-42"}})``. Works under ``invoke``, ``batch``, ``stream`` and
    also ``ainvoke`` (it runs inline)."""

    raise_error = True
    run_inline = True

    def __init__(self, guard: Safeguards, user_id: str | None = None) -> None:
        self._runs = _Runs(guard, user_id)

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID,
        metadata: dict[str, Any] | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        user = self._runs.user(metadata)
        decision = self._runs.check(
            user, _request(as_messages_body(messages[0] if messages else [], kwargs.get("invocation_params")))
        )
        self._runs.begin(run_id, user, decision)

    def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
        metadata: dict[str, Any] | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        user = self._runs.user(metadata)
        decision = self._runs.check(user, _request(prompts_body(prompts)))
        self._runs.begin(run_id, user, decision)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        answer = self._runs.end(run_id, response)
        if answer is not None:
            answered = record_answer(self._runs.guard, answer[0], None, answer[1])
            if not answered.allowed:  # output moderation blocked the answer: the chain stops here
                raise Refused(answered)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._runs.end(run_id, None)


class SyncRunNotGuarded(BaseException):
    """An :class:`AsyncSafeguardsCallbackHandler` was attached to a sync run (``invoke``,
    ``stream``, ``batch``). LangChain runs an async handler's coroutine there on a loop of its
    own and swallows every ``Exception`` it raises, so a refusal would be lost and the model
    called anyway. This is a ``BaseException``, which LangChain does not swallow: the run
    stops. Attach :class:`SafeguardsCallbackHandler` to sync runs (it also serves async ones)."""


def _refuse_a_sync_run() -> None:
    """Stop the run when this coroutine is being run by LangChain's sync callback manager
    (its ``_run_coros``, which swallows errors): the chain must never go on unguarded."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_run_coros" and frame.f_globals.get("__name__") == _SYNC_MANAGER:
            raise SyncRunNotGuarded(
                "AsyncSafeguardsCallbackHandler cannot guard a sync run (LangChain swallows its errors there): "
                "use SafeguardsCallbackHandler"
            )
        frame = frame.f_back  # type: ignore[assignment]


_SYNC_MANAGER = "langchain_core.callbacks.manager"


class AsyncSafeguardsCallbackHandler(AsyncCallbackHandler):
    """The async twin, for ``ainvoke`` / ``astream`` / ``abatch``: store reads and remote
    moderators run off the event loop. Attached to a sync run it stops the run with
    :class:`SyncRunNotGuarded` (LangChain would swallow its refusals there): use
    :class:`SafeguardsCallbackHandler` for sync runs."""

    raise_error = True
    run_inline = True

    def __init__(self, guard: Safeguards, user_id: str | None = None) -> None:
        self._runs = _Runs(guard, user_id)

    async def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID,
        metadata: dict[str, Any] | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        _refuse_a_sync_run()
        user = self._runs.user(metadata)
        decision = await self._runs.acheck(
            user, _request(as_messages_body(messages[0] if messages else [], kwargs.get("invocation_params")))
        )
        self._runs.begin(run_id, user, decision)

    async def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
        metadata: dict[str, Any] | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        _refuse_a_sync_run()
        user = self._runs.user(metadata)
        decision = await self._runs.acheck(user, _request(prompts_body(prompts)))
        self._runs.begin(run_id, user, decision)

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        answer = self._runs.end(run_id, response)
        if answer is not None:
            answered = await arecord_answer(self._runs.guard, answer[0], None, answer[1])
            if not answered.allowed:
                raise Refused(answered)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._runs.end(run_id, None)

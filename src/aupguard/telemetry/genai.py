"""The instrumented client's Messages calls as GenAI client spans (OpenTelemetry's GenAI
semantic conventions, Anthropic flavour): span ``chat <model>``, kind CLIENT.

- at the start: ``gen_ai.operation.name = "chat"``, ``gen_ai.provider.name = "anthropic"``
  (the current name of what older conventions called ``gen_ai.system``),
  ``gen_ai.request.model``, ``gen_ai.request.max_tokens``, ``server.address`` /
  ``server.port``, and ``aupguard.request_id`` (the guarded call's audit record, whose
  ``aupguard.check`` span says who and what was decided);
- from the answer: ``gen_ai.response.id``, ``gen_ai.response.model``,
  ``gen_ai.response.finish_reasons``, ``gen_ai.usage.input_tokens`` / ``output_tokens``;
  a stream's span ends when the app has read the stream;
- an error status: ``error.type`` (the status code) and span status ERROR;
- the messages (``gen_ai.input.messages``, ``gen_ai.system_instructions``,
  ``gen_ai.output.messages``) only with ``[otel] capture_content = true``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .tracer import active_tracer, otel_trace

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from ..outcome import Decision

__all__ = ["traced_acall", "traced_call"]

Q = TypeVar("Q")
R = TypeVar("R")
_CAPTURE_LIMIT = 65_536  # characters of captured messages per attribute


def traced_call(guard: Any, decision: Decision, call_next: Callable[[Q], R]) -> Callable[[Q], R]:
    """``call_next`` (the SDK middleware's next step) inside a GenAI span; itself when no
    tracer is set."""
    tracer = active_tracer()
    if tracer is None:
        return call_next

    def call(request: Q) -> R:
        span = _start(tracer, guard, decision, request)
        try:
            with otel_trace.use_span(span, end_on_exit=False):
                response = call_next(request)
            answer: Any = response
            _answered(span, guard, answer, answer.parse() if answer.status_code < 400 else None)
        except BaseException as exc:
            _broken(span, exc)
            raise
        return response

    return call


def traced_acall(
    guard: Any, decision: Decision, call_next: Callable[[Q], Awaitable[R]]
) -> Callable[[Q], Coroutine[Any, Any, R]]:
    """:func:`traced_call` for the async client."""
    tracer = active_tracer()
    if tracer is None:
        return call_next  # type: ignore[return-value]  # the SDK's own coroutine function

    async def call(request: Q) -> R:
        span = _start(tracer, guard, decision, request)
        try:
            with otel_trace.use_span(span, end_on_exit=False):
                response = await call_next(request)
            answer: Any = response
            parsed = await answer.parse() if answer.status_code < 400 else None
            _answered(span, guard, answer, parsed)
        except BaseException as exc:
            _broken(span, exc)
            raise
        return response

    return call


def _start(tracer: Tracer, guard: Any, decision: Decision, request: Any) -> Span:
    body = request.json if isinstance(request.json, Mapping) else {}
    model = body.get("model")
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "aupguard.request_id": decision.request_id,
    }
    if isinstance(model, str):
        attributes["gen_ai.request.model"] = model
    if isinstance(body.get("max_tokens"), int):
        attributes["gen_ai.request.max_tokens"] = body["max_tokens"]
    try:
        url = urlsplit(str(request.url))
        if url.hostname:
            attributes["server.address"] = url.hostname
        if url.port:
            attributes["server.port"] = url.port
    except ValueError:
        pass
    if _captures(guard):
        attributes.update(_input_messages(body))
    name = f"chat {model}" if isinstance(model, str) else "chat"
    return tracer.start_span(name, kind=otel_trace.SpanKind.CLIENT, attributes=attributes)


def _answered(span: Span, guard: Any, response: Any, parsed: Any) -> None:
    if response.status_code >= 400:
        span.set_attribute("error.type", str(response.status_code))
        span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, f"http {response.status_code}"))
        span.end()
        return
    if parsed is not None and hasattr(parsed, "_iterator"):  # a stream: the span ends with it
        _tap(span, guard, parsed)
        return
    usage = getattr(parsed, "usage", None)
    _response(span, getattr(parsed, "id", None), getattr(parsed, "model", None), getattr(parsed, "stop_reason", None),
              getattr(usage, "input_tokens", None), getattr(usage, "output_tokens", None))  # fmt: skip
    if _captures(guard):
        text = "".join(getattr(b, "text", "") or "" for b in getattr(parsed, "content", None) or [])
        _output_messages(span, text, getattr(parsed, "stop_reason", None))
    span.end()


def _tap(span: Span, guard: Any, stream: Any) -> None:
    """Watch the SDK stream's events as the app reads them; end the span with the stream."""
    seen = _StreamFacts()
    inner = stream._iterator
    capture = _captures(guard)

    def finish() -> None:
        _response(span, seen.message_id, seen.model, seen.stop_reason, seen.input_tokens, seen.output_tokens)
        if capture:
            _output_messages(span, "".join(seen.text), seen.stop_reason)
        span.end()

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

        def tap() -> Iterator[Any]:
            try:
                for event in inner:
                    seen.see(event)
                    yield event
            finally:
                finish()

        stream.__dict__["_iterator"] = tap()


class _StreamFacts:
    """What a stream's events say about the answer (the SDK's event objects)."""

    def __init__(self) -> None:
        self.message_id: object = None
        self.model: object = None
        self.stop_reason: object = None
        self.input_tokens: object = None
        self.output_tokens: object = None
        self.text: list[str] = []

    def see(self, event: Any) -> None:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            message = getattr(event, "message", None)
            self.message_id, self.model = getattr(message, "id", None), getattr(message, "model", None)
            self.input_tokens = getattr(getattr(message, "usage", None), "input_tokens", None)
        elif kind == "message_delta":
            self.output_tokens = getattr(getattr(event, "usage", None), "output_tokens", None)
            self.stop_reason = getattr(getattr(event, "delta", None), "stop_reason", None) or self.stop_reason
        elif kind == "content_block_delta":
            text = getattr(getattr(event, "delta", None), "text", None)
            if isinstance(text, str):
                self.text.append(text)


def _response(span: Span, message_id: object, model: object, stop: object, tin: object, tout: object) -> None:
    if not span.is_recording():
        return
    if isinstance(message_id, str):
        span.set_attribute("gen_ai.response.id", message_id)
    if isinstance(model, str):
        span.set_attribute("gen_ai.response.model", model)
    if isinstance(stop, str):
        span.set_attribute("gen_ai.response.finish_reasons", [stop])
    for key, value in (("input_tokens", tin), ("output_tokens", tout)):
        if isinstance(value, int) and not isinstance(value, bool):
            span.set_attribute(f"gen_ai.usage.{key}", value)


def _broken(span: Span, exc: BaseException) -> None:
    """The call failed before an answer (a timeout, a refused connection)."""
    span.set_attribute("error.type", type(exc).__name__)
    span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, type(exc).__name__))
    span.end()


def _captures(guard: Any) -> bool:
    otel = getattr(getattr(guard, "policy", None), "otel", None)
    return bool(getattr(otel, "capture_content", False))


def _parts(content: object) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, Mapping) and isinstance(block.get("text"), str):
            parts.append({"type": "text", "content": block["text"]})
        elif isinstance(block, Mapping):
            parts.append({"type": str(block.get("type", "unknown"))})  # media, tool calls: their kind only
    return parts


def _input_messages(body: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    messages = body.get("messages")
    if isinstance(messages, list):
        shaped = [{"role": str(m.get("role")), "parts": _parts(m.get("content"))} for m in messages
                  if isinstance(m, Mapping)]  # fmt: skip
        out["gen_ai.input.messages"] = json.dumps(shaped, ensure_ascii=False)[:_CAPTURE_LIMIT]
    system = body.get("system")
    if system:
        out["gen_ai.system_instructions"] = json.dumps(_parts(system), ensure_ascii=False)[:_CAPTURE_LIMIT]
    return out


def _output_messages(span: Span, text: str, stop: object) -> None:
    message = {"role": "assistant", "parts": _parts(text), "finish_reason": stop if isinstance(stop, str) else None}
    span.set_attribute("gen_ai.output.messages", json.dumps([message], ensure_ascii=False)[:_CAPTURE_LIMIT])

"""``GuardModelModerator``: a self-hosted safety model behind ``/v1/chat/completions``.

Why: Llama Guard, ShieldGemma, gpt-oss-safeguard, Qwen3Guard and Granite Guardian are the
realistic first line for an operator who will not send every prompt to a paid API, and
the servers that run them (vLLM, Ollama, TGI, LM Studio) speak OpenAI's chat completions,
not ``/v1/moderations``. What each model is sent and how its answer is read lives in
:mod:`aupguard.moderation.guard_formats`; this class is the I/O around it.

Decisions, so the chain can rely on them:

- Anything that is not a usable verdict raises :class:`ModeratorError` (the chain applies
  ``[moderation] fail``): ``timeout``, ``connection error``, ``http <status>`` (retried as
  :mod:`aupguard.moderation.http` says), ``unparseable answer`` (no ``choices[0].message``
  text, or text the format cannot read: garbage is never taken for "safe").
- With ``threshold`` (formats whose answer starts with a yes/no token), ``logprobs`` are
  asked for and the probability of the flagging token decides; a server that returns none
  leaves the decision to the answer's text.
- The model's codes are mapped onto aupguard's categories (``categories`` overrides the
  format's table); a code no table knows is kept as it came, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..telemetry.moderators import traced_amoderate, traced_moderate
from .base import ModeratorError, Verdict
from .guard_formats import FORMATS, SCORED, categories_of, first_token_score, read_answer, request_body
from .http import JsonEndpoint

__all__ = ["GuardModelModerator"]


class GuardModelModerator:
    """Moderates with a guard model. ``url`` is the full URL of the chat-completions
    endpoint; ``api_key`` is sent as ``Authorization: Bearer``; ``timeout`` is in seconds,
    per attempt; ``policy`` is gpt-oss-safeguard's policy text (None: aupguard's categories)."""

    def __init__(
        self,
        url: str,
        *,
        model: str,
        format: str,
        api_key: str | None = None,
        threshold: float | None = None,
        categories: Mapping[str, str] | None = None,
        policy: str | None = None,
        timeout: float = 2.0,
        retries: int = 1,
        name: str | None = None,
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        if threshold is not None and (format not in SCORED or not 0.0 < threshold <= 1.0):
            raise ValueError(f"threshold must be in (0, 1] and is for {', '.join(sorted(SCORED))} only")
        self.name = name or format
        self.url = url
        self.model = model
        self.format = format
        self.threshold = threshold
        self.categories: Mapping[str, str] = dict(categories or {})
        self.policy = policy
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._endpoint = JsonEndpoint(self.name, url, headers=headers, timeout=timeout, retries=retries)

    def body(self, text: str) -> dict[str, Any]:
        """The request sent for ``text`` (exposed so tests and docs can show it)."""
        return request_body(self.format, self.model, text, policy=self.policy, logprobs=self.threshold is not None)

    @traced_moderate
    def moderate(self, text: str) -> Verdict:
        return self._verdict(self._endpoint.post(self.body(text)))

    @traced_amoderate
    async def amoderate(self, text: str) -> Verdict:
        return self._verdict(await self._endpoint.apost(self.body(text)))

    def _verdict(self, data: Any) -> Verdict:
        choices = data.get("choices") if isinstance(data, dict) else None
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise ModeratorError(self.name, "unparseable answer")
        reading = read_answer(self.format, content)
        score = first_token_score(self.format, choice.get("logprobs")) if self.threshold is not None else None
        if score is not None and self.threshold is not None:
            if score < self.threshold:
                return Verdict.clean(self.name)
            codes = reading.codes if reading is not None and reading.flagged else ()
            categories = categories_of(self.format, codes, self.categories)
            return Verdict(True, categories, self.name, f"score {score:.2f} >= {self.threshold:g}")
        if reading is None:
            raise ModeratorError(self.name, "unparseable answer")
        if not reading.flagged:
            return Verdict.clean(self.name)
        categories = categories_of(self.format, reading.codes, self.categories)
        explanation = reading.explanation or (", ".join(reading.codes) if reading.codes else "")
        return Verdict(True, categories, self.name, explanation, reading.risk_level)

    def close(self) -> None:
        """Release the sync client's connections (a later call opens a new client)."""
        self._endpoint.close()

    async def aclose(self) -> None:
        """Release the async client's connections; call it inside the loop that used them."""
        await self._endpoint.aclose()

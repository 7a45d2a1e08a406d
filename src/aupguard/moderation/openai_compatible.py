"""``OpenAICompatibleModerator``: any endpoint shaped like OpenAI's ``/v1/moderations``.

Why this shape: it is the de-facto interface for moderation services (OpenAI's
omni-moderation, and self-hosted classifiers such as Llama Guard behind a compatible
server), so one small client covers them all. It sends ``{"model": ..., "input": text}``
and reads ``results[0]``: ``flagged`` and the true ``categories`` by default, or, with
``threshold``, every category whose score reaches it (for services whose own ``flagged``
is too eager or too lax for the policy).

Decisions, so the chain can rely on them:

- Anything that is not a usable verdict raises :class:`ModeratorError` (the chain applies
  ``[moderation] fail``): ``timeout``, ``connection error``, ``http <status>``,
  ``unparseable answer`` (not JSON, no ``results[0]``, a non-boolean ``flagged``, no
  ``categories`` / ``category_scores`` object). The moderated text never appears in one.
- Retries and failure kinds are those of :mod:`aupguard.moderation.http` (immediate
  retries of timeouts, transport errors, 408/409/429 and 5xx only).
- ``category_map`` renames the service's categories to the policy's (``"violence/graphic"``
  → ``"violence"``); names it does not mention pass through unchanged, so a partial map never
  hides a flag. Duplicates after mapping are merged.
- The ``httpx`` clients are created on first use and released by :meth:`close` /
  :meth:`aclose`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..telemetry.moderators import traced_amoderate, traced_moderate
from .base import ModeratorError, Verdict
from .http import JsonEndpoint

__all__ = ["OpenAICompatibleModerator"]


class OpenAICompatibleModerator:
    """Moderates through a ``/v1/moderations``-shaped endpoint. ``url`` is the full endpoint
    URL; ``api_key`` is sent as ``Authorization: Bearer``; ``model=None`` omits the field
    (for servers that serve one model). ``timeout`` is in seconds, per attempt."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        model: str | None = "omni-moderation-latest",
        timeout: float = 2.0,
        retries: int = 1,
        name: str = "openai",
        threshold: float | None = None,
        category_map: Mapping[str, str] | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        self.name = name
        self.url = url
        self.model = model
        self.timeout = timeout
        self.retries = retries
        self.threshold = threshold
        self.category_map: Mapping[str, str] = dict(category_map or {})
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._endpoint = JsonEndpoint(name, url, headers=headers, timeout=timeout, retries=retries)

    def _body(self, text: str) -> dict[str, Any]:
        return {"input": text} if self.model is None else {"model": self.model, "input": text}

    @traced_moderate
    def moderate(self, text: str) -> Verdict:
        return self._verdict(self._endpoint.post(self._body(text)))

    @traced_amoderate
    async def amoderate(self, text: str) -> Verdict:
        return self._verdict(await self._endpoint.apost(self._body(text)))

    def _verdict(self, data: Any) -> Verdict:
        results = data.get("results") if isinstance(data, dict) else None
        result = results[0] if isinstance(results, list) and results else None
        if not isinstance(result, dict):
            raise ModeratorError(self.name, "unparseable answer")
        scores = result.get("category_scores")
        scores = scores if isinstance(scores, dict) else {}
        if self.threshold is None:
            flagged, categories = result.get("flagged"), result.get("categories")
            if not isinstance(flagged, bool) or not isinstance(categories, dict):
                raise ModeratorError(self.name, "unparseable answer")
            names = [name for name, hit in categories.items() if hit is True]
        else:
            if not isinstance(result.get("category_scores"), dict):
                raise ModeratorError(self.name, "unparseable answer")
            threshold = self.threshold
            names = [name for name, score in scores.items() if _is_number(score) and score >= threshold]
            flagged = bool(names)
        if not flagged:
            return Verdict.clean(self.name)
        explanation = ", ".join(f"{name} {scores[name]:.2f}" for name in names if _is_number(scores.get(name)))
        mapped = tuple(dict.fromkeys(self.category_map.get(name, name) for name in names))
        return Verdict(True, mapped, self.name, explanation)

    def close(self) -> None:
        """Release the sync client's connections (a later call opens a new client)."""
        self._endpoint.close()

    async def aclose(self) -> None:
        """Release the async client's connections; call it inside the loop that used them."""
        await self._endpoint.aclose()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

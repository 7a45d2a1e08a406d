"""One JSON endpoint over ``httpx`` with the moderators' retry and failure rules, in a sync
and an async flavour: what the ``/v1/moderations`` and ``/v1/chat/completions`` clients share.

- Every failure is a :class:`ModeratorError` whose kind names it (``timeout``, ``connection
  error``, ``http <status>``, ``unparseable answer``); the request body never appears in one.
- Retries are immediate (no backoff) and only for what may pass on a second try: timeouts,
  transport errors, 408/409/429 and 5xx. A moderation call spends the end user's latency
  budget, so waiting out a backoff would only spend it faster.
- The clients are created on first use (the async one inside the running event loop, where
  its connections belong; one per loop) and released by :meth:`close` / :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Mapping
from typing import Any

import httpx

from ..telemetry.moderators import attempt_failed
from .base import ModeratorError

__all__ = ["JsonEndpoint"]


def _retryable(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def _failure(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.TransportError):
        return "connection error"
    return "unparseable answer"  # e.g. a body that cannot be decoded


class JsonEndpoint:
    """POSTs JSON to ``url`` and returns the decoded JSON answer of a 2xx response.
    ``timeout`` is in seconds, per attempt; ``retries`` further attempts at most."""

    def __init__(self, name: str, url: str, *, headers: Mapping[str, str], timeout: float, retries: int) -> None:
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        self.name = name
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self._headers = dict(headers)
        self._client: httpx.Client | None = None
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout, headers=self._headers)
            return self._client

    def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            client = self._async_clients[loop] = httpx.AsyncClient(timeout=self.timeout, headers=self._headers)
        return client

    def post(self, body: Mapping[str, Any]) -> Any:
        kind = "timeout"
        for _ in range(self.retries + 1):
            try:
                response = self._sync_client().post(self.url, json=body)
            except httpx.HTTPError as exc:
                kind = _failure(exc)
                attempt_failed(kind)
                continue
            if response.is_success:
                return self._decoded(response)
            kind = f"http {response.status_code}"
            if not _retryable(response.status_code):
                break
            attempt_failed(kind)
        raise ModeratorError(self.name, kind)

    async def apost(self, body: Mapping[str, Any]) -> Any:
        client = self._async_client()
        kind = "timeout"
        for _ in range(self.retries + 1):
            try:
                response = await client.post(self.url, json=body)
            except httpx.HTTPError as exc:
                kind = _failure(exc)
                attempt_failed(kind)
                continue
            if response.is_success:
                return self._decoded(response)
            kind = f"http {response.status_code}"
            if not _retryable(response.status_code):
                break
            attempt_failed(kind)
        raise ModeratorError(self.name, kind)

    def _decoded(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ModeratorError(self.name, "unparseable answer") from None

    def close(self) -> None:
        """Release the sync client's connections (a later call opens a new client)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Release the async client's connections; call it inside the loop that used them."""
        client = self._async_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

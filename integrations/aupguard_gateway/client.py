"""The gateway's upstream HTTP client: one ``aiohttp`` client session over a bounded pool of
keep-alive connections.

Why aiohttp's client (and not httpcore, which the gateway used first): httpcore's
``AsyncConnectionPool`` scans every pooled connection on each request and each response
close, asking each for its socket's state (a ``getpeername`` and a ``poll`` per connection,
the connection count rebuilt per connection), so its cost grows with the square of the pool
and a burst that grows the pool slows every later request (encode/httpcore#1035, #928); it
also never expires an idle connection. aiohttp's ``TCPConnector`` takes an idle connection
off a per-host list in constant time, caps the pool (``MAX_CONNECTIONS``; a request beyond
waits for a free one, within the timeout), closes connections idle for ``KEEPALIVE``
seconds, and parses responses in C. It is a well-kept library; a pool of our own over h11
would be more code to keep right (pipelining, half-closed sockets, expiry) for no measured
gain over it (see docs/gateway.md, "Cost").

What this client does not do, on purpose: no cookies kept (``DummyCookieJar``), no proxy or
``.netrc`` from the environment, no ``Accept-Encoding`` or ``User-Agent`` of its own, no
decompression (the answer's bytes are passed on as the upstream sent them), no redirects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import aiohttp
from yarl import URL

from aupguard.errors import AupguardError

__all__ = ["KEEPALIVE", "MAX_CONNECTIONS", "UpstreamClient", "UpstreamError", "UpstreamResponse", "UpstreamTimeout"]

#: The most connections open to the upstream at once (a request beyond waits for one).
MAX_CONNECTIONS = 256
#: An idle pooled connection is closed after this many seconds.
KEEPALIVE = 15.0


class UpstreamError(AupguardError):
    """The upstream could not be reached, or broke the protocol (the name of the cause is the message)."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer (or send the next bytes) in time."""


class UpstreamResponse:
    """An answer whose body is read as it arrives; :meth:`close` ends it (a connection whose
    answer was not read to its end is closed, not pooled: the upstream stops generating)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: dict[bytes, bytes] = {name.lower(): value for name, value in response.raw_headers}

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (transfer encoding removed, nothing else changed)."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError:
            raise UpstreamTimeout("read") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(exc.__class__.__name__) from None

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except TimeoutError:
            raise UpstreamTimeout("read") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(exc.__class__.__name__) from None

    def close(self) -> None:
        if self._response.content.is_eof():
            self._response.release()  # read to its end: the connection goes back to the pool
        else:
            self._response.close()


class UpstreamClient:
    """``POST`` to ``base_url`` + a path, over one pool (made on first use, in the server's
    event loop, as aiohttp requires; closed by :meth:`aclose` at shutdown)."""

    def __init__(
        self, base_url: str, *, timeout: float, max_connections: int = MAX_CONNECTIONS, keepalive: float = KEEPALIVE
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=min(timeout, 10.0), sock_read=timeout
        )  # connect: waiting for a pooled connection and making one; sock_read: between bytes of an answer
        self._max_connections = max_connections
        self._keepalive = keepalive
        self._urls: dict[str, URL] = {}
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"UpstreamClient({self.base_url!r})"

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=0, keepalive_timeout=self._keepalive, ttl_dns_cache=60
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),  # one user's cookie never reaches another's call
                auto_decompress=False,
                skip_auto_headers=("Accept-Encoding", "User-Agent"),
                trust_env=False,
            )
        return self._session

    def _url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:  # parsed once per path, not per call
            url = self._urls[path] = URL(self.base_url + path, encoded=True)
        return url

    async def post(self, path: str, headers: Iterable[tuple[str, str]], body: bytes) -> UpstreamResponse:
        """Send the request; the answer once its status line and headers have arrived."""
        try:
            response = await self._session_now().post(
                self._url(path), data=body, headers=list(headers), allow_redirects=False
            )
        except TimeoutError:
            raise UpstreamTimeout("connect") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(exc.__class__.__name__) from None
        return UpstreamResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

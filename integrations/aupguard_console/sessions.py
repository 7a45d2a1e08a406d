"""Console sessions: a server-side session id in a signed cookie, and a CSRF token per session.

The cookie holds ``<session id>.<HMAC-SHA256 of it>``; the session row (reviewer, CSRF token,
expiry) stays in the store, so logging out or removing a reviewer ends it everywhere. Login
always starts a new session id (the pre-login one is deleted), so a session id planted
before login is worthless after it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets

from starlette.requests import Request
from starlette.responses import Response

from aupguard import Safeguards
from aupguard.stores.review_records import ConsoleSession

__all__ = ["COOKIE", "SessionManager"]

COOKIE = "aupguard_console"
LOGIN_FORM_SECONDS = 3600.0  # a pre-login session (the login form's CSRF token) lasts an hour


class SessionManager:
    def __init__(self, guard: Safeguards) -> None:
        self.guard = guard
        policy = guard.policy.review
        self.session_for = policy.session_for
        self.secure = policy.secure_cookie
        secret = os.environ.get(policy.secret_env, "")
        if not secret.strip():  # generated once and kept in the store, shared by every process
            secret = guard.store.console_secret("console_session_key", secrets.token_urlsafe(32))
        self._key = hashlib.sha256(b"aupguard-console-session|" + secret.encode()).digest()

    def _sign(self, session_id: str) -> str:
        mac = hmac.new(self._key, session_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def cookie_value(self, session: ConsoleSession) -> str:
        return f"{session.id}.{self._sign(session.id)}"

    def _session_id(self, request: Request) -> str | None:
        raw = request.cookies.get(COOKIE, "")
        session_id, _, signature = raw.rpartition(".")
        if not session_id or not hmac.compare_digest(signature, self._sign(session_id)):
            return None
        return session_id

    async def load(self, request: Request) -> ConsoleSession | None:
        session_id = self._session_id(request)
        if session_id is None:
            return None
        now = self.guard._clock()
        return await asyncio.to_thread(self.guard.store.console_session, session_id, now=now)

    async def start(self, reviewer: str | None, *, replacing: ConsoleSession | None = None) -> ConsoleSession:
        """A new session (new id, new CSRF token); the one it replaces is deleted."""
        now = self.guard._clock()
        lifetime = self.session_for if reviewer else LOGIN_FORM_SECONDS
        session = ConsoleSession(secrets.token_urlsafe(32), reviewer, secrets.token_urlsafe(32), now, now + lifetime)
        store = self.guard.store
        if replacing is not None:
            await asyncio.to_thread(store.end_console_session, replacing.id, purge_before=now)
        await asyncio.to_thread(store.put_console_session, session)
        return session

    async def end(self, session: ConsoleSession) -> None:
        now = self.guard._clock()
        await asyncio.to_thread(self.guard.store.end_console_session, session.id, purge_before=now)

    def set_cookie(self, request: Request, response: Response, session: ConsoleSession) -> None:
        response.set_cookie(
            COOKIE,
            self.cookie_value(session),
            max_age=int(session.expires_at - session.created_at),
            path=_cookie_path(request),
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def clear_cookie(self, request: Request, response: Response) -> None:
        response.delete_cookie(COOKIE, path=_cookie_path(request), secure=self.secure, httponly=True, samesite="strict")

    @staticmethod
    def csrf_ok(session: ConsoleSession, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token.encode(), session.csrf.encode())


def _cookie_path(request: Request) -> str:
    return (request.scope.get("root_path") or "").rstrip("/") + "/"

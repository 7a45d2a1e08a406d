"""What every console page shares: templates (autoescaped), URLs under the mount prefix,
the login requirement, the CSRF check on every POST, and the security headers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aupguard.cli.support import when
from aupguard.review import ReviewQueue
from aupguard.stores.review_records import ConsoleSession

from .labels import age_text, source_label
from .sessions import SessionManager

__all__ = ["MAX_FORM_FIELDS", "REVEAL_COOKIE", "SECURITY_HEADERS", "Console", "SecurityHeaders", "login_required",
           "reveal_preferred", "url"]  # fmt: skip

HERE = Path(__file__).resolve().parent
MAX_FORM_FIELDS = 120  # a bulk form: a page of item ids, its reason and action
#: the reviewer's "show text unblurred" preference: a cookie for this browser session only
REVEAL_COOKIE = "aupguard_console_reveal"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",  # pages show decrypted prompts: never kept by a cache
}


class SecurityHeaders:
    """Pure ASGI: adds the security headers to every HTTP response of the console."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.raw = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k for k, _ in self.raw}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + self.raw}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def reveal_preferred(request: Request) -> bool:
    return request.cookies.get(REVEAL_COOKIE) == "1"


def url(request: Request, path: str) -> str:
    """``path`` under the console's mount prefix (``root_path``), for links and redirects."""
    return (request.scope.get("root_path") or "").rstrip("/") + path


class Console:
    """The console's shared state: the queue, sessions and templates."""

    def __init__(self, queue: ReviewQueue, sessions: SessionManager) -> None:
        self.queue = queue
        self.sessions = sessions
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,  # every value is escaped, prompts and explanations included
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["when"] = when
        self.templates.filters["percent"] = lambda v: f"{100 * v:.1f}%"
        self.templates.filters["age"] = age_text
        self.templates.filters["source"] = source_label
        self.renders = 0  # pages rendered by this console (app.state.console.renders)

    def render(
        self, request: Request, template: str, session: ConsoleSession | None, code: int = 200, **context: Any
    ) -> HTMLResponse:
        self.renders += 1
        page = self.templates.get_template(template).render(
            url=lambda path: url(request, path),
            session=session,
            reviewer=session.reviewer if session else None,
            csrf=session.csrf if session else "",
            reveal=reveal_preferred(request),
            **{"done": None, "error": None, **context},
        )
        return HTMLResponse(page, status_code=code)


Handler = Callable[[Request, ConsoleSession, FormData | None], Awaitable[Response]]


def login_required(console: Console, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Logged out: a redirect to the login page. POST: the form's CSRF token must match the
    session's, else 403."""

    async def endpoint(request: Request) -> Response:
        session = await console.sessions.load(request)
        if session is None or session.reviewer is None:
            return RedirectResponse(url(request, "/login"), status_code=303)
        form = None
        if request.method == "POST":
            form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
            if not console.sessions.csrf_ok(session, form.get("csrf")):
                return console.render(
                    request,
                    "error.html",
                    session,
                    403,
                    message="The form's CSRF token is missing or wrong; reload the page and try again.",
                )
        return await handler(request, session, form)

    return endpoint

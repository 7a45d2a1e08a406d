"""``review_console(guard)``: the review console as a Starlette app, to mount anywhere
(``app.mount("/aupguard", review_console(guard))``) or serve alone (``aupguard console``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from aupguard import Safeguards
from aupguard.review import ReviewerAccounts, ReviewQueue
from aupguard.stores.review_records import ConsoleSession

from .appeals import AppealViews
from .items import ItemViews
from .sessions import SessionManager
from .throttle import LoginThrottle, client_address
from .users import UserViews
from .web import HERE, Console, Handler, SecurityHeaders, login_required, url

__all__ = ["PUBLIC_PATHS", "review_console"]

#: the only paths served without a login
PUBLIC_PATHS = ("/login", "/console.css")
MAX_LOGIN_FORM = 4096


def review_console(guard: Safeguards) -> Starlette:
    """The console for ``guard``'s store. Reviewers log in with accounts made by
    ``aupguard reviewer add``; ``[review]`` in the policy sets claims, sessions and cookies."""
    console = Console(ReviewQueue(guard), SessionManager(guard))
    accounts = ReviewerAccounts(guard.store, guard._clock)
    throttle = LoginThrottle(guard)
    proxy_header = guard.policy.review.trusted_proxy_header

    def _address(request: Request) -> str:
        peer = request.client.host if request.client else None
        return client_address(peer, request.headers.getlist(proxy_header) if proxy_header else [], proxy_header)

    def too_many(request: Request) -> Response:
        message = "Too many login attempts. Wait a minute, then reload the login page."
        response = console.render(request, "error.html", None, 429, message=message)
        response.headers["retry-after"] = "60"
        return response

    items, users, appeals = ItemViews(console), UserViews(console), AppealViews(console)

    async def login_form(request: Request) -> Response:
        session = await console.sessions.load(request)
        if session is not None and session.reviewer is not None:
            return RedirectResponse(url(request, "/"), status_code=303)
        if session is None:  # a pre-login session carries the login form's CSRF token
            if not await throttle.form_allowed(_address(request)):  # bounds the rows anonymous clients make
                return too_many(request)
            session = await console.sessions.start(None)
        response = console.render(request, "login.html", session, error=None)
        console.sessions.set_cookie(request, response, session)
        return response

    async def login(request: Request) -> Response:
        session = await console.sessions.load(request)
        form = await request.form(max_files=0, max_fields=5, max_part_size=MAX_LOGIN_FORM)
        if session is None or not console.sessions.csrf_ok(session, form.get("csrf")):
            message = "The login form expired or its CSRF token is wrong; reload the login page."
            return console.render(request, "error.html", None, 403, message=message)
        name, password = form.get("name"), form.get("password")
        if not await throttle.attempt_allowed(_address(request), str(name)):  # before scrypt runs
            return too_many(request)
        ok = isinstance(name, str) and isinstance(password, str)
        ok = ok and await asyncio.to_thread(accounts.verify, str(name), str(password))
        if not ok:
            return console.render(request, "login.html", session, 401, error="Wrong name or password.")
        fresh = await console.sessions.start(str(name), replacing=session)  # a new id at login: no fixation
        response = RedirectResponse(url(request, "/"), status_code=303)
        console.sessions.set_cookie(request, response, fresh)
        return response

    async def logout(request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        await console.sessions.end(session)
        response = RedirectResponse(url(request, "/login"), status_code=303)
        console.sessions.clear_cookie(request, response)
        return response

    async def stylesheet(request: Request) -> Response:
        return FileResponse(HERE / "static" / "console.css", media_type="text/css")

    def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        return login_required(console, handler)

    routes = [
        Route("/login", login_form, methods=["GET"], name="login"),
        Route("/login", login, methods=["POST"], name="login_submit"),
        Route("/console.css", stylesheet, methods=["GET"], name="stylesheet"),
        Route("/logout", page(logout), methods=["POST"], name="logout"),
        Route("/", page(items.queue_page), methods=["GET"], name="queue"),
        Route("/items/{item_id}", page(items.item_page), methods=["GET"], name="item"),
        Route("/items/{item_id}/{action}", page(items.act), methods=["POST"], name="item_action"),
        Route("/users/{user_hash}", page(users.user_page), methods=["GET"], name="user"),
        Route("/users/{user_hash}/{action}", page(users.act), methods=["POST"], name="user_action"),
        Route("/report", page(users.report_page), methods=["GET"], name="report"),
        Route("/report.{fmt:str}", page(users.report_export), methods=["GET"], name="report_export"),
        Route("/appeals", page(appeals.appeals_page), methods=["GET"], name="appeals"),
        Route("/appeals/{appeal_id}", page(appeals.appeal_page), methods=["GET"], name="appeal"),
        Route("/appeals/{appeal_id}/{action}", page(appeals.decide), methods=["POST"], name="appeal_action"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
    app.state.console = console
    return app

"""A user's history, the suspend / reinstate / note actions, and the violation-rate report."""

from __future__ import annotations

import asyncio

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aupguard.durations import parse_duration
from aupguard.errors import AupguardError
from aupguard.review import report_csv, report_json, violation_report
from aupguard.stores.review_records import ConsoleSession

from .items import DONE, _text
from .web import Console, url

__all__ = ["SUSPEND_CHOICES", "UserViews"]

SUSPEND_CHOICES = (("1h", "1 hour"), ("1d", "1 day"), ("7d", "7 days"), ("30d", "30 days"), ("", "until reinstated"))
REPORT_LIMIT = 200


class UserViews:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.queue = console.queue

    async def user_page(
        self, request: Request, session: ConsoleSession, form: FormData | None, *, error: str | None = None
    ) -> Response:
        user_hash = request.path_params["user_hash"]
        history = await asyncio.to_thread(self.queue.history, user_hash)
        return self.console.render(request, "user.html", session, 409 if error else 200, history=history,
                                   choices=SUSPEND_CHOICES, error=error,
                                   done=DONE.get(request.query_params.get("done", "")))  # fmt: skip

    async def act(self, request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        user_hash = request.path_params["user_hash"]
        action = request.path_params["action"]
        reviewer = session.reviewer
        assert reviewer is not None
        reason = _text(form, "reason")
        try:
            if action == "suspend":
                duration = _text(form, "duration")
                seconds = parse_duration(duration) if duration else None
                await asyncio.to_thread(lambda: self.queue.suspend(user_hash, reviewer, reason=reason or
                                        "suspended by a reviewer", duration=seconds))  # fmt: skip
                done = "suspended"
            elif action == "reinstate":
                await asyncio.to_thread(
                    lambda: self.queue.reinstate(user_hash, reviewer, reason=reason or "reinstated by a reviewer")
                )
                done = "reinstated"
            elif action == "note":
                body = _text(form, "body")
                await asyncio.to_thread(lambda: self.queue.note(user_hash, reviewer, body))
                done = "noted"
            else:
                return self.console.render(request, "error.html", session, 404, message="No such action.")
        except (AupguardError, ValueError) as exc:
            return await self.user_page(request, session, None, error=str(exc))
        back = "/report" if _text(form, "back") == "report" else f"/users/{user_hash}"
        return RedirectResponse(url(request, f"{back}?done={done}"), status_code=303)

    async def report_page(self, request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        rows = await asyncio.to_thread(violation_report, self.queue.guard, limit=REPORT_LIMIT)
        window = self.queue.guard.policy.ladder.window
        return self.console.render(request, "report.html", session, rows=rows, window_days=window / 86400,
                                   done=DONE.get(request.query_params.get("done", "")))  # fmt: skip

    async def report_export(self, request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        fmt = request.path_params["fmt"]
        rows = await asyncio.to_thread(violation_report, self.queue.guard, limit=100_000)
        if fmt == "csv":
            body, media = report_csv(rows), "text/csv; charset=utf-8"
        else:
            body, media = report_json(rows), "application/json"
        disposition = f'attachment; filename="aupguard-violations.{fmt}"'
        return Response(body, media_type=media, headers={"content-disposition": disposition})

"""A user's history, the suspend / reinstate / note actions (each decision with a required
reason, confirmed on its own page when it starts from the report), and the violation-rate
report over a chosen window."""

from __future__ import annotations

import asyncio

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aupguard.durations import format_duration, parse_duration
from aupguard.errors import AupguardError
from aupguard.review import filter_query, report_csv, report_json, required_reason, violation_report
from aupguard.stores.review_records import ConsoleSession

from .items import DONE, SUSPEND_CHOICES, ItemViews, _text, back_filter
from .labels import strike_state
from .web import Console, url

__all__ = ["REPORT_WINDOWS", "SUSPEND_CHOICES", "UserViews"]

REPORT_LIMIT = 200
#: the report's window choices (query value, label); "" is the ladder window
REPORT_WINDOWS = (("1d", "last day"), ("7d", "last 7 days"), ("30d", "last 30 days"), ("90d", "last 90 days"))
ACTIONS = {"suspend": "Suspend", "reinstate": "Reinstate"}


def _window(value: str | None) -> str:
    return value if value in {w for w, _ in REPORT_WINDOWS} else ""


class UserViews:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.queue = console.queue

    async def user_page(
        self, request: Request, session: ConsoleSession, form: FormData | None, *, error: str | None = None
    ) -> Response:
        user_hash = request.path_params["user_hash"]
        history = await asyncio.to_thread(self.queue.history, user_hash)
        states = {s.id: strike_state(s, reset_at=history.reset_at, window_start=history.window_start)
                  for s in history.strikes}  # fmt: skip
        done = DONE.get(request.query_params.get("done", ""))
        return self.console.render(request, "user.html", session, 400 if error else 200, history=history,
                                   choices=SUSPEND_CHOICES, error=error, states=states, now=self.queue.guard._clock(),
                                   back="", back_to="user", done=done)  # fmt: skip

    async def confirm_page(self, request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        """The step between a report's button and the action: what will happen, and why (required)."""
        user_hash = request.path_params["user_hash"]
        action = request.query_params.get("action", "")
        duration = request.query_params.get("duration", "")
        if action not in ACTIONS or (duration and duration not in {v for v, _ in SUSPEND_CHOICES}):
            return self.console.render(request, "error.html", session, 404, message="No such action.")
        history = await asyncio.to_thread(self.queue.history, user_hash)
        label = dict(SUSPEND_CHOICES)[duration] if action == "suspend" else ""
        return self.console.render(request, "confirm.html", session, history=history, action=action,
                                   title=ACTIONS[action], duration=duration, duration_label=label,
                                   window=_window(request.query_params.get("window")))  # fmt: skip

    async def act(self, request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        user_hash = request.path_params["user_hash"]
        action = request.path_params["action"]
        reviewer = session.reviewer
        assert reviewer is not None
        back_to = _text(form, "back_to")
        item_id = _text(form, "item")
        try:
            if action == "suspend":
                reason = required_reason(_text(form, "reason"))
                duration = _text(form, "duration")
                seconds = parse_duration(duration) if duration else None
                await asyncio.to_thread(
                    lambda: self.queue.suspend(user_hash, reviewer, reason=reason, duration=seconds)
                )
                done = "suspended"
            elif action == "reinstate":
                reason = required_reason(_text(form, "reason"))
                await asyncio.to_thread(lambda: self.queue.reinstate(user_hash, reviewer, reason=reason))
                done = "reinstated"
            elif action == "note":
                body = _text(form, "body")
                await asyncio.to_thread(lambda: self.queue.note(user_hash, reviewer, body))
                done = "noted"
            else:
                return self.console.render(request, "error.html", session, 404, message="No such action.")
        except (AupguardError, ValueError) as exc:
            return await self.user_page(request, session, None, error=str(exc))
        if back_to == "item" and item_id:
            back = ItemViews.item_url(item_id, filter_query(back_filter(_text(form, "back"), reviewer)), done)
        elif back_to == "report":
            window = _window(_text(form, "window"))
            back = f"/report?done={done}" + (f"&window={window}" if window else "")
        else:
            back = f"/users/{user_hash}?done={done}"
        return RedirectResponse(url(request, back), status_code=303)

    async def report_page(self, request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        guard = self.queue.guard
        window = _window(request.query_params.get("window"))
        seconds = parse_duration(window) if window else guard.policy.ladder.window
        rows = await asyncio.to_thread(lambda: violation_report(guard, limit=REPORT_LIMIT, window=seconds))
        return self.console.render(request, "report.html", session, rows=rows, window=window, windows=REPORT_WINDOWS,
                                   window_text=format_duration(seconds), min_calls=guard.policy.review.report_min_calls,
                                   ladder_window=format_duration(guard.policy.ladder.window),
                                   done=DONE.get(request.query_params.get("done", "")))  # fmt: skip

    async def report_export(self, request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        fmt = request.path_params["fmt"]
        window = _window(request.query_params.get("window"))
        seconds = parse_duration(window) if window else None
        rows = await asyncio.to_thread(lambda: violation_report(self.queue.guard, limit=100_000, window=seconds))
        if fmt == "csv":
            body, media = report_csv(rows), "text/csv; charset=utf-8"
        else:
            body, media = report_json(rows), "application/json"
        disposition = f'attachment; filename="aupguard-violations.{fmt}"'
        return Response(body, media_type=media, headers={"content-disposition": disposition})

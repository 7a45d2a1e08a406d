"""End users' appeals in the console: the queue (oldest first) and one appeal, with the
user's text (decrypted for the authenticated reviewer only), the strike and the user's
standing; uphold (the strike is voided) or deny, each with the reason the user will read."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aupguard.errors import AppealError
from aupguard.review import actor_of
from aupguard.stores.appeal_records import APPEAL_STATUSES, AppealRecord
from aupguard.stores.records import StrikeRecord
from aupguard.stores.review_records import ConsoleSession

from .web import Console, url

__all__ = ["AppealViews"]

PAGE = 100
DONE = {
    "upheld": "Appeal upheld: the strike is voided and the user sees your reason.",
    "denied": "Appeal denied: the strike stands and the user sees your reason.",
}


@dataclass(frozen=True, slots=True)
class Row:
    appeal: AppealRecord
    strike: StrikeRecord | None


class AppealViews:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.guard = console.queue.guard

    def _rows(self, status: str) -> list[Row]:
        store = self.guard.store
        rows = store.appeals_page(status=status, limit=PAGE)
        return [Row(a, store.find_strike(a.strike_id) if a.strike_id else None) for a in rows]

    async def appeals_page(self, request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        status = request.query_params.get("status", "open")
        if status not in APPEAL_STATUSES:
            status = "open"
        rows = await asyncio.to_thread(self._rows, status)
        open_count = await asyncio.to_thread(self.guard.store.count_open_appeals)
        return self.console.render(request, "appeals.html", session, rows=rows, status=status,
                                   statuses=APPEAL_STATUSES, open_count=open_count, now=self.guard._clock(),
                                   done=DONE.get(request.query_params.get("done", "")))  # fmt: skip

    async def appeal_page(
        self, request: Request, session: ConsoleSession, form: FormData | None, *, error: str | None = None
    ) -> Response:
        desk = self.guard.appeals
        try:
            appeal = await asyncio.to_thread(desk.get, request.path_params["appeal_id"])
        except AppealError:
            return self.console.render(request, "error.html", session, 404, message="No appeal has that id.")
        text = await asyncio.to_thread(desk.text, appeal)
        strike = await asyncio.to_thread(self.guard.store.find_strike, appeal.strike_id) if appeal.strike_id else None
        history = await asyncio.to_thread(self.console.queue.history, appeal.user_hash)
        return self.console.render(request, "appeal.html", session, 409 if error else 200, appeal=appeal, text=text,
                                   strike=strike, history=history, error=error,
                                   done=DONE.get(request.query_params.get("done", "")))  # fmt: skip

    async def decide(self, request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        appeal_id, action = request.path_params["appeal_id"], request.path_params["action"]
        if action not in ("uphold", "deny"):
            return self.console.render(request, "error.html", session, 404, message="No such action.")
        value = form.get("reason") if form is not None else None
        reason = value if isinstance(value, str) else ""
        assert session.reviewer is not None
        actor, upheld = actor_of(session.reviewer), action == "uphold"
        try:
            await asyncio.to_thread(lambda: self.guard.appeals.decide_appeal(appeal_id, upheld=upheld, reason=reason,
                                                                      actor=actor))  # fmt: skip
        except AppealError as exc:
            return await self.appeal_page(request, session, None, error=str(exc))
        done = "upheld" if action == "uphold" else "denied"
        return RedirectResponse(url(request, f"/appeals/{appeal_id}?done={done}"), status_code=303)

"""The queue and one item: claim, release, confirm, dismiss, note."""

from __future__ import annotations

import asyncio

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aupguard.errors import AupguardError
from aupguard.review import ReviewConflict
from aupguard.stores.review_records import ConsoleSession

from .web import Console, url

__all__ = ["ItemViews"]

STATUSES = ("open", "confirmed", "dismissed")
DONE = {  # messages shown after a redirect, chosen by code (no text from the query is shown)
    "claimed": "You hold this item now.",
    "released": "Item released.",
    "confirmed": "Flag confirmed: the strike stands.",
    "dismissed": "Dismissed: the strike is voided and the user de-escalated.",
    "noted": "Note added.",
    "suspended": "User suspended.",
    "reinstated": "User reinstated.",
}


def _text(form: FormData | None, name: str) -> str:
    value = form.get(name) if form is not None else None
    return value.strip() if isinstance(value, str) else ""


class ItemViews:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.queue = console.queue

    async def queue_page(self, request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        status = request.query_params.get("status", "open")
        if status not in STATUSES:
            status = "open"
        after = request.query_params.get("after")
        page = await asyncio.to_thread(self.queue.page, status=status, after=after)
        open_count = await asyncio.to_thread(self.queue.store.count_open_items)
        now = self.queue.guard._clock()
        return self.console.render(request, "queue.html", session, page=page, status=status, statuses=STATUSES,
                                   open_count=open_count, now=now, first=not after)  # fmt: skip

    async def item_page(
        self, request: Request, session: ConsoleSession, form: FormData | None, *, error: str | None = None
    ) -> Response:
        item_id = request.path_params["item_id"]
        try:
            detail = await asyncio.to_thread(self.queue.detail, item_id)
        except ReviewConflict:
            return self.console.render(request, "error.html", session, 404, message="No review item has that id.")
        history = await asyncio.to_thread(self.queue.history, detail.entry.item.user_hash)
        now = self.queue.guard._clock()
        assert session.reviewer is not None
        return self.console.render(
            request, "item.html", session, 409 if error else 200, detail=detail, entry=detail.entry,
            item=detail.entry.item, history=history, mine=detail.entry.held_by(session.reviewer, now),
            other=detail.entry.held_by_other(session.reviewer, now), now=now, error=error,
            done=DONE.get(request.query_params.get("done", "")),
        )  # fmt: skip

    async def act(self, request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        item_id = request.path_params["item_id"]
        action = request.path_params["action"]
        reviewer = session.reviewer
        assert reviewer is not None
        reason = _text(form, "reason")
        try:
            if action == "claim":
                await asyncio.to_thread(self.queue.claim, item_id, reviewer)
                done = "claimed"
            elif action == "release":
                await asyncio.to_thread(self.queue.release, item_id, reviewer)
                done = "released"
            elif action == "confirm":
                await asyncio.to_thread(self.queue.confirm, item_id, reviewer, reason)
                done = "confirmed"
            elif action == "dismiss":
                await asyncio.to_thread(self.queue.dismiss, item_id, reviewer, reason)
                done = "dismissed"
            elif action == "note":
                entry = await asyncio.to_thread(self.queue.entry, item_id)
                body = _text(form, "body")
                await asyncio.to_thread(lambda: self.queue.note(entry.item.user_hash, reviewer, body, item_id=item_id))
                done = "noted"
            else:
                return self.console.render(request, "error.html", session, 404, message="No such action.")
        except AupguardError as exc:  # ReviewConflict and refused notes: the page says why
            return await self.item_page(request, session, None, error=str(exc))
        return RedirectResponse(url(request, f"/items/{item_id}?done={done}"), status_code=303)

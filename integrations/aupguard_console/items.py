"""The queue and one item: filters, search, bulk decisions, claim, release, confirm, dismiss
(each with a required reason), decide-and-next, skip, note."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aupguard.errors import AupguardError
from aupguard.review import ReviewConflict, filter_query, parse_filter, required_reason
from aupguard.stores.review_records import QUEUE_SORTS, QUEUE_SOURCES, QUEUE_STATUSES, ConsoleSession, QueueFilter

from .labels import highlight, matched_terms, sla_of
from .web import REVEAL_COOKIE, Console, url

__all__ = ["DONE", "ItemViews", "back_filter"]

DONE = {  # messages shown after a redirect, chosen by code (no text from the query is shown)
    "claimed": "You hold this item now.",
    "released": "Item released.",
    "confirmed": "Flag confirmed: the strike stands.",
    "dismissed": "Dismissed: the strike is voided and the user de-escalated.",
    "noted": "Note added.",
    "suspended": "User suspended.",
    "reinstated": "User reinstated.",
    "empty": "Decided. No other open item matches these filters: the queue is clear.",
    "prefs": "Preference saved for this browser session.",
}
DECISIONS = ("confirm", "dismiss")


def _text(form: FormData | None, name: str) -> str:
    value = form.get(name) if form is not None else None
    return value.strip() if isinstance(value, str) else ""


def back_filter(raw: str, me: str | None) -> QueueFilter:
    """The queue filter an item page came from (its ``back`` value), parsed like a query string."""
    return parse_filter(dict(parse_qsl(raw[:2000])), me=me)


def _int(value: str | None) -> int:
    return int(value) if value is not None and value.isdigit() and len(value) < 6 else 0


class ItemViews:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.queue = console.queue

    async def queue_page(self, request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        reviewer = session.reviewer
        f = parse_filter(request.query_params, me=reviewer)
        after = request.query_params.get("after")
        page = await asyncio.to_thread(self.queue.find, f, after=after)
        total = await asyncio.to_thread(self.queue.count, f)
        open_count = await asyncio.to_thread(self.queue.store.count_open_items)
        per_user = await asyncio.to_thread(
            self.queue.store.open_items_per_user, [e.item.user_hash for e in page.entries]
        )
        snippets = await asyncio.to_thread(self.queue.snippets, page.entries)
        now = self.queue.guard._clock()
        sla = self.queue.guard.policy.review.sla
        params = request.query_params
        done = DONE.get(params.get("done", ""))
        if params.get("done") == "bulk":
            done = f"{_int(params.get('n'))} items decided; {_int(params.get('skipped'))} skipped."
        return self.console.render(
            request, "queue.html", session, page=page, f=f, query=filter_query(f), total=total,
            open_count=open_count, per_user=per_user, snippets=snippets, now=now,
            slas={e.item.id: sla_of(e.item, now, sla) for e in page.entries}, first=not after,
            statuses=QUEUE_STATUSES, sources=QUEUE_SOURCES, sorts=QUEUE_SORTS, done=done,
            categories=sorted({c for r in self.queue.guard.policy.moderation.rules for c in [r.category]}),
            skipped=[], sla_hours=sla / 3600,
        )  # fmt: skip

    async def bulk(self, request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        assert session.reviewer is not None
        assert form is not None
        back = filter_query(back_filter(_text(form, "back"), session.reviewer))
        ids = [v for v in form.getlist("item") if isinstance(v, str) and 0 < len(v) <= 64]
        action = _text(form, "action")
        try:
            if action not in DECISIONS:
                raise AupguardError("choose Confirm or Dismiss for the selected items")
            if not ids:
                raise AupguardError("select at least one item")
            result = await asyncio.to_thread(self.queue.bulk, ids, session.reviewer, action, _text(form, "reason"))
        except AupguardError as exc:
            return self.console.render(request, "error.html", session, 400, message=str(exc), back=back)
        query = "&".join(p for p in (back, f"done=bulk&n={len(result.done)}&skipped={len(result.skipped)}") if p)
        return RedirectResponse(url(request, f"/?{query}"), status_code=303)

    async def prefs(self, request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        back = filter_query(back_filter(_text(form, "back"), session.reviewer))
        response = RedirectResponse(url(request, "/?" + "&".join(p for p in (back, "done=prefs") if p)), 303)
        path = (request.scope.get("root_path") or "").rstrip("/") + "/"
        if _text(form, "reveal") == "1":  # no max-age: it ends with the browser session
            response.set_cookie(REVEAL_COOKIE, "1", path=path, secure=self.console.sessions.secure, httponly=True,
                                samesite="strict")  # fmt: skip
        else:
            response.delete_cookie(REVEAL_COOKIE, path=path, secure=self.console.sessions.secure, httponly=True,
                                   samesite="strict")  # fmt: skip
        return response

    async def item_page(
        self, request: Request, session: ConsoleSession, form: FormData | None, *, error: str | None = None,
        code: int = 409,
    ) -> Response:  # fmt: skip
        item_id = request.path_params["item_id"]
        try:
            detail = await asyncio.to_thread(self.queue.detail, item_id)
        except ReviewConflict:
            return self.console.render(request, "error.html", session, 404, message="No review item has that id.")
        item = detail.entry.item
        history = await asyncio.to_thread(self.queue.history, item.user_hash)
        now = self.queue.guard._clock()
        assert session.reviewer is not None
        raw_back = _text(form, "back") if form is not None else request.query_params.get("back", "")
        back = filter_query(back_filter(raw_back, session.reviewer))
        terms = matched_terms(self.queue.guard.policy.moderation.rules, item.categories)
        texts = [(t, highlight(t.text, terms)) for t in detail.texts]
        return self.console.render(
            request, "item.html", session, code if error else 200, detail=detail, entry=detail.entry, item=item,
            history=history, mine=detail.entry.held_by(session.reviewer, now), terms=terms, texts=texts,
            other=detail.entry.held_by_other(session.reviewer, now), now=now, error=error, back=back,
            sla=sla_of(item, now, self.queue.guard.policy.review.sla), choices=SUSPEND_CHOICES,
            done=DONE.get(request.query_params.get("done", "")),
        )  # fmt: skip

    async def act(self, request: Request, session: ConsoleSession, form: FormData | None) -> Response:
        item_id = request.path_params["item_id"]
        action = request.path_params["action"]
        reviewer = session.reviewer
        assert reviewer is not None
        back = filter_query(back_filter(_text(form, "back"), reviewer))
        reason = _text(form, "reason")
        try:
            if action == "claim":
                await asyncio.to_thread(self.queue.claim, item_id, reviewer)
                done = "claimed"
            elif action == "release":
                await asyncio.to_thread(self.queue.release, item_id, reviewer)
                done = "released"
            elif action in DECISIONS:
                reason = required_reason(reason)  # before anything changes: a decision says why
                decide = self.queue.confirm if action == "confirm" else self.queue.dismiss
                await asyncio.to_thread(decide, item_id, reviewer, reason)
                done = "confirmed" if action == "confirm" else "dismissed"
                if _text(form, "next") == "1":
                    return await self._next(request, reviewer, back, done, skip=item_id)
            elif action == "skip":
                await asyncio.to_thread(self.queue.release, item_id, reviewer)
                return await self._next(request, reviewer, back, "released", skip=item_id)
            elif action == "note":
                entry = await asyncio.to_thread(self.queue.entry, item_id)
                body = _text(form, "body")
                await asyncio.to_thread(lambda: self.queue.note(entry.item.user_hash, reviewer, body, item_id=item_id))
                done = "noted"
            else:
                return self.console.render(request, "error.html", session, 404, message="No such action.")
        except ReviewConflict as exc:
            return await self.item_page(request, session, form, error=str(exc))
        except AupguardError as exc:  # a missing reason, a refused note: the page says why
            return await self.item_page(request, session, form, error=str(exc), code=400)
        return RedirectResponse(url(request, self.item_url(item_id, back, done)), status_code=303)

    @staticmethod
    def item_url(item_id: str, back: str, done: str) -> str:
        from urllib.parse import quote

        return f"/items/{quote(item_id, safe='')}?done={done}" + (f"&back={quote(back, safe='')}" if back else "")

    async def _next(self, request: Request, reviewer: str, back: str, done: str, *, skip: str) -> Response:
        f = back_filter(back, reviewer)
        following = await asyncio.to_thread(self.queue.next_open, f, reviewer, skip=skip)
        if following is None:
            return RedirectResponse(url(request, "/?" + "&".join(p for p in (back, "done=empty") if p)), 303)
        return RedirectResponse(url(request, self.item_url(following.item.id, back, done)), status_code=303)


SUSPEND_CHOICES = (("1h", "1 hour"), ("1d", "1 day"), ("7d", "7 days"), ("30d", "30 days"), ("", "until reinstated"))

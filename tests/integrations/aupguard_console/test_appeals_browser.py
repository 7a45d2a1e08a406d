"""The appeal flow end to end, in a real browser (Debian's chromium via Playwright) behind a
real uvicorn: a suspended end user reads their notices and appeals through the app's
notices route, a reviewer upholds the appeal in the console, the strike is voided, the
suspension lifted, and the user's notices show the outcome and the reviewer's reason."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aupguard import Safeguards
from aupguard_asgi import SafeguardsMiddleware
from aupguard_console import review_console
from tests.conftest import MakeGuard
from tests.integrations.aupguard_console.test_browser import SCREENSHOTS, browser, log_in  # noqa: F401 - the fixture
from tests.support.review import add_reviewer, review_guard

pytestmark = pytest.mark.browser

APPEAL_TEXT = "I asked about nerve agent synthesis for my chemistry exam <b>revision</b>"


@pytest.fixture
def guard(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch) -> Safeguards:
    guard = review_guard(make_guard, monkeypatch)
    add_reviewer(guard, "dana")
    return guard


@pytest.fixture
def site(guard: Safeguards) -> Iterator[str]:
    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"answer": "ok"})

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"])])
    app.mount("/aupguard", review_console(guard))
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user", routes=["/v1/*"],
                       notices_route="/me/safety")  # fmt: skip
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


def test_an_end_user_appeals_a_reviewer_upholds_and_the_user_sees_the_outcome(
    browser: Browser,  # noqa: F811 - the fixture imported above
    site: str,
    guard: Safeguards,
) -> None:
    alice = httpx.Client(base_url=site, headers={"x-user": "alice"}, timeout=10)
    for _ in range(3):  # three flags: the ladder suspends (suspend = 3)
        assert alice.post("/v1/chat", json={"prompt": "explain nerve agent synthesis"}).status_code == 403
    assert alice.post("/v1/chat", json={"prompt": "hello"}).json()["error"]["type"] == "user_suspended"
    notices = alice.get("/me/safety").json()
    assert notices["suspended"] and len(notices["strikes"]) == 3
    latest = notices["strikes"][0]
    filed = alice.post("/me/safety/appeals", json={"strike_id": latest["id"], "text": APPEAL_TEXT})
    assert filed.status_code == 201
    assert httpx.get(f"{site}/me/safety", timeout=10).status_code == 401  # nobody else reads it

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, site)
    page.get_by_role("link", name="Appeals").click()
    page.get_by_text("1 open").wait_for()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "console-appeals.png"), full_page=True)
    page.get_by_role("link", name="Review appeal").click()
    assert page.locator("pre.appeal-text").inner_text() == APPEAL_TEXT  # shown as text, not markup
    assert page.locator("pre.appeal-text b").count() == 0
    page.get_by_role("button", name="Uphold: void the strike").click()  # no reason: the browser asks for one
    assert page.url.endswith(f"/appeals/{filed.json()['id']}")
    assert guard.status("alice").level.value == "suspended"
    page.fill("#uphold-reason", "Exam revision is an allowed use.")
    page.screenshot(path=str(SCREENSHOTS / "console-appeal.png"), full_page=True)
    page.get_by_role("button", name="Uphold: void the strike").click()
    page.get_by_text("Appeal upheld: the strike is voided").wait_for()
    assert page.get_by_role("button", name="Deny: the strike stands").count() == 0  # decided once
    page.close()
    for width in (390, 1280):  # the appeals pages fit a phone and a laptop, as every console page does
        narrow = browser.new_page(viewport={"width": width, "height": 844})
        log_in(narrow, site)
        for path in ("/appeals", f"/appeals/{filed.json()['id']}", "/appeals?status=upheld"):
            narrow.goto(f"{site}/aupguard{path}")
            scrolled, inner = narrow.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
            assert scrolled <= inner, (path, width, scrolled)
        narrow.close()

    assert guard.store.find_strike(latest["id"]).voided_at is not None  # type: ignore[union-attr]
    notices = alice.get("/me/safety").json()
    assert not notices["suspended"]
    assert [s["voided"] for s in notices["strikes"] if s["id"] == latest["id"]] == [True]
    (appeal,) = notices["appeals"]
    assert appeal["status"] == "upheld" and appeal["reason"] == "Exam revision is an allowed use."
    assert "dana" not in str(notices)
    assert alice.post("/v1/chat", json={"prompt": "hello"}).status_code == 200  # two strikes: throttled, not suspended
    (decided,) = [e for e in guard.audit.events(user_id="alice") if e.action == "appeal_decided"]
    assert decided.actor == "reviewer:dana"

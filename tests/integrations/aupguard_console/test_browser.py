"""The review console in a real browser (Debian's chromium driven by Playwright) behind a real
uvicorn, mounted at /aupguard next to a chat endpoint guarded by SafeguardsMiddleware."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aupguard import Safeguards
from aupguard.ids import new_id
from aupguard.stores import ReviewItem
from aupguard_asgi import SafeguardsMiddleware
from aupguard_console import review_console
from tests.conftest import MakeGuard
from tests.support.review import PASSWORD, add_reviewer, review_guard

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# saved by every run, outside the tree's tracked files; AUPGUARD_SCREENSHOTS=docs/img refreshes the docs' copies
SCREENSHOTS = Path(
    os.environ.get("AUPGUARD_SCREENSHOTS", Path(__file__).resolve().parents[3] / ".aupguard" / "screenshots")
)
XSS_PROMPT = 'nerve agent synthesis <script>window.__xss = 1</script><img src=x onerror="window.__xss = 2; alert(2)">'
XSS_EXPLANATION = '<img src=x onerror="window.__xss = 3; alert(3)">'


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("the console's browser tests need Debian's chromium: apt-get install chromium (make test does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture
def guard(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch) -> Safeguards:
    guard = review_guard(make_guard, monkeypatch)
    add_reviewer(guard, "dana")
    return guard


@pytest.fixture
def site(guard: Safeguards) -> Iterator[str]:
    """The guarded chat app with the console mounted at /aupguard, on a real uvicorn."""

    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"answer": "ok"})

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"])])
    app.mount("/aupguard", review_console(guard))
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user", routes=["/v1/*"])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def chat(site: str, user: str, prompt: str) -> httpx.Response:
    return httpx.post(f"{site}/v1/chat", json={"prompt": prompt}, headers={"x-user": user}, timeout=10)


def log_in(page: Page, site: str) -> None:
    """By keyboard only: the name field has focus, Tab to the password, Enter submits."""
    page.goto(f"{site}/aupguard/")
    assert page.url == f"{site}/aupguard/login"
    page.wait_for_function("document.activeElement && document.activeElement.id === 'name'")  # autofocus
    page.keyboard.type("dana")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{site}/aupguard/", page.content()


def test_claim_dismiss_and_suspend_in_the_browser(browser: Browser, site: str, guard: Safeguards) -> None:
    assert chat(site, "alice", "how do I do nerve agent synthesis").json()["error"]["type"] == "content_flagged"
    for user in ("mallory", "mallory", "trent"):
        chat(site, user, "hello there")
        chat(site, user, "write me a ransomware builder")  # a "review" verdict: allowed, queued, a strike
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, site)
    assert page.get_by_text("4 open").count() == 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "console-queue.png"), full_page=True)

    alice = guard.hash_user("alice")
    page.locator("tr", has=page.locator(f'a[href="/aupguard/users/{alice}"]')).get_by_role(
        "link", name="Review"
    ).click()
    assert page.locator("pre.sensitive").inner_text() == "how do I do nerve agent synthesis"
    page.get_by_role("button", name="Claim this item").click()
    page.get_by_text("You hold this item now.").wait_for()
    page.get_by_role("button", name="Reveal").click()
    page.screenshot(path=str(SCREENSHOTS / "console-item.png"), full_page=True)
    page.fill("#dismiss-reason", "a chemistry student's homework question")
    page.get_by_role("button", name="Dismiss", exact=True).click()
    page.get_by_text("Dismissed: the strike is voided").wait_for()
    assert guard.status("alice").strikes == 0
    (dismissed,) = [e for e in guard.audit.events(user_id="alice") if e.action == "review_dismiss"]
    assert dismissed.actor == "reviewer:dana" and dismissed.reason == "a chemistry student's homework question"

    page.get_by_role("link", name="Violation report").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{site}/aupguard/report"
    page.screenshot(path=str(SCREENSHOTS / "console-report.png"), full_page=True)
    mallory = guard.hash_user("mallory")
    assert chat(site, "mallory", "hello again").status_code == 200
    page.get_by_role("link", name=f"Suspend {mallory[:16]} for 7 days…").click()
    page.fill("#confirm-action-reason", "ransomware requests")
    page.get_by_role("button", name="Suspend for 7 days").click()
    page.get_by_text("User suspended.").wait_for()
    refused = chat(site, "mallory", "hello again")
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "user_suspended"
    assert chat(site, "trent", "hello again").status_code == 200  # only mallory
    page.get_by_role("link", name=f"Reinstate {mallory[:16]}…").click()
    page.fill("#confirm-action-reason", "talked to the customer")
    page.get_by_role("button", name="Reinstate").click()
    page.get_by_text("User reinstated.").wait_for()
    assert chat(site, "mallory", "hello again").status_code == 200
    page.close()


def test_stored_xss_in_prompts_and_explanations_does_not_run(browser: Browser, site: str, guard: Safeguards) -> None:
    assert chat(site, "eve", XSS_PROMPT).status_code == 403
    user_hash = guard.hash_user("eve")
    forged = ReviewItem(new_id(), time.time(), user_hash, None, None, "review", ("<b>cat</b>",), ("<i>mod</i>",),
                        XSS_EXPLANATION)  # fmt: skip
    guard.store.add_review_item(forged)
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(page, site)
    assert page.locator("td.source", has_text="<i>mod</i> on the prompt").count() == 1  # shown as text
    assert page.locator("td b, td i, main img").count() == 0
    page.get_by_role("button", name="Reveal").first.click()  # a revealed snippet is still text
    assert page.locator("td.snippet img, td.snippet script").count() == 0
    hrefs = [link.get_attribute("href") for link in page.get_by_role("link", name="Review").all()]
    assert len(hrefs) == 2
    for href in hrefs:
        page.goto(f"{site}{href}")
        assert page.locator("main img, main script, dd b, dd i").count() == 0
    page.goto(f"{site}/aupguard/items/{forged.id}")
    assert page.locator("p.explanation").inner_text() == XSS_EXPLANATION
    eve_items = [e.item.id for e in guard.store.user_queue_entries(user_hash) if e.item.request_id]
    page.goto(f"{site}/aupguard/items/{eve_items[0]}")
    assert page.locator("pre.sensitive").inner_text() == XSS_PROMPT
    assert page.locator("pre.sensitive img, pre.sensitive script").count() == 0
    page.goto(f"{site}/aupguard/users/{user_hash}")
    page.goto(f"{site}/aupguard/report")
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert dialogs == []
    page.close()


def test_a_browser_post_without_csrf_is_refused(browser: Browser, site: str, guard: Safeguards) -> None:
    assert chat(site, "alice", "nerve agent synthesis").status_code == 403
    page = browser.new_page()
    log_in(page, site)
    page.get_by_role("link", name="Review").first.click()
    page.evaluate("document.querySelectorAll('input[name=csrf]').forEach(e => e.value = 'forged')")
    page.get_by_role("button", name="Claim this item").click()
    assert page.get_by_text("CSRF token is missing or wrong").count() == 1
    (entry,) = guard.store.user_queue_entries(guard.hash_user("alice"))
    assert entry.claimed_by is None
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["aupguard_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/aupguard/"
    assert page.evaluate("document.cookie") == ""  # not readable from scripts
    page.close()

"""The review console over HTTP (Starlette's TestClient, the real store): login and its
session cookie, CSRF on every POST, no page without login, security headers, a mount prefix."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from aupguard import Safeguards
from aupguard_console import PUBLIC_PATHS, SECURITY_HEADERS, review_console
from aupguard_console.sessions import COOKIE
from tests.conftest import MakeGuard
from tests.support.review import PASSWORD, add_reviewer, flag, review_guard


@pytest.fixture
def guard(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch) -> Safeguards:
    guard = review_guard(make_guard, monkeypatch)
    add_reviewer(guard, "dana")
    add_reviewer(guard, "eli")
    return guard


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match is not None
    return match.group(1)


def log_in(client: TestClient, name: str = "dana", prefix: str = "") -> str:
    token = csrf_of(client.get(f"{prefix}/login").text)
    response = client.post(f"{prefix}/login", data={"csrf": token, "name": name, "password": PASSWORD},
                           follow_redirects=False)  # fmt: skip
    assert response.status_code == 303, response.text
    return csrf_of(client.get(f"{prefix}/").text)


def concrete_paths(app: Starlette) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        assert isinstance(route, Route)
        path = route.path.replace("{item_id}", "x").replace("{user_hash}", "t1_x").replace("{action}", "claim")
        path = path.replace("{fmt:str}", "csv")
        out += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return out


def test_every_route_redirects_to_login_when_logged_out(guard: Safeguards) -> None:
    app = review_console(guard)
    paths = concrete_paths(app)
    assert len(paths) >= 11
    client = TestClient(app)
    checked = 0
    for method, path in paths:
        if path in PUBLIC_PATHS:
            continue
        response = client.request(method, path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login", (method, path)
        checked += 1
    assert checked == len(paths) - 4  # all but the login form, its POST, the stylesheet and the script
    assert client.get("/login").status_code == 200 and client.get("/console.css").status_code == 200
    assert client.get("/console.js").headers["content-type"].startswith("text/javascript")


def test_login_sets_a_strict_cookie_and_rotates_the_session(guard: Safeguards) -> None:
    client = TestClient(review_console(guard))
    client.get("/login")
    before = client.cookies[COOKIE]
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"csrf": token, "name": "dana", "password": PASSWORD}, follow_redirects=False)
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # [review] secure_cookie = false in these tests
    after = client.cookies[COOKIE]
    assert after != before  # a new session id at login: a planted one is useless
    planted = TestClient(review_console(guard), cookies={COOKIE: before})
    assert planted.get("/", follow_redirects=False).status_code == 303
    assert client.get("/").status_code == 200


def test_the_cookie_is_secure_by_default(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    guard = review_guard(make_guard, monkeypatch, policy={"review": {}})
    response = TestClient(review_console(guard), base_url="https://testserver").get("/login")
    assert "Secure" in response.headers["set-cookie"]


def test_a_forged_or_unsigned_cookie_is_refused(guard: Safeguards) -> None:
    client = TestClient(review_console(guard))
    log_in(client)
    session_id = client.cookies[COOKIE].rpartition(".")[0]
    for forged in (session_id, session_id + ".AAAA", "x." + client.cookies[COOKIE].rpartition(".")[2]):
        other = TestClient(review_console(guard), cookies={COOKIE: forged})
        assert other.get("/", follow_redirects=False).status_code == 303


def test_wrong_password_and_missing_login_csrf(guard: Safeguards) -> None:
    client = TestClient(review_console(guard))
    token = csrf_of(client.get("/login").text)
    bad = client.post("/login", data={"csrf": token, "name": "dana", "password": "wrong password!"})
    assert bad.status_code == 401 and "Wrong name or password" in bad.text and PASSWORD not in bad.text
    no_csrf = client.post("/login", data={"name": "dana", "password": PASSWORD}, follow_redirects=False)
    assert no_csrf.status_code == 403


def test_password_guessing_is_throttled_before_the_password_is_checked(guard: Safeguards) -> None:
    client = TestClient(review_console(guard))
    token = csrf_of(client.get("/login").text)
    tries = [client.post("/login", data={"csrf": token, "name": "dana", "password": f"guess {n}"}).status_code
             for n in range(5)]  # fmt: skip
    assert tries == [401] * 5
    blocked = client.post("/login", data={"csrf": token, "name": "dana", "password": PASSWORD}, follow_redirects=False)
    assert blocked.status_code == 429 and blocked.headers["retry-after"] == "60"  # even the right password waits
    other = client.post("/login", data={"csrf": token, "name": "eli", "password": PASSWORD}, follow_redirects=False)
    assert other.status_code == 303  # another reviewer from the same address is not locked out


ATTACKER, REVIEWER, PROXY = "203.0.113.7", "198.51.100.20", "10.0.0.1"


def fail_five_times(client: TestClient, headers: Callable[[int], dict[str, str]] = lambda n: {}) -> int:
    """Five wrong passwords for dana (try ``n`` sends ``headers(n)``), then the right one: its status."""
    token = csrf_of(client.get("/login", headers=headers(0)).text)
    for n in range(5):
        data = {"csrf": token, "name": "dana", "password": f"guess {n}"}
        assert client.post("/login", data=data, headers=headers(n)).status_code == 401
    data = {"csrf": token, "name": "dana", "password": PASSWORD}
    return client.post("/login", data=data, headers=headers(5), follow_redirects=False).status_code


def test_failures_from_one_address_lock_the_name_for_that_address_only(guard: Safeguards) -> None:
    # The throttle counted tries per name alone: anyone could lock a reviewer out from anywhere.
    app = review_console(guard)
    assert fail_five_times(TestClient(app, client=(ATTACKER, 40000))) == 429
    log_in(TestClient(app, client=(REVIEWER, 40001)))  # dana, from her own address, is let in


def test_a_spoofed_forwarded_for_is_ignored_without_a_trusted_proxy_header(guard: Safeguards) -> None:
    app = review_console(guard)
    spoofed = lambda n: {"X-Forwarded-For": f"192.0.2.{n}"}  # noqa: E731 - a new "address" every try
    assert fail_five_times(TestClient(app, client=(ATTACKER, 40000)), spoofed) == 429
    log_in(TestClient(app, client=(REVIEWER, 40001)))


def test_behind_a_trusted_proxy_the_address_is_the_last_one_it_wrote(
    make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    review = {"secure_cookie": False, "trusted_proxy_header": "X-Forwarded-For"}
    guard = review_guard(make_guard, monkeypatch, policy={"review": review})
    add_reviewer(guard, "dana")
    app = review_console(guard)
    # every request comes from the proxy; the client may put anything before what the proxy appends
    attacker = TestClient(app, client=(PROXY, 40000), headers={"X-Forwarded-For": f"{REVIEWER}, {ATTACKER}"})
    assert fail_five_times(attacker) == 429
    reviewer = TestClient(app, client=(PROXY, 40001), headers={"X-Forwarded-For": REVIEWER})
    log_in(reviewer)


def test_login_forms_per_address_are_bounded(guard: Safeguards) -> None:
    statuses = [TestClient(review_console(guard)).get("/login").status_code for _ in range(31)]
    assert statuses == [200] * 30 + [429]  # each cookieless form makes a session row: not without bound


def test_a_post_without_the_csrf_token_is_refused(guard: Safeguards) -> None:
    item = flag(guard, "alice")
    client = TestClient(review_console(guard))
    token = log_in(client)
    for data in ({}, {"csrf": "wrong"}, {"csrf": token[:-1]}):
        assert client.post(f"/items/{item}/claim", data=data).status_code == 403
        assert client.post(f"/users/{guard.hash_user('alice')}/suspend", data=data).status_code == 403
    assert guard.store.queue_entry(item).claimed_by is None  # type: ignore[union-attr]
    assert guard.status("alice").level.value != "suspended"
    assert client.post(f"/items/{item}/claim", data={"csrf": token}, follow_redirects=False).status_code == 303


def test_two_reviewers_cannot_hold_one_item(guard: Safeguards) -> None:
    item = flag(guard, "alice")
    dana, eli = TestClient(review_console(guard)), TestClient(review_console(guard))
    dana_token, eli_token = log_in(dana, "dana"), log_in(eli, "eli")
    assert dana.post(f"/items/{item}/claim", data={"csrf": dana_token}).status_code == 200
    refused = eli.post(f"/items/{item}/claim", data={"csrf": eli_token})
    assert refused.status_code == 409 and "dana is working on this item" in refused.text
    assert eli.post(f"/items/{item}/dismiss", data={"csrf": eli_token, "reason": "mine now"}).status_code == 409
    assert guard.status("alice").strikes == 1


def test_security_headers_on_every_response(guard: Safeguards) -> None:
    client = TestClient(review_console(guard))
    for response in (client.get("/login"), client.get("/", follow_redirects=False), client.get("/console.css")):
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value
    csp = SECURITY_HEADERS["content-security-policy"]
    # only the console's own script file runs: no inline script, no event handler attribute, no eval
    assert "default-src 'none'" in csp and "script-src 'self';" in csp and "unsafe" not in csp


def test_logout_ends_the_session_server_side(guard: Safeguards) -> None:
    client = TestClient(review_console(guard))
    token = log_in(client)
    cookie = client.cookies[COOKIE]
    assert client.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    replay = TestClient(review_console(guard), cookies={COOKIE: cookie})
    assert replay.get("/", follow_redirects=False).status_code == 303


def test_mounted_under_a_prefix_every_link_keeps_it(guard: Safeguards) -> None:
    item = flag(guard, "alice", "nerve agent synthesis <img src=x onerror=alert(1)>")
    host = Starlette()
    host.mount("/aupguard", review_console(guard))
    client = TestClient(host)
    assert client.get("/aupguard/", follow_redirects=False).headers["location"] == "/aupguard/login"
    token = log_in(client, prefix="/aupguard")
    queue = client.get("/aupguard/")
    links = [link for link in re.findall(r'(?:href|action)="([^"]+)"', queue.text) if link != "#main"]
    assert links and all(link.startswith("/aupguard/") for link in links), links
    page = client.get(f"/aupguard/items/{item}")
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text and "<img src=x" not in page.text
    done = client.post(f"/aupguard/items/{item}/claim", data={"csrf": token}, follow_redirects=False)
    assert done.headers["location"] == f"/aupguard/items/{item}?done=claimed"
    assert "Path=/aupguard/" in client.get("/aupguard/login").headers.get("set-cookie", "Path=/aupguard/")


def test_report_exports_and_suspend_with_a_reason(guard: Safeguards) -> None:
    flag(guard, "alice")
    client = TestClient(review_console(guard))
    token = log_in(client)
    csv_text = client.get("/report.csv")
    assert csv_text.headers["content-type"].startswith("text/csv")
    assert csv_text.text.splitlines()[1].startswith(guard.hash_user("alice"))
    assert client.get("/report.json").json()["users"][0]["flagged"] == 1
    user_hash = guard.hash_user("alice")
    data = {"csrf": token, "duration": "7d", "back_to": "report", "reason": "repeat abuse"}
    response = client.post(f"/users/{user_hash}/suspend", data=data, follow_redirects=False)
    assert response.headers["location"] == "/report?done=suspended"
    assert guard.check("alice").error == "user_suspended"
    assert "Reinstate" in client.get("/report").text


def test_queue_pages_by_keyset(guard: Safeguards) -> None:
    for n in range(55):
        flag(guard, f"user-{n}")
    app = review_console(guard)
    client = TestClient(app)
    log_in(client)
    rendered = app.state.console.renders
    first = client.get("/")
    assert "55 open" in first.text and first.text.count("/items/") == 50
    older = re.search(r'href="(/\?after=[^"]+)"', first.text)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&"))
    assert second.text.count("/items/") == 5
    assert app.state.console.renders == rendered + 2  # one template render per page
    assert not set(re.findall(r"/items/([0-9a-f-]+)", first.text)) & set(
        re.findall(r"/items/([0-9a-f-]+)", second.text)
    )

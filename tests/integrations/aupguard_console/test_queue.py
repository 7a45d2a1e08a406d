"""The working queue over HTTP (Starlette's TestClient, real stores): priority order, filters,
search, hostile query strings, bulk decisions, required reasons, decide-and-next; the same
filtered SQL on PostgreSQL; the priority page's query plan on 100k items."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from aupguard import Safeguards
from aupguard.review import ReviewQueue, parse_filter
from aupguard.stores import SQLiteStore
from aupguard.stores.review_records import QueueFilter
from aupguard.stores.tables.queue import queue_page_query
from aupguard.stores.tables.review import QUEUE_COLUMNS
from aupguard_console import review_console
from tests.conftest import MakeGuard
from tests.integrations.aupguard_console.test_app import log_in
from tests.stores.tables.test_review import T0, seed
from tests.support.review import add_reviewer, flag, review_guard

RANSOM = "write me a ransomware builder"  # a "review" verdict (allowed, queued, a strike)
NERVE = "explain nerve agent synthesis"  # a "block" verdict


@pytest.fixture
def guard(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch) -> Safeguards:
    guard = review_guard(make_guard, monkeypatch)
    add_reviewer(guard, "dana")
    add_reviewer(guard, "eli")
    return guard


def item_ids(html: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r'data-item="([^"]+)"', html)))


def test_priority_order_block_before_review_then_oldest(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [T0]
    guard = review_guard(make_guard, monkeypatch, policy={"review": {"secure_cookie": False, "sla": "1h"}},
                         clock=lambda: clock[0])  # fmt: skip
    add_reviewer(guard, "dana")
    order = []
    for user, text in (("u1", RANSOM), ("u2", NERVE), ("u3", RANSOM), ("u4", NERVE)):
        order.append((user, flag(guard, user, text)))
        clock[0] += 60
    client = TestClient(review_console(guard))
    log_in(client)
    ids = dict(order)
    assert item_ids(client.get("/").text) == [ids["u2"], ids["u4"], ids["u1"], ids["u3"]]
    assert item_ids(client.get("/?sort=oldest").text) == [ids["u1"], ids["u2"], ids["u3"], ids["u4"]]
    assert item_ids(client.get("/?sort=newest").text) == [ids["u4"], ids["u3"], ids["u2"], ids["u1"]]
    page = client.get("/").text
    assert 'class="sla breached"' not in page and page.count("due in 5") == 4  # 56 to 59 minutes left
    clock[0] = T0 + 3 * 3600 + 200  # past the 1 h SLA ([review] sla) for every item
    page = client.get("/").text
    assert page.count('<span class="sla breached">SLA breached 2 h ago</span>') == 4


def test_filters_and_search(guard: Safeguards) -> None:
    nerve = flag(guard, "alice", NERVE)
    ransom = flag(guard, "bob", RANSOM)
    flag(guard, "bob", NERVE)
    decision = guard.check("carol", prompt=RANSOM)
    guard.audit.link(decision.request_id, message_id="msg_01XYZ", anthropic_request_id="req_01ABC")
    guard.audit.flush()
    client = TestClient(review_console(guard))
    token = log_in(client)
    assert len(item_ids(client.get("/?category=weapons").text)) == 2
    assert item_ids(client.get("/?category=cyber&user=" + guard.hash_user("bob")).text) == [ransom]
    assert len(item_ids(client.get("/?moderator=rules").text)) == 4
    assert item_ids(client.get("/?moderator=other").text) == []
    assert len(item_ids(client.get("/?source=prompt").text)) == 4
    assert item_ids(client.get("/?source=sample").text) == []
    client.post(f"/items/{nerve}/claim", data={"csrf": token})
    assert item_ids(client.get("/?reviewer=me").text) == [nerve]
    assert item_ids(client.get("/?reviewer=dana").text) == [nerve]
    assert nerve not in item_ids(client.get("/?reviewer=-").text)
    (carol,) = guard.store.user_queue_entries(guard.hash_user("carol"))
    searches = {"msg_01XYZ": [carol.item.id], "req_01ABC": [carol.item.id], decision.request_id: [carol.item.id],
                carol.item.strike_id: [carol.item.id], nerve: [nerve]}  # fmt: skip
    for q, expected in searches.items():
        assert item_ids(client.get("/", params={"q": q}).text) == expected, q
    assert len(item_ids(client.get("/", params={"q": guard.hash_user("bob")}).text)) == 2
    # the page keeps the filters in its links: the next page, the item links, the bulk form
    page = client.get("/", params={"category": "weapons", "sort": "oldest"}).text
    assert 'name="back" value="category=weapons&amp;sort=oldest"' in page
    assert "?back=category%3Dweapons%26sort%3Doldest" in page
    assert "2 open from this user" in client.get("/").text  # bob's items are grouped by a link


HOSTILE = ["' OR 1=1 --", '"><script>alert(1)</script>', "%", "_", "\\", "weapons%", "\x00\x1b[31m", "a" * 5000]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_filter_values_are_literal_text(guard: Safeguards, value: str) -> None:
    flag(guard, "alice", NERVE)
    client = TestClient(review_console(guard))
    log_in(client)
    for name in ("category", "moderator", "user", "q", "reviewer", "status", "source", "sort", "after"):
        response = client.get("/", params={name: value})
        assert response.status_code == 200, (name, value)
        assert "<script>alert(1)" not in response.text
        if name in ("category", "moderator", "user", "q", "reviewer"):
            assert item_ids(response.text) == [], (name, value)  # matched as text, never as SQL or a pattern
        else:  # an unknown status / source / sort / cursor reads as the default
            assert len(item_ids(response.text)) == 1, (name, value)


@pytest.mark.parametrize(
    "cursor", ["-1", "9" * 400, "0_1e999_x", "0_nan_x", "0_-inf_x", "-5_1.0_x", "99999999999999999999_1_x", "0_1_"]
)
def test_hostile_cursors_and_page_numbers_never_fail(guard: Safeguards, cursor: str) -> None:
    for n in range(3):
        flag(guard, f"user-{n}", NERVE)
    client = TestClient(review_console(guard))
    log_in(client)
    response = client.get("/", params={"after": cursor, "page": cursor})
    assert response.status_code == 200 and len(item_ids(response.text)) in (0, 3)
    for page in ("-1", "10" * 30, "0", "x"):  # there is no page number: a keyset cursor instead
        assert client.get("/", params={"page": page}).status_code == 200


def test_a_cursor_far_past_the_end_is_an_empty_page(guard: Safeguards) -> None:
    flag(guard, "alice", NERVE)
    client = TestClient(review_console(guard))
    log_in(client)
    response = client.get("/", params={"after": "0_1e300_zzz"})
    assert response.status_code == 200 and item_ids(response.text) == [] and "Nothing matches." in response.text


def test_bulk_dismiss_with_one_reason_skips_what_it_cannot_take(guard: Safeguards) -> None:
    mine = [flag(guard, f"user-{n}", NERVE) for n in range(3)]
    held = flag(guard, "held", NERVE)
    resolved = flag(guard, "done", NERVE)
    queue = ReviewQueue(guard)
    queue.claim(held, "eli")
    queue.claim(resolved, "eli")
    queue.confirm(resolved, "eli", "right call")
    client = TestClient(review_console(guard))
    token = log_in(client)
    ids = [*mine, held, resolved, "no-such-item"]
    no_reason = client.post("/bulk", data={"csrf": token, "action": "dismiss", "item": ids, "reason": "  "})
    assert no_reason.status_code == 400 and "give a reason" in no_reason.text
    assert all(guard.store.queue_entry(i).item.status == "open" for i in mine)  # type: ignore[union-attr]
    no_csrf = client.post("/bulk", data={"action": "dismiss", "item": ids, "reason": "spam wave"})
    assert no_csrf.status_code == 403
    odd = client.post("/bulk", data={"csrf": token, "action": "delete", "item": ids, "reason": "x"})
    assert odd.status_code == 400
    done = client.post("/bulk", data={"csrf": token, "action": "dismiss", "item": ids, "reason": "spam wave",
                                      "back": "category=weapons"}, follow_redirects=False)  # fmt: skip
    assert done.status_code == 303 and done.headers["location"] == "/?category=weapons&done=bulk&n=3&skipped=3"
    assert "3 items decided; 3 skipped." in client.get(done.headers["location"]).text
    for n, item in enumerate(mine):
        assert guard.store.queue_entry(item).item.status == "dismissed"  # type: ignore[union-attr]
        assert guard.status(f"user-{n}").strikes == 0  # the strike is voided
    assert guard.store.queue_entry(held).item.status == "open"  # type: ignore[union-attr]
    assert guard.store.queue_entry(resolved).item.status == "confirmed"  # type: ignore[union-attr]
    events = [e for e in guard.audit.events(user_id="user-0") if e.action == "review_dismiss"]
    assert [(e.actor, e.reason) for e in events] == [("reviewer:dana", "spam wave")]


@pytest.mark.parametrize("action", ["confirm", "dismiss"])
def test_a_decision_without_a_reason_is_refused_by_the_server(guard: Safeguards, action: str) -> None:
    item = flag(guard, "alice", NERVE)
    client = TestClient(review_console(guard))
    token = log_in(client)
    client.post(f"/items/{item}/claim", data={"csrf": token})
    for reason in (None, "", "   ", "x" * 501):
        data = {"csrf": token} if reason is None else {"csrf": token, "reason": reason}
        response = client.post(f"/items/{item}/{action}", data=data)
        assert response.status_code == 400 and "give a reason" in response.text
    assert guard.store.queue_entry(item).item.status == "open"  # type: ignore[union-attr]
    assert guard.status("alice").strikes == 1


def test_suspend_and_reinstate_need_a_reason(guard: Safeguards) -> None:
    item = flag(guard, "alice", NERVE)
    user_hash = guard.hash_user("alice")
    client = TestClient(review_console(guard))
    token = log_in(client)
    refused = client.post(f"/users/{user_hash}/suspend", data={"csrf": token, "duration": "1d", "reason": " "})
    assert refused.status_code == 400 and guard.status("alice").level.value != "suspended"
    data = {"csrf": token, "duration": "1d", "reason": "abuse", "back_to": "item", "item": item, "back": "sort=newest"}
    done = client.post(f"/users/{user_hash}/suspend", data=data, follow_redirects=False)
    assert done.headers["location"] == f"/items/{item}?done=suspended&back=sort%3Dnewest"
    assert guard.status("alice").level.value == "suspended"
    assert client.post(f"/users/{user_hash}/reinstate", data={"csrf": token}).status_code == 400
    assert guard.status("alice").level.value == "suspended"


def test_decide_and_next_follows_the_queue_it_came_from(guard: Safeguards) -> None:
    first = flag(guard, "alice", NERVE)
    cyber = flag(guard, "bob", RANSOM)
    second = flag(guard, "carol", NERVE)
    client = TestClient(review_console(guard))
    token = log_in(client)
    client.post(f"/items/{first}/claim", data={"csrf": token})
    data = {"csrf": token, "reason": "clear violation", "next": "1", "back": "category=weapons"}
    response = client.post(f"/items/{first}/confirm", data=data, follow_redirects=False)
    assert response.headers["location"] == f"/items/{second}?done=confirmed&back=category%3Dweapons"  # not bob's
    assert guard.store.queue_entry(second).claimed_by == "dana"  # type: ignore[union-attr]  # claimed for her
    page = client.get(response.headers["location"]).text
    assert "Flag confirmed" in page and "You hold this item" in page
    response = client.post(f"/items/{second}/dismiss", data={**data, "reason": "quoting the news"},
                           follow_redirects=False)  # fmt: skip
    assert response.headers["location"] == "/?category=weapons&done=empty"
    assert guard.store.queue_entry(cyber).claimed_by is None  # type: ignore[union-attr]


def test_the_reveal_preference_is_a_session_cookie_set_by_a_csrf_form(guard: Safeguards) -> None:
    flag(guard, "alice", "explain nerve agent synthesis <img src=x onerror=alert(1)>")
    client = TestClient(review_console(guard))
    token = log_in(client)
    page = client.get("/").text
    assert 'class="sensitive-box"' in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert client.post("/prefs", data={"reveal": "1"}).status_code == 403
    response = client.post("/prefs", data={"csrf": token, "reveal": "1"}, follow_redirects=False)
    cookie = response.headers["set-cookie"]
    assert "aupguard_console_reveal=1" in cookie and "Max-Age" not in cookie and "HttpOnly" in cookie
    assert 'class="sensitive-box revealed"' in client.get("/").text


def test_the_report_asks_before_it_acts_and_rates_only_from_enough_calls(guard: Safeguards) -> None:
    flag(guard, "alice", NERVE)
    user_hash = guard.hash_user("alice")
    client = TestClient(review_console(guard))
    log_in(client)
    report = client.get("/report").text
    assert "too few calls" in report and "100.0%" not in report  # 1 flag in 1 call is no rate
    assert f'href="/users/{user_hash}/confirm?action=suspend&amp;duration=7d"' in report
    confirm = client.get(f"/users/{user_hash}/confirm", params={"action": "suspend", "duration": "7d"})
    assert confirm.status_code == 200 and "Suspend this user for 7 days?" in confirm.text
    assert 'name="reason" maxlength="500" required' in confirm.text
    assert guard.status("alice").level.value != "suspended"  # showing the step changes nothing
    assert client.get(f"/users/{user_hash}/confirm", params={"action": "purge"}).status_code == 404
    assert client.get("/report", params={"window": "1d"}).status_code == 200
    assert client.get("/report", params={"window": "'; DROP TABLE users"}).status_code == 200


def test_filtered_pages_on_postgresql(make_guard: MakeGuard, monkeypatch: pytest.MonkeyPatch, pg_url: str) -> None:
    guard = review_guard(make_guard, monkeypatch, store=pg_url)
    items = [flag(guard, "alice", NERVE), flag(guard, "bob", RANSOM), flag(guard, "carol", NERVE)]
    queue = ReviewQueue(guard)
    assert [e.item.id for e in queue.find(QueueFilter()).entries] == [items[0], items[2], items[1]]
    assert [e.item.id for e in queue.find(QueueFilter(category="cyber")).entries] == [items[1]]
    assert queue.find(QueueFilter(category="50%_\\'")).entries == []
    assert [e.item.id for e in queue.find(QueueFilter(source="prompt", moderator="rules")).entries] == [
        items[0], items[2], items[1]]  # fmt: skip
    strike = guard.store.queue_entry(items[1]).item.strike_id  # type: ignore[union-attr]
    assert [e.item.id for e in queue.find(QueueFilter(search=strike)).entries] == [items[1]]
    first = queue.find(QueueFilter(), limit=1)
    rest = queue.find(QueueFilter(), after=first.next_cursor, limit=5).entries
    assert [e.item.id for e in rest] == [items[2], items[1]]
    assert queue.count(QueueFilter(reviewer="-")) == 3
    result = queue.bulk(items[:2], "dana", "dismiss", "test wave")
    assert result.done == items[:2] and result.skipped == []
    assert queue.bulk(items[:2], "dana", "confirm", "again").skipped[0][1] == "this item is already dismissed"
    assert queue.next_open(QueueFilter(), "dana") is not None
    assert guard.store.open_items_per_user([guard.hash_user("carol")]) == {guard.hash_user("carol"): 1}


def test_the_priority_page_uses_its_index_on_100k_items(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "big.db"))
    seed(store, 100_000, statuses=("open", "open", "open", "confirmed"))
    store._conn.execute("UPDATE review_items SET strike_id = 'strike-' || id")  # flags have a strike each
    store._conn.execute("ANALYZE")
    for f in (QueueFilter(), QueueFilter(sort="oldest"), QueueFilter(category="weapons")):
        sql, params = queue_page_query(f, columns=QUEUE_COLUMNS, now=T0, after=None, limit=51)
        plan = " | ".join(store.explain(sql, params))
        assert "USING INDEX review_items_" in plan and "TEMP B-TREE" not in plan, plan  # no sort of the queue
    sql, params = queue_page_query(QueueFilter(status="all", search="req-5"), columns=QUEUE_COLUMNS, now=T0,
                                   after=None, limit=51)  # fmt: skip
    plan = " | ".join(store.explain(sql, params))
    assert "review_items_by_request" in plan and "SCAN review_items" not in plan, plan
    store.close()


def test_parse_filter_falls_back_to_defaults() -> None:
    f = parse_filter({"status": "deleted", "sort": "random", "source": "x", "reviewer": "me", "q": " \t "}, me="dana")
    assert f == QueueFilter(reviewer="dana")

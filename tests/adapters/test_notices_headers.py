"""Before the fix (found by an attacker's review):
the ASGI notices route passes an identify HTTPException's headers on unfiltered and
strictly latin-1 encoded, unlike the guarded route (_header_list drops Content-Length /
Content-Type and encodes with 'replace')."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from aupguard_asgi import SafeguardsMiddleware
from tests.conftest import MakeGuard

ROUTE = "/me/safety"


def _app(make_guard: MakeGuard, headers: dict[str, str]) -> TestClient:
    def identify(request: Request) -> str | None:
        raise HTTPException(401, "Invalid or expired token.", headers=headers)

    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"])],
                    middleware=[Middleware(SafeguardsMiddleware, safeguards=make_guard(), identify=identify,
                                           notices_route=ROUTE)])  # fmt: skip
    return TestClient(app, raise_server_exceptions=False)


def test_non_latin1_header_value_is_401_on_guarded_route_but_500_on_notices(make_guard: MakeGuard) -> None:
    client = _app(make_guard, {"WWW-Authenticate": 'Bearer error_description="token expired – retry"'})
    assert client.post("/v1/chat", json={"prompt": "hi"}).status_code == 401
    answer = client.get(ROUTE)
    assert answer.status_code == 401, f"notices route answered {answer.status_code}"


def test_content_type_from_exception_overrides_or_duplicates_on_notices(make_guard: MakeGuard) -> None:
    client = _app(make_guard, {"Content-Type": "text/html", "WWW-Authenticate": "Bearer"})
    guarded = client.post("/v1/chat", json={"prompt": "hi"})
    assert guarded.headers.get_list("content-type") == ["application/json"]
    answer = client.get(ROUTE)
    assert answer.headers.get_list("content-type") == ["application/json"], answer.headers.get_list("content-type")

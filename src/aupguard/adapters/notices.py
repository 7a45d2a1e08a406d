"""The end user's notices API, for every adapter (no framework here): ``GET <route>`` answers
the identified user's :class:`~aupguard.review.appeals.Notices` as JSON; ``POST
<route>/appeals`` with ``{"strike_id": ...}`` or ``{"request_id": ...}`` and ``"text"`` files an
appeal. Both need an identified user (401 otherwise). Bodies are capped at :data:`MAX_BODY`
bytes and parsed strictly; every refusal has Anthropic's error shape.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..engine.request_body import BadBody, parse_json
from ..errors import AppealError, InvalidUserId, StoreError
from ..outcome import error_body
from .identify_errors import identify_error_shape

if TYPE_CHECKING:
    from ..engine.safeguards import Safeguards

__all__ = [
    "MAX_BODY",
    "NoticesAnswer",
    "answer_notices",
    "error_answer",
    "identify_http_answer",
    "notices_paths",
    "too_large",
]

log = logging.getLogger("aupguard.notices")
MAX_BODY = 64 * 1024
_FIELDS = frozenset({"strike_id", "request_id", "text"})


@dataclass(frozen=True, slots=True)
class NoticesAnswer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def notices_paths(route: str) -> tuple[str, str]:
    """The two paths of ``notices_route`` (checked: an absolute path, no trailing slash)."""
    if not isinstance(route, str) or not route.startswith("/") or route == "/" or route.endswith("/"):
        raise ValueError("notices_route is an absolute path such as '/me/safety' (no trailing slash)")
    return route, route + "/appeals"


def _json(status: int, data: object, headers: dict[str, str] | None = None) -> NoticesAnswer:
    base = {"content-type": "application/json", "cache-control": "no-store"}
    return NoticesAnswer(status, json.dumps(data).encode(), {**base, **(headers or {})})


def error_answer(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> NoticesAnswer:
    return _json(status, error_body(kind, message), headers)


def identify_http_answer(status: object, detail: object, headers: Mapping[str, str] | None = None) -> NoticesAnswer:
    """The app's ``identify`` raised its framework's HTTP exception (a bad token): its status
    and headers, in Anthropic's error shape, as on a guarded route (never a 500)."""
    code, _recorded, shown, message = identify_error_shape(status, detail)
    kept = {k: v for k, v in (headers or {}).items() if k.lower() not in ("content-type", "content-length")}
    return error_answer(code, shown, message, kept)


def too_large() -> NoticesAnswer:
    return error_answer(413, "request_too_large", f"The request body is larger than {MAX_BODY} bytes.")


def answer_notices(guard: Safeguards, user_id: str | None, method: str, appeals: bool, body: bytes) -> NoticesAnswer:
    """The answer to one request on the notices route (``appeals``: the ``/appeals`` path).
    Blocking (store I/O): async adapters run it in a thread."""
    allowed = "POST" if appeals else "GET"
    if method != allowed:
        return error_answer(405, "invalid_request_error", f"Use {allowed} here.", {"allow": allowed})
    if user_id is None:
        return error_answer(401, "authentication_required", "Sign in to see your account's standing.")
    try:
        if not appeals:
            return _json(200, guard.notices(user_id).as_dict())
        data = parse_json(body)
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            return error_answer(400, "invalid_request_error", f"unknown field {unknown[0]!r}; expected strike_id or "
                                                        "request_id, and text")  # fmt: skip
        appeal_id = guard.appeal(user_id, strike_id=data.get("strike_id"), request_id=data.get("request_id"),
                                 text=data.get("text"))  # type: ignore[arg-type]  # fmt: skip
        return _json(201, {"id": appeal_id, "status": "open"})
    except BadBody as exc:
        return error_answer(400, exc.kind, str(exc))
    except AppealError as exc:
        headers = {"retry-after": str(exc.retry_after)} if exc.retry_after else None
        return error_answer(exc.status, exc.kind, str(exc), headers)
    except InvalidUserId as exc:
        return error_answer(400, "invalid_request_error", f"Invalid user id: {exc}")
    except StoreError as exc:
        log.warning("notices unavailable: %s", exc.__class__.__name__)
        return error_answer(503, "safeguards_unavailable", "Safeguards are temporarily unavailable. Retry shortly.",
                      {"retry-after": "1"})  # fmt: skip

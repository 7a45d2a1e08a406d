"""An app's ``identify`` that raises its framework's HTTP exception (``HTTPException(401)``):
the client gets that status, in Anthropic's error shape, and the refusal is audited.

The exception is the app's own answer (a missing or expired token), not a bug: it is not
turned into a 500. Its ``detail`` is shown when it is short, one-line text (the app wrote
it for the client); anything else gets the status's standard wording.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..engine.safeguards import Safeguards
    from ..outcome import Decision

__all__ = ["aidentify_refusal", "identify_error_shape", "identify_refusal", "kind_for_status"]

_KINDS = {
    400: "invalid_request_error",
    401: "authentication_required",
    403: "permission_error",
    408: "request_timeout",
    413: "request_too_large",
    429: "rate_limited",
    503: "safeguards_unavailable",
}
_WORDING = {
    "authentication_required": "Authentication is required.",
    "permission_error": "The caller may not use this service.",
    "rate_limited": "Too many requests.",
    "request_timeout": "The request took too long.",
    "request_too_large": "The request is too large.",
    "safeguards_unavailable": "The service is temporarily unavailable.",
}
_PLAIN = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


def kind_for_status(status: int) -> str:
    """The error kind (one of ``ERROR_STATUS``) recorded for an HTTP status an app raised."""
    return _KINDS.get(status, "invalid_request_error" if status < 500 else "safeguards_unavailable")


def identify_error_shape(status: object, detail: object) -> tuple[int, str, str, str]:
    """(status, kind recorded, kind shown, message). A status outside 400-599 (a 2xx or 3xx
    raised from identify is no refusal a client could act on) answers 500."""
    code = status if isinstance(status, int) and 400 <= status <= 599 else 500
    kind = kind_for_status(code)
    shown = kind if code < 500 or code == 503 else "api_error"
    message = detail if isinstance(detail, str) and _PLAIN.fullmatch(detail) else _WORDING.get(kind, "Refused.")
    return code, kind, shown, message


def identify_refusal(guard: Safeguards, surface: str, status: object, detail: object) -> Decision:
    """Record the refusal and return it with the app's status."""
    code, kind, shown, message = identify_error_shape(status, detail)
    decision = guard.refusal(None, surface, kind, message, reasons=(f"identify_http:{code}",))
    return decision._replace(status=code, error=shown)


async def aidentify_refusal(guard: Safeguards, surface: str, status: object, detail: object) -> Decision:
    code, kind, shown, message = identify_error_shape(status, detail)
    decision = await guard.arefusal(None, surface, kind, message, reasons=(f"identify_http:{code}",))
    return decision._replace(status=code, error=shown)

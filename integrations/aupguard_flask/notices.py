"""The notices route of :class:`~aupguard_flask.FlaskSafeguards` (``notices_route``): the
identified user's own standing as JSON, and their appeals. Never guarded itself: a
suspended user can still read why and appeal."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from aupguard.adapters.identity import BadIdentity
from aupguard.adapters.notices import (
    MAX_BODY,
    answer_notices,
    error_answer,
    identify_http_answer,
    notices_paths,
    too_large,
)

__all__ = ["add_notices_routes"]

log = logging.getLogger("aupguard.flask")
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]  # every one answered in Anthropic's error shape


def add_notices_routes(app: Flask, route: str) -> None:
    notices, appeals = notices_paths(route)
    app.add_url_rule(notices, endpoint="aupguard_notices", view_func=_notices, methods=_METHODS)
    app.add_url_rule(appeals, endpoint="aupguard_appeals", view_func=_appeals, methods=_METHODS)


def _notices() -> Response:
    return _serve(appeals=False)


def _appeals() -> Response:
    return _serve(appeals=True)


_notices.__aupguard__ = None  # type: ignore[attr-defined]  # exempt from the guard
_appeals.__aupguard__ = None  # type: ignore[attr-defined]


def _serve(*, appeals: bool) -> Response:
    from .extension import _identify

    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    state = app.extensions["aupguard"]
    try:
        user = _identify(app, request, state.options)
    except BadIdentity as exc:
        answer = error_answer(400, "invalid_request_error", str(exc))
    except HTTPException as exc:  # the app's own answer (abort(401)): its status, as on a guarded route
        answer = identify_http_answer(exc.code, exc.description, dict(exc.get_headers()))
    except Exception as exc:  # the app's identify failed: its bug, logged without its message
        log.error("identify failed on the notices route: %s", exc.__class__.__name__)
        answer = error_answer(500, "api_error", "The service failed to identify the caller.")
    else:
        body = b""
        if appeals and request.method == "POST" and user is not None:
            request.max_content_length = MAX_BODY
            try:
                body = request.get_data()
            except RequestEntityTooLarge:
                body = None  # type: ignore[assignment]
        answer = too_large() if body is None else answer_notices(state.guard, user, request.method, appeals, body)
    return Response(answer.body, status=answer.status, headers=answer.headers)

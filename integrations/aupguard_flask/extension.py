"""``FlaskSafeguards``: the guarded call for Flask views, as a Flask extension.

``init_app`` registers one ``before_request`` hook (identify, capped body, prompt, engine)
and one ``after_request`` hook (``RateLimit-*`` and ``Aupguard-*`` headers) per app; the
extension object holds no app, so one extension serves several apps and the factory
pattern. Each option is read as: constructor argument, else ``app.config["AUPGUARD_<NAME>"]``,
else the default. Refusals are werkzeug ``HTTPException``s in Anthropic's error shape, so
``@app.errorhandler(429)`` works.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask, Request, Response, current_app, g, has_app_context, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, default_exceptions

from aupguard import Decision, Policy, PromptRequest, Safeguards
from aupguard.adapters.body import BODY_METHODS, declares_body, is_preflight, refuse_form, too_large_message
from aupguard.adapters.client_keys import client_key_of
from aupguard.adapters.identify_errors import identify_refusal
from aupguard.adapters.identity import BadIdentity, identify_failed, user_from_header
from aupguard.adapters.lifecycle import GuardedContext
from aupguard.adapters.routes import RouteSet, route_set
from aupguard.adapters.surfaces import surface_name
from aupguard.engine.context import Guarded, register_lookup
from aupguard.engine.request_body import BadBody, parse_json, prompt_from_body
from aupguard.policy.config import LimitsPolicy

__all__ = ["FlaskSafeguards", "SafeguardsRefusal"]

log = logging.getLogger("aupguard.flask")

F = TypeVar("F", bound=Callable[..., Any])
Identify = Callable[[], "str | None"]
ExtractPrompt = Callable[[dict[str, Any]], "PromptRequest | str | None"]
_MARK = "__aupguard__"


class SafeguardsRefusal(HTTPException):
    """A refused guarded call: status, Anthropic's error body, the rate-limit headers.
    Raised as a subclass with the status as its ``code`` (Flask picks an
    ``@app.errorhandler(429)`` by the class's code): use :meth:`of`."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        self.extra: dict[str, str] = {}  # an identify exception's own headers (WWW-Authenticate)
        super().__init__(description=decision.message)

    @staticmethod
    def of(decision: Decision) -> SafeguardsRefusal:
        cls = _BY_STATUS.get(decision.status)
        if cls is None:
            # also a werkzeug TooManyRequests, Forbidden, ...: errorhandler(429) matches by that class
            base = default_exceptions.get(decision.status, HTTPException)
            cls = _BY_STATUS[decision.status] = type(
                f"SafeguardsRefusal{decision.status}", (SafeguardsRefusal, base), {"code": decision.status}
            )
        return cls(decision)

    def get_response(self, environ: Any = None, scope: Any = None) -> Response:
        body = json.dumps(self.decision.error_body())
        response = Response(body, status=self.decision.status, mimetype="application/json")
        response.headers.update(self.extra)
        response.headers.update(self.decision.headers(_limits()))
        return response


_BY_STATUS: dict[int, type[SafeguardsRefusal]] = {}


@dataclass(frozen=True, slots=True)
class Options:
    """The extension's options for one app (or one view, with its overrides)."""

    identify: Identify | None = None
    user_header: str | None = None
    routes: tuple[str, ...] | None = None  # paths or "prefix*"; None: every view
    extract_prompt: ExtractPrompt = prompt_from_body
    max_body_bytes: int = 1_000_000
    notices_route: str | None = None  # GET: the user's own standing; POST <route>/appeals: an appeal
    anonymous_key: Callable[[], str | None] | None = None  # default: the client address
    enforcement: str | None = None  # "monitor" / "enforce": overrides [enforcement] mode
    surface: str | None = None  # per view: the name in the audit log (default: the URL rule)


_DEFAULTS = Options()
_OPTION_NAMES = (
    "identify",
    "user_header",
    "routes",
    "extract_prompt",
    "max_body_bytes",
    "anonymous_key",
    "enforcement",
    "notices_route",
)


@dataclass(slots=True)
class _AppState:
    guard: Safeguards
    options: Options
    by_endpoint: dict[str | None, Options | object | None] = field(default_factory=dict)
    routes: RouteSet = field(default_factory=lambda: RouteSet(()))

    def __post_init__(self) -> None:
        self.routes = RouteSet(self.options.routes or ())

    def surface_of(self, req: Request) -> str:
        """The audit log's name for the view: its URL rule (the path without one)."""
        return surface_name(req.url_rule.rule if req.url_rule is not None else req.path)


class FlaskSafeguards:
    """``ext = FlaskSafeguards(app=None, safeguards=None, **options)``; ``ext.init_app(app)``.

    Options (each also ``app.config["AUPGUARD_<NAME>"]``): ``identify`` (a no-argument
    callable reading ``flask.request``; default: Flask-Login's ``current_user`` when
    installed), ``user_header`` (a trusted header; never by default), ``routes`` (paths or
    ``"prefix*"`` to guard; default: every view), ``extract_prompt``, ``max_body_bytes``,
    ``notices_route`` (a path where the identified user reads their own standing, GET, and
    appeals, POST ``<route>/appeals``; unset: not served).
    ``enforcement`` (``"monitor"`` or ``"enforce"``, overriding ``[enforcement] mode`` for
    the app or, through ``guard()``, one view), ``anonymous_key`` (a no-argument callable:
    what an anonymous caller is rate-limited by
    when ``[identity] require_account = false``; default: ``request.remote_addr``).
    Without ``safeguards``, the engine is built from ``AUPGUARD_POLICY`` (a TOML path or a
    mapping of tables) and ``AUPGUARD_STORE``.
    """

    def __init__(self, app: Flask | None = None, safeguards: Safeguards | None = None, **options: Any) -> None:
        unknown = set(options) - set(_OPTION_NAMES)
        if unknown:
            raise TypeError(f"unknown FlaskSafeguards option {sorted(unknown)[0]!r}; known: {', '.join(_OPTION_NAMES)}")
        self._safeguards = safeguards
        self._options = options
        if app is not None:
            self.init_app(app)

    # -- setup -------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        if "aupguard" in app.extensions:
            raise RuntimeError("FlaskSafeguards is already registered on this app")
        values = {}
        for name in _OPTION_NAMES:
            if name in self._options:
                values[name] = self._options[name]
            elif f"AUPGUARD_{name.upper()}" in app.config:
                values[name] = app.config[f"AUPGUARD_{name.upper()}"]
        _check_options(values)
        if "routes" in values and values["routes"] is not None:
            values["routes"] = tuple(values["routes"])
        app.extensions["aupguard"] = _AppState(
            self._safeguards or _engine_from_config(app), replace(_DEFAULTS, **values)
        )
        register_lookup(_guarded_from_flask)
        app.before_request(_before_request)
        app.after_request(_after_request)
        app.teardown_request(_teardown_request)
        route = app.extensions["aupguard"].options.notices_route
        if route is not None:
            from .notices import add_notices_routes

            add_notices_routes(app, route)

    @staticmethod
    def safeguards(app: Flask | None = None) -> Safeguards:
        """The engine of ``app`` (default: the current app)."""
        state: _AppState = (app or current_app).extensions["aupguard"]
        return state.guard

    # -- per view ----------------------------------------------------------------------

    def guard(self, **overrides: Any) -> Callable[[F], F]:
        """Guard this view, with per-view option overrides (``surface``, ``identify``,
        ``extract_prompt``, ``max_body_bytes``, ``user_header``). Guards it even when
        ``routes`` would not."""
        unknown = set(overrides) - {*_OPTION_NAMES, "surface"} - {"routes"}
        if unknown or "routes" in overrides or "notices_route" in overrides:
            per_view = (n for n in _OPTION_NAMES if n not in ("routes", "notices_route"))
            raise TypeError(f"guard() takes {', '.join(per_view)}, surface")

        def mark(view: F) -> F:
            setattr(view, _MARK, overrides)
            return view

        return mark

    def exempt(self, view: F) -> F:
        """Never guard this view."""
        setattr(view, _MARK, None)
        return view


def _check_options(values: Mapping[str, Any]) -> None:
    """Options from app.config are checked here, with errors that name the key."""
    route_set(values.get("routes"), "AUPGUARD_ROUTES / routes")
    size = values.get("max_body_bytes", 1)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise TypeError(f"AUPGUARD_MAX_BODY_BYTES / max_body_bytes must be a positive integer, got {size!r}")
    for name in ("identify", "extract_prompt", "anonymous_key"):
        if values.get(name) is not None and not callable(values[name]):
            raise TypeError(f"AUPGUARD_{name.upper()} / {name} must be callable")
    notices = values.get("notices_route")
    if notices is not None:
        from aupguard.adapters.notices import notices_paths

        notices_paths(notices)  # a ValueError naming the option
    if values.get("enforcement") not in (None, "enforce", "monitor"):
        raise TypeError("AUPGUARD_ENFORCEMENT / enforcement must be 'enforce' or 'monitor'")
    header = values.get("user_header")
    if header is not None and not isinstance(header, str):
        raise TypeError("AUPGUARD_USER_HEADER / user_header must be a header name")


def _engine_from_config(app: Flask) -> Safeguards:
    source = app.config.get("AUPGUARD_POLICY")
    if isinstance(source, Mapping):
        policy = Policy.from_mapping(source)
    elif isinstance(source, str | Path):
        policy = Policy.from_toml(source)
    else:
        policy = Policy.from_mapping({})
    return Safeguards(policy, store=app.config.get("AUPGUARD_STORE"))


_BY_PATH = object()  # an endpoint guarded or not by its path (``routes`` with prefixes)


def _endpoint_options(app: Flask, state: _AppState, endpoint: str | None) -> Options | object | None:
    """What an endpoint's view asks for, decided once per endpoint: its options, None (not
    guarded), or ``_BY_PATH`` when ``routes`` decides per path."""
    view = app.view_functions.get(endpoint) if endpoint else None
    marked: dict[str, Any] | bool | None = getattr(view, _MARK, False) if view is not None else False
    if marked is None:  # exempt
        return None
    if isinstance(marked, dict):  # @ext.guard(...), with its overrides
        return replace(state.options, **marked) if marked else state.options
    if endpoint is None or endpoint.rsplit(".", 1)[-1] == "static":
        return None
    return state.options if state.options.routes is None else _BY_PATH


def _view_options(app: Flask, state: _AppState, req: Request) -> Options | None:
    """The options for this request's view, or None when it is not guarded."""
    endpoint = req.endpoint
    found = state.by_endpoint.get(endpoint, _UNKNOWN)
    if found is _UNKNOWN:
        found = _endpoint_options(app, state, endpoint)
        if len(state.by_endpoint) < 4096:
            state.by_endpoint[endpoint] = found
    if found is not _BY_PATH:
        return found  # type: ignore[return-value]
    # req.path is relative to the app's mount point (SCRIPT_NAME), as Flask's routing sees it
    return state.options if state.routes.matches(req.path) else None


_UNKNOWN = object()


def _identify(app: Flask, req: Request, options: Options) -> str | None:
    if options.identify is not None:
        return options.identify()
    if getattr(app, "login_manager", None) is not None:  # Flask-Login is set up on this app
        from flask_login import current_user  # type: ignore[import-untyped, import-not-found, unused-ignore]

        if getattr(current_user, "is_authenticated", False):
            return str(current_user.get_id())
    if options.user_header:
        value: str | None = req.environ.get(_environ_key(options.user_header))
        return None if value is None else user_from_header(value)  # WSGI servers join a repeated header with ","
    return None


def _environ_key(header: str) -> str:
    """The WSGI environ key of a request header (what werkzeug's ``request.headers`` reads)."""
    key = _ENVIRON_KEYS.get(header)
    if key is None:
        name = header.upper().replace("-", "_")
        key = _ENVIRON_KEYS[header] = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"
    return key


_ENVIRON_KEYS: dict[str, str] = {}


def _before_request() -> None:
    req: Request = request._get_current_object()  # type: ignore[attr-defined]  # one lookup, not one per use
    if is_preflight(req.method, "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in req.environ, _declares_body(req)):
        return  # a CORS preflight: no prompt, no credentials
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    state: _AppState = app.extensions["aupguard"]
    options = _view_options(app, state, req)
    if options is None:
        return
    guard = state.guard
    surface = options.surface or state.surface_of(req)
    try:
        user = _identify(app, req, options)
    except BadIdentity as exc:
        raise SafeguardsRefusal.of(guard.refusal(None, surface, "invalid_request_error", str(exc))) from None
    except HTTPException as exc:  # the app's own answer (abort(401)): its status, not a 500
        refused = SafeguardsRefusal.of(identify_refusal(guard, surface, exc.code, exc.description))
        refused.extra = {k: v for k, v in exc.get_headers() if k.lower() not in ("content-type", "content-length")}
        raise refused from None
    except Exception as exc:  # the app's identify failed: its bug, logged without its message
        raise SafeguardsRefusal.of(identify_failed(log, surface, exc)) from None
    prompt: PromptRequest | str | None = None
    parsed: dict[str, Any] | None = None
    if req.method in BODY_METHODS or _declares_body(req):  # a GET with a body is screened too
        cap = options.max_body_bytes
        length = req.content_length
        if length is None or length > cap:  # the app's own MAX_CONTENT_LENGTH still applies
            app_limit = req.max_content_length
            req.max_content_length = min(cap, app_limit or cap)
        try:
            body = req.get_data(cache=True)
            if length is None:  # chunked: werkzeug stops at the cap and raises on the next read
                req.stream.read(1)
            if not body and req.method not in BODY_METHODS:  # a GET with no body after all: no prompt
                raise _NoBody
            refuse_form(req.mimetype)  # a body valid as JSON and as a form would reach request.form unscreened
            parsed = parse_json(body)
            prompt = options.extract_prompt(parsed)
        except RequestEntityTooLarge:
            message = too_large_message(cap)
            raise SafeguardsRefusal.of(guard.refusal(user, surface, "request_too_large", message)) from None
        except BadBody as exc:
            raise SafeguardsRefusal.of(guard.refusal(user, surface, exc.kind, str(exc))) from None
        except _NoBody:
            pass
    key = None
    if user is None:
        key = options.anonymous_key() if options.anonymous_key is not None else client_key_of(req.remote_addr)
    decision = guard.check(user, surface=surface, prompt=prompt, client_key=key, enforcement=options.enforcement)
    if not decision.allowed:
        raise SafeguardsRefusal.of(decision)
    cleaned = decision.body
    if cleaned is not None and cleaned is not parsed:  # the view reads what was screened, cleaned
        _replace_body(req, json.dumps(cleaned, ensure_ascii=False).encode("utf-8"))
    app_globals = g._get_current_object()
    app_globals.aupguard_decision = decision
    context = GuardedContext(user, decision)  # also seen inside a nested app context
    app_globals.aupguard_guarded, app_globals.aupguard_context = context.guarded, context


class _NoBody(Exception):
    """The request carried no body after all (a GET): checked without a prompt."""


def _declares_body(req: Request) -> bool:
    """Whether the request may carry a body: a non-zero length, chunked, or an input the
    server says is terminated (werkzeug then reads it, with no length declared)."""
    environ = req.environ
    chunked = "HTTP_TRANSFER_ENCODING" in environ or bool(environ.get("wsgi.input_terminated"))
    return declares_body(environ.get("CONTENT_LENGTH"), chunked)


def _replace_body(req: Request, body: bytes) -> None:
    """Make ``request.data``, ``get_data()`` and ``get_json()`` give ``body``: werkzeug reads
    them all from the cached data (read above with ``cache=True``); the JSON cache is reset."""
    req._cached_data = body
    req._cached_json = (Ellipsis, Ellipsis)
    req.environ["CONTENT_LENGTH"] = str(len(body))


def _guarded_from_flask() -> Guarded | None:
    """The guarded request from ``flask.g``: it outlives our context variable when a
    ``stream_with_context`` response streams after the view returned."""
    from flask import has_app_context

    return g.get("aupguard_guarded") if has_app_context() else None


def _limits() -> LimitsPolicy | None:
    """The ``[limits]`` of the app's engine (the headers' window and ``legacy_headers``)."""
    state = current_app.extensions.get("aupguard") if has_app_context() else None
    return state.guard.policy.limits if state is not None else None


def _after_request(response: Response) -> Response:
    app_globals = g._get_current_object()
    decision: Decision | None = app_globals.get("aupguard_decision")
    if decision is not None:
        add = response.headers.add
        for name, value in decision.headers(_limits()).items():
            add(name, value)
        if response.is_streamed:  # a stream_with_context body runs in this context again, later
            app_globals.aupguard_streaming = True
    return response


def _teardown_request(exc: BaseException | None) -> None:
    """The request is over: its decision leaves ``flask.g`` (which Flask reuses for the next
    request when an app context is pushed around several) and the context variable is reset.
    Flask tears a ``stream_with_context`` response down twice, when the view returns and when
    the body has streamed: the decision stays in ``g`` until the second."""
    app_globals = g._get_current_object()
    context: GuardedContext | None = app_globals.get("aupguard_context")
    if context is None:
        return
    context.release()
    if app_globals.pop("aupguard_streaming", False):
        return
    app_globals.pop("aupguard_decision", None)
    app_globals.pop("aupguard_guarded", None)
    app_globals.pop("aupguard_context", None)
    context.end()  # copies of the context (threads the view started) stop using it

"""The name a guarded route has in the audit log and metrics (its *surface*).

The adapter passes the route as its router knows it (ASGI: the path within the app, slashes
squashed; Flask: the view's URL rule, or the path when there is none). What reaches the log
is cut to 200 characters, valid UTF-8 and free of control characters, so a hostile path can
neither forge log lines nor grow a record. Names are cached (bounded: a client sending
endless distinct paths fills the cache once, then names are computed again).
"""

from __future__ import annotations

import re

__all__ = ["MAX_SURFACE", "surface_name"]

MAX_SURFACE = 200
_CACHE_LIMIT = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAMES: dict[str, str] = {}


def surface_name(route: str) -> str:
    """The audit log's name for ``route`` (``/`` when nothing printable is left)."""
    name = _NAMES.get(route)
    if name is None:
        cut = route[:MAX_SURFACE].encode("utf-8", "replace").decode("utf-8")
        name = _CONTROL.sub("", cut) or "/"
        if len(_NAMES) < _CACHE_LIMIT:
            _NAMES[route] = name
    return name

"""Which request paths are guarded: the ``routes`` option of every adapter (no framework here).

A path is matched as the app's router sees it: relative to the app's mount point (for ASGI,
the path minus ``root_path``, as Starlette's routing computes it; for WSGI, ``PATH_INFO``),
so a guarded app mounted under a prefix, or served behind ``--root-path``, stays guarded.
Matching errs towards guarding: repeated slashes, a trailing slash and letter case are
ignored, so ``/v1/chat`` also guards ``/v1/chat/``, ``//v1//chat`` and ``/V1/Chat`` (a
router, or a proxy in front of it, may treat them as the same route), and a path holding a
control character (``/v1/chat%0A``) is guarded whatever ``routes`` says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["RouteSet", "route_path", "route_set", "squashed"]

_SLASHES = re.compile(r"/{2,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def route_path(path: str, root_path: str) -> str:
    """The path within the app mounted at ``root_path`` (Starlette's ``get_route_path``): an
    ASGI server or a ``Mount`` puts the prefix in both ``path`` and ``root_path``."""
    if not root_path or not path.startswith(root_path):
        return path
    if len(path) == len(root_path):
        return "/"
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


def squashed(path: str) -> str:
    """``path`` with repeated slashes collapsed and without a trailing slash (``/`` stays)."""
    if "//" in path:
        path = _SLASHES.sub("/", path)
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path or "/"


class RouteSet:
    """Exact paths and ``"prefix*"`` patterns, matched as the module docstring says."""

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, routes: Iterable[str]) -> None:
        listed = list(routes)
        self._exact = frozenset(squashed(r).lower() for r in listed if not r.endswith("*"))
        # a prefix is matched against the squashed path plus "/", so "/v1/*" guards "/v1/" too
        self._prefixes = tuple(_SLASHES.sub("/", r[:-1]).lower() for r in listed if r.endswith("*"))

    def matches(self, path: str) -> bool:
        """Whether ``path`` (relative to the app's mount point) is guarded. A path with a
        control character in it is always guarded: routers do not agree on them (Starlette's
        ``$`` matches before a trailing newline, so ``/v1/chat%0A`` reaches the ``/v1/chat``
        handler), and no route of an app needs one."""
        if _CONTROL.search(path) is not None:
            return True
        path = squashed(path).lower()
        return path in self._exact or (path + "/").startswith(self._prefixes)


def route_set(routes: Iterable[str] | None, option: str = "routes") -> RouteSet | None:
    """The adapter's ``routes`` option: None guards every route; otherwise paths and
    ``"prefix*"`` patterns. One string is refused (it is iterable: ``"/v1/chat"`` would be
    the routes ``/``, ``v``, ``1``, ...), and so is anything but strings in the list."""
    if routes is None:
        return None
    listed = None if isinstance(routes, str | bytes) else list(routes)
    if listed is None or not all(isinstance(route, str) for route in listed):
        raise TypeError(f"{option} takes a list of paths, not one string")
    return RouteSet(listed)

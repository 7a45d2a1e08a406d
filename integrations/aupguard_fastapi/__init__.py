"""aupguard for FastAPI apps that authenticate in dependencies: ``guard_dependency``.

``Depends(guard_dependency(guard, user=Depends(get_current_user)))`` runs the guarded call
after the app's own auth; :func:`install` renders refusals in Anthropic's error shape and
adds the rate-limit headers to every answer; :func:`unguarded_routes` lists the routes under
a prefix that no guard protects (a route that forgets the dependency is not guarded).
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("aupguard_fastapi needs FastAPI: pip install 'aupguard[fastapi]'") from exc

from .dependency import SafeguardsRefusal, guard_dependency
from .routes import assert_guarded, install, unguarded_routes

__all__ = ["SafeguardsRefusal", "assert_guarded", "guard_dependency", "install", "unguarded_routes"]

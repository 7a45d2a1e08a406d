"""aupguard for ASGI apps (Starlette, FastAPI, any ASGI app): ``SafeguardsMiddleware``."""

from __future__ import annotations

try:
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("aupguard_asgi needs Starlette: pip install 'aupguard[asgi]'") from exc

from .metrics import metrics_app
from .middleware import SafeguardsMiddleware, route_path

__all__ = ["SafeguardsMiddleware", "metrics_app", "route_path"]

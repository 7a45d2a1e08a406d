"""aupguard for Flask: the ``FlaskSafeguards`` extension."""

from __future__ import annotations

try:
    import flask  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("aupguard_flask needs Flask: pip install 'aupguard[flask]'") from exc

from .extension import FlaskSafeguards, SafeguardsRefusal
from .metrics import metrics_view

__all__ = ["FlaskSafeguards", "SafeguardsRefusal", "metrics_view"]

"""The Prometheus endpoint for Flask: ``app.add_url_rule("/metrics", view_func=metrics_view(guard))``."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response

from aupguard import Safeguards
from aupguard.metrics import CONTENT_TYPE

__all__ = ["metrics_view"]


def metrics_view(guard: Safeguards) -> Callable[[], Response]:
    """A view answering with the engine's metrics. Exempt it from guarding (it is not a
    Claude call) and expose it only to your scraper."""

    def aupguard_metrics() -> Response:
        return Response(guard.metrics.render(), content_type=CONTENT_TYPE)

    return aupguard_metrics

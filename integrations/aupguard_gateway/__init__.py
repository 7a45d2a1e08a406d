"""``aupguard gateway``: the Messages API with every safeguard, for apps that cannot change.

Point the official SDK at it: ``anthropic.Anthropic(api_key=<gateway key>, base_url=<gateway>)``.
"""

try:
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("aupguard_gateway needs Starlette: pip install 'aupguard[gateway]'") from exc

from .app import build_gateway, gateway_key
from .forward import Upstream

__all__ = ["Upstream", "build_gateway", "gateway_key"]

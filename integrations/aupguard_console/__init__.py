"""The aupguard review console: a Starlette app to mount in any ASGI app.

    from aupguard_console import review_console
    app.mount("/aupguard", review_console(guard))

Needs the ``console`` extra (``pip install 'aupguard[console]'``).
"""

from __future__ import annotations

import importlib.util

_missing = [m for m in ("starlette", "jinja2", "multipart") if importlib.util.find_spec(m) is None]
if _missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"aupguard_console needs the 'console' extra: pip install 'aupguard[console]' (missing: {_missing[0]})"
    )

from .app import PUBLIC_PATHS, review_console  # noqa: E402 - after the check that names the extra
from .web import SECURITY_HEADERS  # noqa: E402

__all__ = ["PUBLIC_PATHS", "SECURITY_HEADERS", "review_console"]

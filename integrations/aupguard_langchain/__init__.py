"""aupguard for LangChain: ``SafeguardsCallbackHandler`` and its async twin."""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("aupguard_langchain needs LangChain: pip install 'aupguard[langchain]'") from exc

from .callback import (
    AsyncSafeguardsCallbackHandler,
    SafeguardsCallbackHandler,
    SyncRunNotGuarded,
    instrument_chat_model,
)

__all__ = ["AsyncSafeguardsCallbackHandler", "SafeguardsCallbackHandler", "SyncRunNotGuarded", "instrument_chat_model"]

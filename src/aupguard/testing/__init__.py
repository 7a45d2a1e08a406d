"""A test kit for apps guarded by aupguard (as Starlette ships ``starlette.testclient``).

- :class:`MessagesDouble`: a local double of Anthropic's Messages API (JSON and SSE, the
  ``request-id`` header, Anthropic's error shape) plus OpenAI-shaped ``/v1/moderations`` and
  ``/v1/chat/completions``, served from a thread on 127.0.0.1 so the real ``anthropic`` SDK
  and ``httpx`` run exactly as in production. Script it with :class:`Reply` and
  :func:`verdict_reply`; read what it received in :attr:`MessagesDouble.requests`.
- :func:`safeguards_for_tests` and :class:`Clock`: an engine with memory records and counters
  and a clock the test moves.
- :func:`free_port` and :func:`wait_port`: for tests that start servers of their own.

Nothing here is imported by ``import aupguard``; it needs no test framework.
"""

from __future__ import annotations

from .double import MessagesDouble
from .engines import Clock, safeguards_for_tests
from .network import free_port, wait_port
from .scripting import (
    CHAT_PATH,
    COUNT_TOKENS_PATH,
    MESSAGES_PATH,
    MODERATIONS_PATH,
    RecordedRequest,
    Reply,
    Script,
    chat_reply,
    verdict_reply,
)

__all__ = [
    "CHAT_PATH",
    "COUNT_TOKENS_PATH",
    "MESSAGES_PATH",
    "MODERATIONS_PATH",
    "Clock",
    "MessagesDouble",
    "RecordedRequest",
    "Reply",
    "Script",
    "chat_reply",
    "free_port",
    "safeguards_for_tests",
    "verdict_reply",
    "wait_port",
]

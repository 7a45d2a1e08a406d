"""``aupguard gateway --workers N``: N uvicorn worker processes on one socket, sharing their
state through a PostgreSQL store and Redis counters.

Each worker builds its own engine and gateway from the settings the command passed it in
the environment (``AUPGUARD_GATEWAY_WORKER``: the policy file, the store URI, the upstream;
never a key). Several workers need shared state: with a SQLite file or ``memory://``
counters each worker would count its own rate limits and strikes (N times the limit), so
:func:`check_shared` refuses them before any worker starts.

Shutdown (SIGINT / SIGTERM to the main process) and reload (SIGHUP: uvicorn replaces the
workers one by one, each new one serving before the old one stops) stop a worker the same
way: it stops accepting, finishes the requests it has, then writes every queued audit record
(the lifespan shutdown) and closes its engine, so no record is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette

from aupguard import Policy, Safeguards
from aupguard.errors import ConfigurationError

from .app import build_gateway

__all__ = ["WORKER_ENV", "check_shared", "worker_app", "worker_settings"]

WORKER_ENV = "AUPGUARD_GATEWAY_WORKER"
_SHARED = "several gateway workers share their state through a PostgreSQL store and Redis counters"


def check_shared(store: str, counters: str) -> None:
    """Refuse what several workers cannot share (the message names the fix)."""
    if not store.startswith(("postgresql://", "postgres://")):
        raise ConfigurationError(
            f"{_SHARED}: [storage] store (or --store) is {store.split(':', 1)[0]}:, not postgresql:// "
            "(each worker would keep its own records and standing)"
        )
    if not counters.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            f"{_SHARED}: [storage] counters is {counters.split(':', 1)[0]}:, not redis:// "
            "(each worker would count its own limits: N times the limit)"
        )


def worker_settings(policy: str | None, store: str | None, upstream: str | None) -> str:
    """What a worker needs to build the same gateway: the value of ``WORKER_ENV``."""
    return json.dumps({"policy": policy, "store": store, "upstream": upstream})


def worker_app() -> Starlette:
    """The app of one worker (uvicorn calls it, as a factory, in the worker's process)."""
    settings: dict[str, Any] = json.loads(os.environ[WORKER_ENV])
    policy = Policy.from_toml(settings["policy"]) if settings["policy"] else Policy.from_mapping({})
    guard = Safeguards(policy, store=settings["store"])
    app = build_gateway(guard, upstream=settings["upstream"])
    gateway_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            async with gateway_lifespan(app):
                yield
        finally:  # after the last request and the audit flush: the engine's threads and store
            await asyncio.to_thread(guard.close)

    app.router.lifespan_context = lifespan
    return app

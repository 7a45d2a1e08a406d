"""``guard.call`` / ``guard.acall``: one guarded call around the app's own call to Claude,
with the verdict of a parallel moderation awaited before the answer is given back."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from .screening import Refused

if TYPE_CHECKING:
    from ..prompts import PromptRequest, ResolvedPrompt
    from .host import Guard

__all__ = ["aguarded_call", "guarded_call"]

T = TypeVar("T")


async def aguarded_call(
    guard: Guard,
    user_id: str | None,
    prompt: str | PromptRequest,
    call: Callable[[ResolvedPrompt], Awaitable[T]],
    surface: str,
) -> T:
    """Guard one call: check, screen the prompt (before, or in parallel with ``call``,
    whose result is held until the verdict and discarded on a flag), run ``call``.
    Raises :class:`Refused` with the decision when the call may not proceed."""
    decision = await guard.acheck(user_id, surface=surface, prompt=prompt, defer_moderation=True)
    if not decision.allowed or decision.prompt is None:
        raise Refused(decision)
    if not decision.moderation_pending:
        return await call(decision.prompt)
    task = asyncio.ensure_future(call(decision.prompt))
    try:
        screened = await guard.ascreen(decision)
        if not screened.allowed:
            raise Refused(screened)
        return await task
    finally:  # a flag, an error or the caller's cancellation: the upstream call stops too
        if not task.done():
            task.cancel()


def guarded_call(
    guard: Guard,
    user_id: str | None,
    prompt: str | PromptRequest,
    call: Callable[[ResolvedPrompt], T],
    surface: str,
) -> T:
    """``acall`` for sync code; in parallel mode ``call`` runs in a worker thread while
    this thread moderates."""
    decision = guard.check(user_id, surface=surface, prompt=prompt, defer_moderation=True)
    if not decision.allowed or decision.prompt is None:
        raise Refused(decision)
    if not decision.moderation_pending:
        return call(decision.prompt)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="aupguard-call")
    try:
        future = pool.submit(call, decision.prompt)
        screened = guard.screen(decision)
        if not screened.allowed:  # the answer, when it comes, is discarded
            raise Refused(screened)
        return future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)

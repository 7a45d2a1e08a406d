"""Driving a generator of steps: what the pipeline's and the answer recorder's sync and async
drivers share, so each driver is only its own kind of I/O."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

__all__ = ["advance", "attempt"]

Y = TypeVar("Y")
R = TypeVar("R")


def advance(steps: Generator[Y, Any, R], result: Any = None, failure: BaseException | None = None) -> Y | R:
    """Send ``result`` (or throw ``failure``) into ``steps``: its next step, or what it returned."""
    try:
        return steps.throw(failure) if failure is not None else steps.send(result)
    except StopIteration as done:
        returned: R = done.value
        return returned


def attempt(call: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, Exception | None]:
    """``call(*args)`` as (result, None), or (None, the exception) for the step to judge."""
    try:
        return call(*args), None
    except Exception as exc:  # the step that asked decides what a failure means
        return None, exc

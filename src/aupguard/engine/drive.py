"""Driving a generator of steps: what the pipeline's async driver and the answer recorder's two
drivers share, so each driver is only its own kind of I/O (the pipeline's sync driver, the hot
path, loops inline)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

__all__ = ["advance"]

Y = TypeVar("Y")
R = TypeVar("R")


def advance(steps: Generator[Y, Any, R], result: Any = None, failure: BaseException | None = None) -> Y | R:
    """Send ``result`` (or throw ``failure``) into ``steps``: its next step, or what it returned."""
    try:
        return steps.throw(failure) if failure is not None else steps.send(result)
    except StopIteration as done:
        returned: R = done.value
        return returned

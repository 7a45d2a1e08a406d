"""Typed delegation from the :class:`~aupguard.engine.safeguards.Safeguards` facade to the part
that owns a method: ``strike = delegate("users", UserActions.strike)`` makes ``guard.strike``
the users part's own bound method, with its signature and docstring for type checkers and
``help()``, and no extra call on the way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

__all__ = ["delegate"]

P = ParamSpec("P")
R = TypeVar("R")


class _Delegated(Generic[P, R]):
    def __init__(self, part: str, method: Callable[Concatenate[Any, P], R]) -> None:
        self.part = part
        self.name = method.__name__
        self.__doc__ = method.__doc__
        self.__wrapped__ = method

    @overload
    def __get__(self, obj: None, owner: type) -> _Delegated[P, R]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> Callable[P, R]: ...
    def __get__(self, obj: object | None, owner: type) -> _Delegated[P, R] | Callable[P, R]:
        if obj is None:
            return self
        bound: Callable[P, R] = getattr(getattr(obj, self.part), self.name)
        return bound


def delegate(part: str, method: Callable[Concatenate[Any, P], R]) -> _Delegated[P, R]:
    """``method`` of the part held in attribute ``part``, exposed on the facade."""
    return _Delegated(part, method)

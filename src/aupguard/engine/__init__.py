"""The engine: ``Safeguards`` (a facade over its parts), the guarded call's steps and their
sync and async drivers, standing, user actions, screening, answers, instrumentation."""

__all__: list[str] = []

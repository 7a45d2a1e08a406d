"""Prompts and completions captured for the operator's own evaluation, encrypted per user."""

__all__: list[str] = []

"""The embedded SQLite store (``sqlite:///path``, the default) and its schema."""

__all__: list[str] = []

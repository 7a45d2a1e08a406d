"""The SQL of each family of tables (capture, gateway keys, review), shared by every SQL store."""

__all__: list[str] = []

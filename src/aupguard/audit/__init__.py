"""The audit log: the writer (bounded queue, group commit), its operations, the spill file."""

__all__: list[str] = []

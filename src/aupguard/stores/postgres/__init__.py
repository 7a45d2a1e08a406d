"""The PostgreSQL store (``postgresql://...``) and its schema."""

__all__: list[str] = []

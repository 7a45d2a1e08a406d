"""What every adapter (ASGI, Flask, the gateway) shares: route matching, body reading, refusals."""

__all__: list[str] = []

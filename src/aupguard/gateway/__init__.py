"""The gateway's core: per-user gateway keys (the web app lives in ``aupguard_gateway``)."""

from .keys import GatewayKeys, IssuedKey, KeyInfo

__all__ = ["GatewayKeys", "IssuedKey", "KeyInfo"]

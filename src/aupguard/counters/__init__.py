"""Rate-limit counters by URI (``memory://``, ``redis://`` ...), through ``limits``."""

from .base import Counters, Hit
from .registry import counters_from_uri, register

__all__ = ["Counters", "Hit", "counters_from_uri", "register"]

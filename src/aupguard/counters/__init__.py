"""Rate-limit counters by URI (``memory://``, ``redis://`` ...), through ``limits``."""

from .base import Counters, Hit, counters_from_uri

__all__ = ["Counters", "Hit", "counters_from_uri"]

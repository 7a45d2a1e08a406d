"""Store URIs as they may be shown: without a password."""

from __future__ import annotations

import re

__all__ = ["redact_uri"]


def redact_uri(uri: str) -> str:
    """The URI without its password, for messages, logs and ``doctor``."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", uri)

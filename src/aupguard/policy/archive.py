"""Where the capture archive goes: ``s3://bucket/prefix`` and an optional endpoint URL.

A leaf module (no I/O, no boto3): the policy validates ``[capture] archive`` and
``archive_endpoint_url`` at load (the URL with :func:`~aupguard.policy.values.http_url`), and the
CLI its ``--to`` and ``--endpoint-url`` the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ENDPOINT_HELP", "S3_URL_HELP", "ArchiveTarget", "parse_s3_url", "s3_url"]

# S3's rules for bucket names: 3-63 of lowercase letters, digits, dots and hyphens, a letter or digit at each end
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX = re.compile(r"[A-Za-z0-9!_.*'()/=-]*")

S3_URL_HELP = "an s3://bucket/prefix URL (bucket: 3-63 lowercase letters, digits, '.', '-'; prefix: optional)"
ENDPOINT_HELP = "an http:// or https:// URL of an S3-compatible server (credentials come from the environment)"


@dataclass(frozen=True, slots=True)
class ArchiveTarget:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)


def s3_url(value: object) -> str:
    """``s3://bucket/prefix`` normalised (no trailing slash); ValueError otherwise."""
    return parse_s3_url(value).url


def parse_s3_url(value: object) -> ArchiveTarget:
    if not isinstance(value, str) or not value.startswith("s3://"):
        raise ValueError("not an s3:// URL")
    bucket, _, prefix = value[len("s3://") :].partition("/")
    prefix = prefix.strip("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"{bucket!r} is not a valid bucket name")
    if not _PREFIX.fullmatch(prefix) or "//" in prefix or any(p in (".", "..") for p in prefix.split("/")):
        raise ValueError("the prefix takes letters, digits and !_.*'()/=- (no empty, '.' or '..' segments)")
    return ArchiveTarget(bucket, prefix)

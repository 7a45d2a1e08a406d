"""The archive's object store: an S3 bucket through boto3 (extra ``aupguard[s3]``).

Credentials come only from boto3's standard chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, instance roles, ...); they are never read, logged
or printed here. Every failure becomes an :class:`~aupguard.errors.ArchiveError` whose message
is written here (the bucket, the endpoint, the S3 error code), never a traceback.
"""

from __future__ import annotations

from typing import Any

from ..errors import ArchiveError, ConfigurationError
from ..policy.archive import ArchiveTarget

__all__ = ["S3Objects"]

_MISSING_BUCKET = {"NoSuchBucket", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}


class S3Objects:
    """Objects in one bucket, with timeouts and few retries (a run is repeated by cron anyway)."""

    def __init__(self, target: ArchiveTarget, *, endpoint_url: str | None = None) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ConfigurationError("the capture archive needs boto3: pip install 'aupguard[s3]'") from None
        self.target = target
        self.where = f"at {endpoint_url}" if endpoint_url else "on AWS S3"
        config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
        self._client: Any = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)

    def check(self) -> None:
        """Fail early, with a clear message, on a bucket that is not there or not ours."""
        self._call(lambda: self._client.head_bucket(Bucket=self.target.bucket), "open")

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        bucket = self.target.bucket
        self._call(
            lambda: self._client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type), f"write {key}"
        )

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            response = self._client.get_object(Bucket=self.target.bucket, Key=key)
            body: bytes = response["Body"].read()
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._error(exc, f"read {key}") from None
        except Exception as exc:  # translated below, or re-raised
            raise self._error(exc, f"read {key}") from None
        return body

    def _call(self, fn: Any, what: str) -> None:
        try:
            fn()
        except Exception as exc:  # translated below, or re-raised
            raise self._error(exc, what) from None

    def _error(self, exc: Exception, what: str) -> Exception:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        bucket = f"bucket {self.target.bucket!r} {self.where}"
        if isinstance(exc, NoCredentialsError):
            return ArchiveError(
                "no credentials for the object store: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or AWS_PROFILE) in the environment"
            )
        if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionError):
            return ArchiveError(f"cannot reach the object store {self.where} to {what} (retry later)", transient=True)
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in _MISSING_BUCKET:
                return ArchiveError(f"{bucket} does not exist (create it, or check --to / [capture] archive)")
            if code in _DENIED:
                return ArchiveError(f"{bucket}: access denied ({code}); check the credentials in the environment")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            transient = isinstance(status, int) and status >= 500
            return ArchiveError(f"{bucket}: cannot {what} ({code or status})", transient=transient)
        if isinstance(exc, BotoCoreError):
            return ArchiveError(f"{bucket}: cannot {what} ({exc.__class__.__name__})", transient=True)
        return exc


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))

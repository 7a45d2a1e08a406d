"""A real S3-compatible server on 127.0.0.1 for the capture archive: moto's standalone server
(``moto[server]``), started once per test module on a free port and stopped at the end.
Each test gets a bucket of its own and throwaway credentials in the environment."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from aupguard.testing import free_port, wait_port

SECRET = "test-secret-key-that-must-never-be-printed"


@dataclass
class S3:
    url: str  # the endpoint
    bucket: str
    client: Any  # a boto3 S3 client, to look at what the archive wrote

    def names(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.bucket)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3:
    import boto3

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.session.Session().client("s3", endpoint_url=s3_endpoint)
    bucket = f"archive-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3(s3_endpoint, bucket, client)

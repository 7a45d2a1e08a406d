"""Shared fixtures: a key ring, a controllable clock and a factory of engines on a
temporary SQLite file (closed at teardown, so every audit record is written)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from aupguard import Keyring, Policy, Safeguards, generate_key_entry
from aupguard.testing import Clock
from tests.support.fixtures import messages_double  # noqa: F401 - the Messages-API double, for every test
from tests.support.s3_server import s3, s3_endpoint  # noqa: F401 - a real S3-compatible server (moto)
from tests.support.servers import own_postgres, own_redis, pg_url, redis_url  # noqa: F401 - real servers

DAY = 86_400.0

# A test that asks for one of these fixtures needs the service: it gets the marker, so
# `pytest -m "not redis and not postgres and not browser"` runs where those servers are not installed.
SERVICE_FIXTURES = {
    "redis": {"redis_url", "own_redis"},
    "postgres": {"pg_url", "own_postgres"},
    "browser": {"browser"},  # the Playwright browser fixture of the console's browser tests
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in SERVICE_FIXTURES.items():
            if used & fixtures:
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def _no_policy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without AUPGUARD_* overrides from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("AUPGUARD_"):
            monkeypatch.delenv(name)


@pytest.fixture
def key_entry() -> str:
    return generate_key_entry("t1")


@pytest.fixture
def keyring(key_entry: str) -> Keyring:
    return Keyring.parse(key_entry, source="test")


@pytest.fixture
def clock() -> Clock:
    return Clock()


MakeGuard = Callable[..., Safeguards]


@pytest.fixture
def make_guard(tmp_path: Path, keyring: Keyring) -> Iterator[MakeGuard]:
    made: list[Safeguards] = []

    def make(
        policy: Mapping[str, Any] | None = None,
        *,
        store: str | None = None,
        clock: Callable[[], float] | None = None,
        ring: Keyring | None = None,
        moderators: Sequence[Any] | None = None,
    ) -> Safeguards:
        kwargs: dict[str, Any] = {"store": store or f"sqlite:///{tmp_path / 'aupguard.db'}", "keyring": ring or keyring}
        if clock is not None:
            kwargs["clock"] = clock
        if moderators is not None:
            kwargs["moderators"] = moderators
        tables = dict(policy or {})  # spilled audit records stay in the test's own folder
        tables["storage"] = {"spill": str(tmp_path / "spill"), **tables.get("storage", {})}
        guard = Safeguards(Policy.from_mapping(tables, env={}), **kwargs)
        made.append(guard)
        return guard

    yield make
    for guard in made:
        guard.close()

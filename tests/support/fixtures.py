"""Pytest fixtures for the fakes. ``tests/conftest.py`` imports them, so every test module
can ask for ``messages_double`` by name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aupguard.testing import MessagesDouble


@pytest.fixture
def messages_double() -> Iterator[MessagesDouble]:
    """A fresh double per test (it starts in about a millisecond), so scripts and records
    never leak between tests."""
    double = MessagesDouble().start()
    try:
        yield double
    finally:
        double.stop()

"""The audit log's name for a route (``aupguard.adapters.surfaces``): a hostile path can
neither forge a log line, nor grow a record, nor break the encoding."""

from __future__ import annotations

import pytest

from aupguard.adapters import surfaces
from aupguard.adapters.surfaces import MAX_SURFACE, surface_name


@pytest.mark.parametrize(
    ("route", "name"),
    [
        ("/v1/chat", "/v1/chat"),
        ("/v1/chat\n200 OK fake line", "/v1/chat200 OK fake line"),
        ("/v1/\x00\x1b[31mred\x7f", "/v1/[31mred"),
        ("\n\r\t", "/"),
        ("", "/"),
        ("/v1/\udcff", "/v1/?"),  # a lone surrogate (a path decoded with surrogateescape)
        ("/<int:user_id>/chat", "/<int:user_id>/chat"),  # a Flask rule names the id, not its value
    ],
)
def test_a_route_is_named_without_control_characters(route: str, name: str) -> None:
    assert surface_name(route) == name


def test_a_long_route_is_cut() -> None:
    assert surface_name("/" + "a" * 5000) == "/" + "a" * (MAX_SURFACE - 1)


def test_endless_distinct_paths_fill_the_cache_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(surfaces, "_NAMES", {})
    for n in range(surfaces._CACHE_LIMIT + 500):
        assert surface_name(f"/p/{n}\n") == f"/p/{n}"
    assert len(surfaces._NAMES) == surfaces._CACHE_LIMIT

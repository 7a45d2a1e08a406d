"""The ``routes`` option as every adapter reads it, with hostile paths: odd slashes, case,
control characters, mounts and prefixes (``aupguard.adapters.routes``)."""

from __future__ import annotations

import pytest

from aupguard.adapters.routes import route_path, route_set


def test_no_routes_guards_every_route_and_one_string_is_refused() -> None:
    assert route_set(None) is None
    for bad in ("/v1/chat", b"/v1/chat", ["/v1/chat", 7]):
        with pytest.raises(TypeError, match="not one string"):
            route_set(bad)  # type: ignore[arg-type]
    routes = route_set(path for path in ["/v1/chat"])  # a generator is read once, not consumed by the check
    assert routes is not None and routes.matches("/v1/chat")


@pytest.mark.parametrize(
    "path",
    ["/v1/chat", "/v1/chat/", "//v1//chat", "/V1/CHAT", "/v1/chat\n", "/x\x00", "/v1/files/a", "/v1/files/"],
)
def test_odd_spellings_of_a_guarded_path_are_guarded(path: str) -> None:
    routes = route_set(["/v1/chat", "/v1/files/*"])
    assert routes is not None and routes.matches(path)


@pytest.mark.parametrize("path", ["/v1/chatter", "/v1/cha", "/v1/file", "/", "/v2/chat", "/v1/filesx"])
def test_neighbours_of_a_guarded_path_are_not(path: str) -> None:
    routes = route_set(["/v1/chat", "/v1/files/*"])
    assert routes is not None and not routes.matches(path)


@pytest.mark.parametrize(
    ("path", "root", "within"),
    [
        ("/api/v1/chat", "/api", "/v1/chat"),
        ("/api", "/api", "/"),
        ("/apiv1/chat", "/api", "/apiv1/chat"),  # a prefix of the name is not the mount point
        ("/v1/chat", "/api", "/v1/chat"),  # a server that strips the prefix itself
        ("/v1/chat", "", "/v1/chat"),
    ],
)
def test_the_path_within_the_mount_is_matched(path: str, root: str, within: str) -> None:
    assert route_path(path, root) == within

"""``aupguard.testing``. The Messages-API double answers the way the real SDK expects: JSON with the
``request-id`` header, SSE that the SDK's ``messages.stream`` helpers consume (sync and
async), Anthropic's error shape, and an error event mid-stream (other tests rely on these); the engine factory keeps to
memory and the test's own policy and clock; nothing of the kit loads with ``import aupguard``."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from pathlib import Path

import anthropic
import pytest

from aupguard.moderation.claude import DEFAULT_MODEL
from aupguard.testing import Clock, MessagesDouble, Reply, free_port, safeguards_for_tests, wait_port


def test_double_streams_with_the_sdk_helper(messages_double: MessagesDouble) -> None:
    messages_double.messages.text("Hello from the double, in pieces.", chunk_delay=0.01)
    with (
        messages_double.client() as client,
        client.messages.stream(
            model=DEFAULT_MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.request_id
        assert stream.response.headers["content-type"].startswith("text/event-stream")
    assert len(pieces) > 1 and "".join(pieces) == "Hello from the double, in pieces."
    assert final.id.startswith("msg_") and final.stop_reason == "end_turn" and final.model == DEFAULT_MODEL
    [request] = messages_double.requests
    assert request_id == request.request_id and request_id.startswith("req_")
    assert request.body["stream"] is True


def test_double_streams_to_the_async_sdk(messages_double: MessagesDouble) -> None:
    async def run() -> str:
        async with (
            messages_double.async_client() as client,
            client.messages.stream(
                model=DEFAULT_MODEL, max_tokens=50, messages=[{"role": "user", "content": "x"}]
            ) as s,
        ):
            return "".join([text async for text in s.text_stream])

    assert asyncio.run(run()) == "echo: x"


def test_double_json_answer_carries_the_request_id(messages_double: MessagesDouble) -> None:
    with messages_double.client() as client:
        raw = client.messages.with_raw_response.create(
            model=DEFAULT_MODEL, max_tokens=10, messages=[{"role": "user", "content": "hello"}]
        )
        message = raw.parse()
    [request] = messages_double.requests
    assert raw.headers["request-id"] == message._request_id == request.request_id
    assert message.content[0].type == "text" and message.content[0].text == "echo: hello"


def test_double_errors_have_anthropics_shape(messages_double: MessagesDouble) -> None:
    messages_double.messages.error(529, message="busy")
    with messages_double.client() as client, pytest.raises(anthropic.OverloadedError) as info:
        client.messages.create(model=DEFAULT_MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 529 and info.value.type == "overloaded_error"
    assert info.value.request_id == messages_double.requests[0].request_id


def test_double_can_fail_a_stream_midway(messages_double: MessagesDouble) -> None:
    messages_double.messages.push(Reply(text="partial answer", stream_error="overloaded_error"))
    seen: list[str] = []
    with (
        messages_double.client() as client,
        client.messages.stream(model=DEFAULT_MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}]) as s,
        pytest.raises(anthropic.APIStatusError),
    ):
        seen.extend(s.text_stream)
    assert "".join(seen) == "partial answer"


# -- the rest of the kit users' tests need ----------------------------------------------------


def test_importing_aupguard_loads_no_part_of_the_test_kit() -> None:
    """An app that ships aupguard does not pay for (or expose) the test kit at import."""
    code = "import sys, aupguard; print(sorted(m for m in sys.modules if m.startswith('aupguard.testing')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_safeguards_for_tests_keeps_everything_in_memory_and_ignores_the_shell(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUPGUARD_LIMITS__DEFAULT", "1/minute")  # a developer's shell must not change a test
    with safeguards_for_tests({"limits": {"default": "2/minute"}}) as guard:
        assert [guard.check("u-1").status for _ in range(3)] == [200, 200, 429]
        assert guard.store.uri == "memory://"
    assert list(tmp_path.iterdir()) == []  # no database or spill folder left in the working directory


def test_safeguards_for_tests_walks_the_ladder_on_the_tests_clock() -> None:
    clock = Clock()
    policy = {"ladder": {"window": "1d", "warn": 1, "throttle": 2, "suspend": 3, "suspend_for": "1h"}}
    with safeguards_for_tests(policy, clock=clock) as guard:
        for n in range(3):
            guard.strike("u-1", reason=f"strike {n}")
        assert guard.check("u-1").error == "user_suspended"
        clock.advance(2 * 86_400)  # the suspension ran out and the strikes decayed
        assert guard.check("u-1").allowed


def test_each_engine_for_tests_hashes_with_a_key_of_its_own() -> None:
    with safeguards_for_tests() as first, safeguards_for_tests() as second:
        assert first.hasher.hash("u-1") != second.hasher.hash("u-1")


def test_wait_port_returns_once_a_server_listens_and_fails_on_a_closed_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        wait_port(server.getsockname()[1], timeout=1)
    closed = free_port()
    with pytest.raises(RuntimeError, match=f"127.0.0.1:{closed}"):
        wait_port(closed, timeout=0.2)


def test_the_examples_of_the_testing_page_pass() -> None:
    """docs/testing.md stays true: each of its examples that defines a test is run here."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "testing.md").read_text()
    blocks = [block for block in re.findall(r"```python\n(.*?)```", page, re.S) if "def test_" in block]
    assert len(blocks) == 2
    for block in blocks:
        scope: dict[str, object] = {}
        exec(compile(block, "docs/testing.md", "exec"), scope)  # noqa: S102 - our own documentation
        tests = [fn for name, fn in scope.items() if name.startswith("test_") and callable(fn)]
        assert len(tests) == 1
        tests[0]()

"""The guarded request's context (``aupguard.adapters.lifecycle``): entered once the call is
allowed, reset when the request is over, and no longer seen by copies the app took."""

from __future__ import annotations

import contextvars

from aupguard.adapters.lifecycle import GuardedContext
from aupguard.engine.context import current_guarded
from aupguard.outcome import Decision


def _decision() -> Decision:
    return Decision("01900000-0000-7000-8000-000000000001", True, 200)


def test_the_context_is_seen_while_the_request_runs_and_gone_after() -> None:
    assert current_guarded() is None
    context = GuardedContext("u-1", _decision())
    assert current_guarded() is context.guarded
    assert context.guarded.user_id == "u-1"
    context.end()
    assert current_guarded() is None
    assert context.guarded.ended


def test_a_copy_the_app_took_stops_acting_for_the_user_once_the_request_ends() -> None:
    context = GuardedContext("u-1", _decision())
    copy = contextvars.copy_context()  # a thread or task the app started
    assert copy.run(current_guarded) is context.guarded
    context.end()
    assert copy.run(current_guarded) is None  # it still holds the value, but the request is over


def test_release_resets_once_and_leaves_the_request_running() -> None:
    """Flask resets at teardown but ends a streamed request only after its body streamed."""
    context = GuardedContext("u-1", _decision())
    context.release()
    context.release()  # a second teardown: no error, nothing reset twice
    assert current_guarded() is None and not context.guarded.ended
    context.end()
    assert context.guarded.ended

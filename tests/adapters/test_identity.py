"""The trusted ``user_header`` and the failed ``identify`` as every adapter answers them
(``aupguard.adapters.identity``): one id or a 400, never a guess; a 500 that logs no secret."""

from __future__ import annotations

import logging

import pytest

from aupguard.adapters.identity import BadIdentity, identify_failed, user_from_header


@pytest.mark.parametrize(("value", "user"), [(b"u-42", "u-42"), ("u-42", "u-42"), (b"", None), ("", None),
                                             ("müller".encode(), "müller")])  # fmt: skip
def test_a_header_names_one_user_or_none(value: str | bytes, user: str | None) -> None:
    assert user_from_header(value) == user


@pytest.mark.parametrize("value", [b"u-1,u-2", "attacker, u-42", b",", b"\xff\xfeu", b"u\xc3"])
def test_a_header_that_cannot_be_one_id_is_refused(value: str | bytes) -> None:
    with pytest.raises(BadIdentity):
        user_from_header(value)


def test_a_failed_identify_is_a_500_that_logs_only_the_class(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("aupguard.test")
    with caplog.at_level(logging.ERROR, logger="aupguard.test"):
        decision = identify_failed(log, "/v1/chat", ValueError("token sk-secret for raw-user-7"))
    assert (decision.allowed, decision.status, decision.error) == (False, 500, "api_error")
    assert decision.error_body()["error"]["type"] == "api_error"
    assert "ValueError" in caplog.text and "/v1/chat" in caplog.text
    assert "sk-secret" not in caplog.text and "raw-user-7" not in caplog.text

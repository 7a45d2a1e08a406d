"""``[notify]`` keeps its secrets: a webhook URL (for Slack / Discord / Teams the URL *is* the
secret) is never printed in a policy error, whether refused for a query string or repeated; and
``verify``, the helper receivers are told to use, answers False for any malformed header (a
non-ASCII signature used to raise TypeError: a 500 in the receiver). Found by an attacker's
review."""

from __future__ import annotations

import time

import pytest

from aupguard import Policy
from aupguard.errors import PolicyError
from aupguard.review.notify import verify

SECRET_TOKEN = "XXSECRETTOKENXXqv9ZlN"
SLACK = f"https://hooks.slack.com/services/T0/B0/{SECRET_TOKEN}"
SIGNING = "s" * 32


@pytest.mark.parametrize(
    "hooks",
    [
        [
            {"url": SLACK, "events": ["item_flagged"], "secret": SIGNING},
            {"url": SLACK, "events": ["user_suspended"], "secret": SIGNING},
        ],  # the same URL twice
        [
            {
                "url": f"https://hooks.example.com/notify?token={SECRET_TOKEN}",
                "events": ["item_flagged"],
                "secret": SIGNING,
            }
        ],  # a token in the query
    ],
    ids=["duplicate", "query"],
)
def test_a_refused_webhook_url_is_not_printed(hooks: list[dict[str, object]]) -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.from_mapping({"notify": {"webhooks": hooks}})
    assert SECRET_TOKEN not in str(caught.value), str(caught.value)


def test_verify_rejects_a_non_ascii_signature_without_raising() -> None:
    header = f"t={int(time.time())},v1=\u00e9"  # a header as a WSGI/ASGI server decodes it (latin-1)
    assert verify(SIGNING, b"{}", header) is False


def test_verify_accepts_any_of_several_signatures_while_a_secret_rotates() -> None:
    from aupguard.review.notify import sign, verify

    body, now = b'{"event": "user_suspended"}', 1_900_000_000
    new = sign("new-secret", body, now).partition("v1=")[2]
    old = sign("old-secret", body, now).partition("v1=")[2]
    assert verify("new-secret", body, f"t={now},v1={old},v1={new}", now=now)
    assert not verify("new-secret", body, f"t={now},v1={old}", now=now)
    assert not verify("new-secret", body, f"t={now},t={now},v1={new}", now=now)  # one timestamp only

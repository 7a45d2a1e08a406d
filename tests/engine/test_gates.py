"""How a decision is rendered (headers, Anthropic-shaped error body) and the pure gates."""

from __future__ import annotations

import datetime as dt

import pytest

from aupguard.counters.base import Hit
from aupguard.engine.gates import account_gate, standing_gate, throttle_gate, warning_for
from aupguard.ladder import Level, UserStatus
from aupguard.outcome import ERROR_STATUS, Decision, error_body
from aupguard.policy.config import IdentityPolicy, LadderPolicy, Policy, TermsPolicy

REQUEST_ID = "01900000-0000-7000-8000-000000000001"
USER = "k1_" + "cd" * 32
NOW = 1_800_000_000.0
TERMS = TermsPolicy(version="2026-01", url="https://example.com/usage-policy")


def status(level: Level, strikes: int = 0, until: float | None = None, terms: str | None = None) -> UserStatus:
    return UserStatus(USER, level, strikes, until, None, terms)


# -- headers ---------------------------------------------------------------------------------


def test_headers_of_an_allowed_call_with_limits() -> None:
    decision = Decision(REQUEST_ID, True, limit=60, remaining=59, reset_after=12)
    assert decision.headers() == {
        "RateLimit-Policy": '"default";q=60',
        "RateLimit": '"default";r=59;t=12',
        "RateLimit-Limit": "60",
        "RateLimit-Remaining": "59",
        "RateLimit-Reset": "12",
        "Aupguard-Request-Id": REQUEST_ID,
    }


def test_headers_without_limits_carry_only_the_request_id() -> None:
    assert Decision(REQUEST_ID, True).headers() == {"Aupguard-Request-Id": REQUEST_ID}


def test_headers_of_a_rate_limited_call() -> None:
    decision = Decision(
        REQUEST_ID,
        False,
        status=429,
        error="rate_limited",
        message="slow down",
        limit=5,
        remaining=0,
        reset_after=30,
        retry_after=30,
    )
    assert decision.headers() == {
        "RateLimit-Policy": '"default";q=5',
        "RateLimit": '"default";r=0;t=30',
        "RateLimit-Limit": "5",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "30",
        "Retry-After": "30",
        "Aupguard-Request-Id": REQUEST_ID,
    }


def test_missing_remaining_and_reset_are_reported_as_zero() -> None:
    headers = Decision(REQUEST_ID, True, limit=5).headers()
    assert headers["RateLimit-Remaining"] == "0"
    assert headers["RateLimit-Reset"] == "0"


def test_retry_after_only_when_set() -> None:
    assert "Retry-After" not in Decision(REQUEST_ID, True, limit=5, remaining=4, reset_after=60).headers()
    refused = Decision(REQUEST_ID, False, status=403, error="user_suspended", message="no", retry_after=3600)
    assert refused.headers()["Retry-After"] == "3600"


def test_warning_header_when_warning() -> None:
    assert "Aupguard-Warning" not in Decision(REQUEST_ID, True).headers()
    headers = Decision(REQUEST_ID, True, warning="You have 1 strike.").headers()
    assert headers["Aupguard-Warning"] == "You have 1 strike."


def test_header_values_are_strings() -> None:
    decision = Decision(REQUEST_ID, False, 429, "rate_limited", "m", limit=5, remaining=0, reset_after=9, retry_after=9)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in decision.headers().items())


# -- error body ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(ERROR_STATUS))
def test_error_body_has_anthropics_shape(kind: str) -> None:
    decision = Decision(REQUEST_ID, False, status=ERROR_STATUS[kind], error=kind, message="Explained here.")
    assert decision.error_body() == {"type": "error", "error": {"type": kind, "message": "Explained here."}}


def test_module_error_body_has_anthropics_shape() -> None:
    assert error_body("invalid_request_error", "bad body") == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "bad body"},
    }


def test_allowed_decision_has_no_error_body() -> None:
    with pytest.raises(ValueError, match="allowed"):
        Decision(REQUEST_ID, True).error_body()


@pytest.mark.parametrize(
    ("kind", "status_code"),
    [
        ("invalid_request_error", 400),
        ("authentication_required", 401),
        ("terms_not_accepted", 403),
        ("user_suspended", 403),
        ("prompt_not_allowed", 403),
        ("content_flagged", 403),
        ("permission_error", 403),  # the gateway's operator controls
        ("request_timeout", 408),  # the gateway's body deadline
        ("request_too_large", 413),
        ("rate_limited", 429),
        ("safeguards_unavailable", 503),
    ],
)
def test_error_status_maps_the_designed_kinds(kind: str, status_code: int) -> None:
    assert ERROR_STATUS[kind] == status_code


def test_error_status_uses_only_the_designed_statuses() -> None:
    assert set(ERROR_STATUS.values()) == {400, 401, 403, 408, 413, 429, 503}


# -- account gate ----------------------------------------------------------------------------


def test_account_gate_refuses_anonymous_callers() -> None:
    refusal = account_gate(False, Policy())
    assert refusal is not None
    assert refusal.error == "authentication_required"
    assert ERROR_STATUS[refusal.error] == 401
    assert refusal.message
    assert refusal.retry_after is None


def test_account_gate_lets_identified_callers_through() -> None:
    assert account_gate(True, Policy()) is None


def test_account_gate_is_off_when_no_account_is_required() -> None:
    policy = Policy(identity=IdentityPolicy(require_account=False))
    assert account_gate(False, policy) is None
    assert account_gate(True, policy) is None


# -- standing gate ---------------------------------------------------------------------------


@pytest.mark.parametrize("accepted", [None, "2025-06"])
def test_terms_not_accepted(accepted: str | None) -> None:
    refusal = standing_gate(status(Level.OK, terms=accepted), Policy(terms=TERMS), NOW)
    assert refusal is not None
    assert refusal.error == "terms_not_accepted"
    assert "2026-01" in refusal.message
    assert "https://example.com/usage-policy" in refusal.message


def test_terms_message_without_url() -> None:
    refusal = standing_gate(status(Level.OK), Policy(terms=TermsPolicy("v3")), NOW)
    assert refusal is not None
    assert refusal.error == "terms_not_accepted"
    assert "v3" in refusal.message
    assert " at " not in refusal.message


def test_accepted_terms_pass() -> None:
    assert standing_gate(status(Level.WARNED, 1, terms="2026-01"), Policy(terms=TERMS), NOW) is None


def test_no_terms_policy_means_no_terms_gate() -> None:
    assert standing_gate(status(Level.OK), Policy(), NOW) is None


def test_terms_are_checked_before_suspension() -> None:
    refusal = standing_gate(status(Level.SUSPENDED, 5), Policy(terms=TERMS), NOW)
    assert refusal is not None
    assert refusal.error == "terms_not_accepted"


def test_indefinite_suspension() -> None:
    refusal = standing_gate(status(Level.SUSPENDED, 5), Policy(), NOW)
    assert refusal is not None
    assert refusal.error == "user_suspended"
    assert ERROR_STATUS[refusal.error] == 403
    assert refusal.retry_after is None


@pytest.mark.parametrize(
    ("remaining", "retry_after"),
    [(3600.0, 3600), (10.2, 11), (10.0, 10), (0.1, 1), (86400 * 7 - 0.5, 604800)],
)
def test_suspension_with_end_gives_retry_after_in_whole_seconds_rounded_up(remaining: float, retry_after: int) -> None:
    refusal = standing_gate(status(Level.SUSPENDED, 5, until=NOW + remaining), Policy(), NOW)
    assert refusal is not None
    assert refusal.error == "user_suspended"
    assert refusal.retry_after == retry_after


def test_suspension_message_names_the_end_in_utc() -> None:
    until = dt.datetime(2027, 3, 4, 5, 6, tzinfo=dt.UTC).timestamp()
    accepted = status(Level.SUSPENDED, 5, until=until, terms="2026-01")
    refusal = standing_gate(accepted, Policy(terms=TERMS), until - 60)
    assert refusal is not None
    assert refusal.error == "user_suspended"
    assert "2027-03-04 05:06 UTC" in refusal.message
    assert refusal.retry_after == 60


@pytest.mark.parametrize("level", [Level.OK, Level.WARNED, Level.THROTTLED])
def test_users_in_good_standing_pass(level: Level) -> None:
    assert standing_gate(status(level, 3), Policy(), NOW) is None


# -- throttle gate ---------------------------------------------------------------------------


def test_throttle_gate_allows_within_the_limit() -> None:
    assert throttle_gate(Hit(True, 60, 59, 60.0), Level.OK) is None
    assert throttle_gate(Hit(True, 5, 0, 60.0), Level.THROTTLED) is None


@pytest.mark.parametrize(("reset_after", "retry_after"), [(59.3, 60), (1.0, 1), (0.0, 1), (0.0001, 1)])
def test_throttle_gate_refuses_with_retry_after(reset_after: float, retry_after: int) -> None:
    refusal = throttle_gate(Hit(False, 60, 0, reset_after), Level.OK)
    assert refusal is not None
    assert refusal.error == "rate_limited"
    assert ERROR_STATUS[refusal.error] == 429
    assert refusal.retry_after == retry_after
    assert "60" in refusal.message
    assert "reduced" not in refusal.message


def test_throttle_gate_says_when_limits_are_reduced_after_violations() -> None:
    refusal = throttle_gate(Hit(False, 5, 0, 30.0), Level.THROTTLED)
    assert refusal is not None
    assert refusal.error == "rate_limited"
    assert "reduced" in refusal.message
    assert "5" in refusal.message


@pytest.mark.parametrize("level", [None, Level.OK, Level.WARNED])
def test_throttle_gate_base_tier_message(level: Level | None) -> None:
    refusal = throttle_gate(Hit(False, 60, 0, 30.0), level)
    assert refusal is not None
    assert "reduced" not in refusal.message


# -- warnings --------------------------------------------------------------------------------


@pytest.mark.parametrize("user", [None, status(Level.OK), status(Level.SUSPENDED, 5)])
def test_no_warning_for_users_without_strikes_or_suspended(user: UserStatus | None) -> None:
    assert warning_for(user, Policy()) is None


def test_warning_for_a_warned_user_mentions_the_strikes() -> None:
    warning = warning_for(status(Level.WARNED, 2), Policy())
    assert warning is not None
    assert "2 strike" in warning


@pytest.mark.parametrize(("strikes", "more"), [(3, 2), (4, 1), (5, 0), (7, 0)])
def test_warning_for_a_throttled_user_counts_down_to_suspension(strikes: int, more: int) -> None:
    warning = warning_for(status(Level.THROTTLED, strikes), Policy())
    assert warning is not None
    assert f"{strikes} usage policy strike" in warning
    assert f"{more} more" in warning


def test_warning_uses_the_policy_suspend_threshold() -> None:
    policy = Policy(ladder=LadderPolicy(warn=1, throttle=2, suspend=10))
    warning = warning_for(status(Level.THROTTLED, 2), policy)
    assert warning is not None
    assert "8 more" in warning


def test_warning_is_a_valid_header_value() -> None:
    for user in (status(Level.WARNED, 1), status(Level.THROTTLED, 3)):
        warning = warning_for(user, Policy())
        assert warning is not None
        assert warning.isascii()
        assert "\n" not in warning
        assert "\r" not in warning

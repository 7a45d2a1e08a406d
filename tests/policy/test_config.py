"""The policy: defaults, loading from TOML / a mapping / the environment, and validation."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from aupguard.durations import parse_duration
from aupguard.errors import PolicyError
from aupguard.policy import config as policy_module
from aupguard.policy.config import (
    IdentityPolicy,
    LadderPolicy,
    LimitsPolicy,
    Policy,
    StoragePolicy,
    TermsPolicy,
)

DAY = 86400.0

FULL_TOML = """\
[identity]
require_account = false
hash_key_env = "MY_APP_HASH_KEY"
hash_key_file = "/etc/myapp/hash.keys"

[terms]
version = "2026-01"
url = "https://example.com/usage-policy"

[ladder]
window = "14d"
warn = 2
throttle = 4
suspend = 6
suspend_for = "7d"

[limits]
default = "1000 per hour"
throttled = "10/minute"
strategy = "fixed-window"

[storage]
store = "sqlite:////var/lib/myapp/aupguard.db"
counters = "memory://"
sync_interval = "500ms"
audit_queue = 500
"""

FULL_POLICY = Policy(
    identity=IdentityPolicy(
        require_account=False,
        hash_key_env="MY_APP_HASH_KEY",
        hash_key_file="/etc/myapp/hash.keys",
    ),
    terms=TermsPolicy(version="2026-01", url="https://example.com/usage-policy"),
    ladder=LadderPolicy(window=14 * DAY, warn=2, throttle=4, suspend=6, suspend_for=7 * DAY),
    limits=LimitsPolicy(default="1000 per hour", throttled="10/minute", strategy="fixed-window"),
    storage=StoragePolicy(
        store="sqlite:////var/lib/myapp/aupguard.db",
        counters="memory://",
        sync_interval=0.5,
        audit_queue=500,
    ),
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aupguard.toml"
    path.write_text(text, encoding="utf-8")
    return path


def policy_error(data: dict[str, Any], env: dict[str, str] | None = None) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        Policy.from_mapping(data, env={} if env is None else env)
    return info.value


# -- defaults ----------------------------------------------------------------------------


def test_defaults() -> None:
    policy = Policy()
    assert policy.identity == IdentityPolicy(require_account=True, hash_key_env="AUPGUARD_HASH_KEY", hash_key_file=None)
    assert policy.terms is None
    assert policy.ladder == LadderPolicy(window=30 * DAY, warn=1, throttle=3, suspend=5, suspend_for=None)
    assert policy.limits == LimitsPolicy(default="60/minute", throttled="5/minute", strategy="moving-window")
    assert policy.storage == StoragePolicy(
        store="sqlite:///aupguard.db", counters="memory://", sync_interval=0.25, audit_queue=10_000
    )


def test_empty_mapping_and_empty_file_give_the_defaults(tmp_path: Path) -> None:
    assert Policy.from_mapping({}, env={}) == Policy()
    assert Policy.from_toml(write(tmp_path, ""), env={}) == Policy()


# -- loading -----------------------------------------------------------------------------


def test_from_toml_reads_every_table(tmp_path: Path) -> None:
    assert Policy.from_toml(write(tmp_path, FULL_TOML), env={}) == FULL_POLICY


def test_from_toml_accepts_a_str_path(tmp_path: Path) -> None:
    assert Policy.from_toml(str(write(tmp_path, FULL_TOML)), env={}) == FULL_POLICY


def test_from_mapping_reads_the_same_tables_as_toml() -> None:
    assert Policy.from_mapping(tomllib.loads(FULL_TOML), env={}) == FULL_POLICY


def test_partial_tables_keep_the_other_defaults() -> None:
    policy = Policy.from_mapping({"ladder": {"warn": 2}, "limits": {"default": "30/minute"}}, env={})
    assert policy.ladder == LadderPolicy(warn=2)
    assert policy.limits == LimitsPolicy(default="30/minute")
    assert policy.identity == IdentityPolicy()
    assert policy.storage == StoragePolicy()


def test_absent_suspend_for_means_until_reinstated() -> None:
    policy = Policy.from_mapping({"ladder": {"window": "30d", "warn": 1, "throttle": 3, "suspend": 5}}, env={})
    assert policy.ladder.suspend_for is None


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("7d", 7 * DAY), ("12h", 12 * 3600.0), ("2w", 14 * DAY), (3600, 3600.0), (1.5, 1.5)],
)
def test_suspend_for_durations(raw: object, seconds: float) -> None:
    assert Policy.from_mapping({"ladder": {"suspend_for": raw}}, env={}).ladder.suspend_for == seconds


@pytest.mark.parametrize(("raw", "seconds"), [("30d", 30 * DAY), ("15m", 900.0), (86400, 86400.0)])
def test_window_durations(raw: object, seconds: float) -> None:
    assert Policy.from_mapping({"ladder": {"window": raw}}, env={}).ladder.window == seconds


def test_sync_interval_in_milliseconds() -> None:
    assert Policy.from_mapping({"storage": {"sync_interval": "100ms"}}, env={}).storage.sync_interval == 0.1


def test_terms_url_is_optional() -> None:
    assert Policy.from_mapping({"terms": {"version": "v3"}}, env={}).terms == TermsPolicy(version="v3", url="")


def test_empty_hash_key_file_means_none() -> None:
    assert Policy.from_mapping({"identity": {"hash_key_file": ""}}, env={}).identity.hash_key_file is None


@pytest.mark.parametrize("strategy", ["moving-window", "fixed-window", "sliding-window-counter"])
def test_every_strategy_is_accepted(strategy: str) -> None:
    assert Policy.from_mapping({"limits": {"strategy": strategy}}, env={}).limits.strategy == strategy


def test_equal_thresholds_are_allowed() -> None:
    ladder = Policy.from_mapping({"ladder": {"warn": 2, "throttle": 2, "suspend": 2}}, env={}).ladder
    assert (ladder.warn, ladder.throttle, ladder.suspend) == (2, 2, 2)


# -- environment overrides -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "section", "key", "expected"),
    [
        ("AUPGUARD_IDENTITY__REQUIRE_ACCOUNT", "false", "identity", "require_account", False),
        ("AUPGUARD_IDENTITY__HASH_KEY_ENV", "OTHER_KEY", "identity", "hash_key_env", "OTHER_KEY"),
        ("AUPGUARD_IDENTITY__HASH_KEY_FILE", "/run/secrets/keys", "identity", "hash_key_file", "/run/secrets/keys"),
        ("AUPGUARD_LADDER__WARN", "2", "ladder", "warn", 2),
        ("AUPGUARD_LADDER__SUSPEND", "8", "ladder", "suspend", 8),
        ("AUPGUARD_LADDER__WINDOW", "10d", "ladder", "window", 10 * DAY),
        ("AUPGUARD_LADDER__WINDOW", "3600", "ladder", "window", 3600.0),
        ("AUPGUARD_LADDER__SUSPEND_FOR", "2d", "ladder", "suspend_for", 2 * DAY),
        ("AUPGUARD_LIMITS__DEFAULT", "10/minute", "limits", "default", "10/minute"),
        ("AUPGUARD_LIMITS__DEFAULT", "100 per hour", "limits", "default", "100 per hour"),
        ("AUPGUARD_LIMITS__THROTTLED", '"2/minute"', "limits", "throttled", "2/minute"),
        ("AUPGUARD_LIMITS__STRATEGY", "fixed-window", "limits", "strategy", "fixed-window"),
        ("AUPGUARD_STORAGE__STORE", "sqlite:///tmp/x.db", "storage", "store", "sqlite:///tmp/x.db"),
        ("AUPGUARD_STORAGE__AUDIT_QUEUE", "5", "storage", "audit_queue", 5),
        ("AUPGUARD_STORAGE__SYNC_INTERVAL", "1s", "storage", "sync_interval", 1.0),
    ],
)
def test_env_override_sets_the_key(name: str, raw: str, section: str, key: str, expected: object) -> None:
    policy = Policy.from_mapping({}, env={name: raw})
    assert getattr(getattr(policy, section), key) == expected


def test_env_override_beats_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_TOML)
    policy = Policy.from_toml(path, env={"AUPGUARD_LADDER__WARN": "3", "AUPGUARD_IDENTITY__REQUIRE_ACCOUNT": "true"})
    assert policy.ladder.warn == 3
    assert policy.identity.require_account is True
    assert policy.ladder.throttle == 4  # the other keys of the table stay as in the file


def test_env_override_can_create_the_terms_table() -> None:
    policy = Policy.from_mapping({}, env={"AUPGUARD_TERMS__VERSION": "v2", "AUPGUARD_TERMS__URL": "https://x.test/p"})
    assert policy.terms == TermsPolicy(version="v2", url="https://x.test/p")


@pytest.mark.parametrize("version", ["2026-01-15", "3", "1.0"])
def test_env_override_of_a_text_key_keeps_the_text(version: str) -> None:
    # A terms version is text; an env value that happens to look like a TOML date or number
    # (dates are the most common way to version a usage policy) must still be taken as text.
    policy = Policy.from_mapping({}, env={"AUPGUARD_TERMS__VERSION": version})
    assert policy.terms is not None
    assert policy.terms.version == version


def test_from_mapping_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUPGUARD_LADDER__WARN", "2")
    assert Policy.from_mapping({}).ladder.warn == 2


def test_from_toml_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUPGUARD_LIMITS__DEFAULT", "7/second")
    assert Policy.from_toml(write(tmp_path, FULL_TOML)).limits.default == "7/second"


def test_empty_env_disables_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUPGUARD_LADDER__WARN", "2")
    monkeypatch.setenv("AUPGUARD_LADDER__NOT_A_KEY", "1")  # would be an error if read
    assert Policy.from_mapping({}, env={}).ladder.warn == 1
    assert Policy.from_toml(write(tmp_path, FULL_TOML), env={}) == FULL_POLICY


@pytest.mark.parametrize(
    "name",
    ["AUPGUARD_HASH_KEY", "AUPGUARD_DEBUG", "OTHER_LADDER__WARN", "MYAPP_AUPGUARD_LADDER__WARN"],
)
def test_unrelated_env_variables_are_ignored(name: str) -> None:
    assert Policy.from_mapping({}, env={name: "whatever"}) == Policy()


@pytest.mark.parametrize(
    "name",
    ["AUPGUARD_LADDER__WARNING", "AUPGUARD_LADDERS__WARN", "AUPGUARD_LIMITS__", "AUPGUARD_NOPE__DEFAULT"],
)
def test_unknown_env_override_names_the_variable(name: str) -> None:
    error = policy_error({}, env={name: "2"})
    assert error.key == name
    assert name in str(error)
    assert "AUPGUARD_<TABLE>__<KEY>" in str(error)


def test_invalid_env_override_value_names_the_policy_key() -> None:
    error = policy_error({}, env={"AUPGUARD_LADDER__WARN": "0"})
    assert error.key == "ladder.warn"
    assert "an integer from 1 to 1000000" in str(error)


# -- invalid values ----------------------------------------------------------------------

DURATION = "a duration such as"
INTEGER = "an integer from 1 to 1000000"
RATE = "a rate such as"
STRATEGIES = "moving-window | fixed-window | sliding-window-counter"

INVALID = [
    # identity
    ("identity", "require_account", "yes", "true or false"),
    ("identity", "require_account", "true", "true or false"),
    ("identity", "require_account", 1, "true or false"),
    ("identity", "require_account", 0, "true or false"),
    ("identity", "hash_key_env", "", "the name of an environment variable"),
    ("identity", "hash_key_env", "   ", "the name of an environment variable"),
    ("identity", "hash_key_env", 5, "the name of an environment variable"),
    ("identity", "hash_key_file", 7, "a path to a key file"),
    ("identity", "hash_key_file", "   ", "a path to a key file"),
    ("identity", "hash_key_file", ["a", "b"], "a path to a key file"),
    # terms
    ("terms", "version", "", "a non-empty version string"),
    ("terms", "version", "  ", "a non-empty version string"),
    ("terms", "version", 3, "a non-empty version string"),
    ("terms", "url", 42, "the URL of your usage policy"),
    # ladder
    ("ladder", "window", 0, DURATION),
    ("ladder", "window", 0.0, DURATION),
    ("ladder", "window", -1, DURATION),
    ("ladder", "window", "0s", DURATION),
    ("ladder", "window", "-5d", DURATION),
    ("ladder", "window", "30", DURATION),
    ("ladder", "window", "30 days", DURATION),
    ("ladder", "window", "soon", DURATION),
    ("ladder", "window", True, DURATION),
    ("ladder", "window", float("inf"), DURATION),
    ("ladder", "window", [30], DURATION),
    ("ladder", "warn", 0, INTEGER),
    ("ladder", "warn", -1, INTEGER),
    ("ladder", "warn", 1.5, INTEGER),
    ("ladder", "warn", 2.0, INTEGER),
    ("ladder", "warn", "2", INTEGER),
    ("ladder", "warn", True, INTEGER),
    ("ladder", "throttle", 0, INTEGER),
    ("ladder", "throttle", False, INTEGER),
    ("ladder", "suspend", -5, INTEGER),
    ("ladder", "suspend", "five", INTEGER),
    ("ladder", "suspend_for", 0, DURATION),
    ("ladder", "suspend_for", "-1d", DURATION),
    ("ladder", "suspend_for", "forever", DURATION),
    ("ladder", "suspend_for", False, DURATION),
    # limits
    ("limits", "default", "lots", RATE),
    ("limits", "default", "", RATE),
    ("limits", "default", 60, RATE),
    ("limits", "default", "60/fortnight", RATE),
    ("limits", "default", "-1/minute", RATE),
    ("limits", "default", None, RATE),
    ("limits", "throttled", "5 a minute", "a rate such as '5/minute'"),
    ("limits", "throttled", 5, "a rate such as '5/minute'"),
    ("limits", "strategy", "token-bucket", STRATEGIES),
    ("limits", "strategy", "", STRATEGIES),
    ("limits", "strategy", 1, STRATEGIES),
    # storage
    ("storage", "store", "aupguard.db", "a store URI"),
    ("storage", "store", "", "a store URI"),
    ("storage", "store", 5, "a store URI"),
    ("storage", "counters", "localhost:6379", "a counter URI"),
    ("storage", "counters", None, "a counter URI"),
    ("storage", "sync_interval", 0, DURATION),
    ("storage", "sync_interval", "-1s", DURATION),
    ("storage", "sync_interval", "often", DURATION),
    ("storage", "sync_interval", True, DURATION),
    ("storage", "audit_queue", 0, INTEGER),
    ("storage", "audit_queue", -10, INTEGER),
    ("storage", "audit_queue", 1.5, INTEGER),
    ("storage", "audit_queue", "100", INTEGER),
    ("storage", "audit_queue", True, INTEGER),
]


@pytest.mark.parametrize(
    ("section", "key", "value", "allowed"),
    INVALID,
    ids=[f"{s}.{k}={v!r}" for s, k, v, _ in INVALID],
)
def test_invalid_value_is_a_policy_error_naming_key_value_and_allowed(
    section: str, key: str, value: object, allowed: str
) -> None:
    table: dict[str, object] = {key: value}
    if section == "terms" and key != "version":
        table["version"] = "v1"
    error = policy_error({section: table})
    assert error.key == f"{section}.{key}"
    message = str(error)
    assert f"{section}.{key}" in message
    assert repr(value) in message
    assert allowed in message
    assert isinstance(error, ValueError)  # callers may catch ValueError


def test_invalid_value_in_a_toml_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_toml(write(tmp_path, '[limits]\nstrategy = "leaky-bucket"\n'), env={})
    assert info.value.key == "limits.strategy"
    assert "'leaky-bucket'" in str(info.value)
    assert STRATEGIES in str(info.value)


def test_long_invalid_value_is_shortened_in_the_message() -> None:
    error = policy_error({"limits": {"strategy": "x" * 1000}})
    assert error.key == "limits.strategy"
    assert "x" * 1000 not in str(error)
    assert "..." in str(error)
    assert STRATEGIES in str(error)


def test_overflowing_integer_duration_is_a_policy_error() -> None:
    # A mapping (e.g. Flask config) can hold any Python int; it must not escape as OverflowError.
    error = policy_error({"ladder": {"window": 10**400}})
    assert error.key == "ladder.window"


def test_a_suspension_past_the_year_9999_is_refused_at_load(tmp_path: Path) -> None:
    # It used to load, and every later request of a user it suspended was a 500
    # (OverflowError when the standing gate showed the end of the suspension).
    with pytest.raises(PolicyError) as info:
        Policy.from_toml(write(tmp_path, '[ladder]\nsuspend_for = "3000000d"\n'), env={})
    assert info.value.key == "ladder.suspend_for"
    assert "at most 36500d" in str(info.value)
    error = policy_error({}, env={"AUPGUARD_LADDER__SUSPEND_FOR": "1000000w"})
    assert error.key == "ladder.suspend_for"
    assert Policy.from_mapping({"ladder": {"suspend_for": "36500d"}}, env={}).ladder.suspend_for == 36500 * DAY
    assert {"ladder.suspend_for", "ladder.window", "moderation.timeout", "gateway.timeout"} <= set(DURATION_KEYS)


DURATION_KEYS = [
    f"{table}.{key}"
    for table, (_, specs) in policy_module._FIELDS.items()
    for key, (parse, _) in specs.items()
    if parse in (parse_duration, policy_module._optional_duration)
]


@pytest.mark.parametrize("dotted", DURATION_KEYS)
def test_every_policy_duration_is_bounded_and_the_error_names_its_key(dotted: str) -> None:
    table, key = dotted.split(".")
    extra = {"version": "v1"} if table == "terms" else {}
    for too_long in ("36501d", 1e300):
        assert policy_error({table: {key: too_long, **extra}}).key == dotted


def test_zero_rate_is_rejected() -> None:
    # "0/minute" would refuse every call: a misconfiguration, not a rate.
    error = policy_error({"limits": {"default": "0/minute"}})
    assert error.key == "limits.default"


# -- unknown tables and keys -----------------------------------------------------------------


def test_unknown_table() -> None:
    error = policy_error({"ladders": {"warn": 1}})
    assert error.key == "ladders"
    assert "identity, terms, ladder, limits, storage" in str(error)


def test_table_that_is_not_a_table() -> None:
    error = policy_error({"ladder": 5})
    assert error.key == "ladder"
    assert "a table of keys" in str(error)


@pytest.mark.parametrize(
    ("section", "key", "listed"),
    [
        ("ladder", "warnings", "warn, throttle, suspend, suspend_for"),
        ("limits", "rate", "default, throttled, strategy"),
        ("identity", "hash_key", "require_account, hash_key_env, hash_key_file"),
        ("storage", "url", "store, counters, sync_interval, audit_queue"),
    ],
)
def test_unknown_key(section: str, key: str, listed: str) -> None:
    error = policy_error({section: {key: 1}})
    assert error.key == f"{section}.{key}"
    assert listed in str(error)


@pytest.mark.parametrize("table", [{}, {"url": "https://example.com/policy"}])
def test_terms_without_version(table: dict[str, str]) -> None:
    error = policy_error({"terms": table})
    assert error.key == "terms.version"
    assert "required" in str(error)


def test_terms_url_from_env_without_a_version_is_reported() -> None:
    error = policy_error({}, env={"AUPGUARD_TERMS__URL": "https://example.com/policy"})
    assert error.key == "terms.version"


# -- cross-field ordering ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ladder", "key"),
    [
        ({"warn": 4, "throttle": 3, "suspend": 5}, "ladder.throttle"),
        ({"warn": 4}, "ladder.throttle"),  # against the default throttle of 3
        ({"warn": 1, "throttle": 6, "suspend": 5}, "ladder.suspend"),
        ({"suspend": 2}, "ladder.suspend"),  # against the default throttle of 3
    ],
)
def test_thresholds_must_be_ordered(ladder: dict[str, int], key: str) -> None:
    error = policy_error({"ladder": ladder})
    assert error.key == key
    assert ">= ladder." in str(error)


def test_replace_validates_the_ordering() -> None:
    with pytest.raises(PolicyError) as info:
        Policy().replace(ladder=LadderPolicy(warn=5, throttle=3, suspend=5))
    assert info.value.key == "ladder.throttle"


def test_replace_returns_a_new_policy() -> None:
    original = Policy()
    changed = original.replace(terms=TermsPolicy("v9"))
    assert changed.terms == TermsPolicy("v9")
    assert original.terms is None
    assert changed.ladder == original.ladder


# -- the policy file -----------------------------------------------------------------------


def test_bad_toml_syntax_is_a_policy_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[ladder\nwarn = = 2\n")
    with pytest.raises(PolicyError) as info:
        Policy.from_toml(path, env={})
    assert info.value.key == "policy file"
    assert str(path) in str(info.value)
    assert "valid TOML" in str(info.value)
    assert not isinstance(info.value, tomllib.TOMLDecodeError)


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(PolicyError) as info:
        Policy.from_toml(path, env={})
    assert info.value.key == "policy file"
    assert str(path) in str(info.value)
    assert not isinstance(info.value, OSError)


def test_directory_instead_of_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_toml(tmp_path, env={})
    assert info.value.key == "policy file"


def test_non_utf8_file_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[terms]\nversion = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(PolicyError) as info:
        Policy.from_toml(path, env={})
    assert info.value.key == "policy file"


# -- frozen ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "attribute", "value"),
    [
        (lambda p: p, "ladder", LadderPolicy()),
        (lambda p: p, "terms", None),
        (lambda p: p.ladder, "warn", 9),
        (lambda p: p.identity, "require_account", True),
        (lambda p: p.limits, "default", "1/second"),
        (lambda p: p.storage, "store", "memory://"),
        (lambda p: p.terms, "version", "other"),
    ],
)
def test_policy_is_frozen(target: Any, attribute: str, value: object) -> None:
    policy = FULL_POLICY
    obj = target(policy)
    before = getattr(obj, attribute)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, attribute, value)
    assert getattr(obj, attribute) == before


URL_KEYS = [("gateway", "upstream"), ("moderation.claude", "base_url"), ("moderation.openai", "url")]


def _nest(dotted: str, key: str, value: object) -> dict[str, Any]:
    table, _, sub = dotted.partition(".")
    inner: dict[str, Any] = {key: value}
    return {table: {sub: inner} if sub else inner}


@pytest.mark.parametrize(("dotted", "key"), URL_KEYS)
@pytest.mark.parametrize(
    "url",
    [
        "https://ops:s3cr3t-pa55@api.example.com",
        "https://s3cr3t-pa55@api.example.com/v1",  # a token as the user name is a secret too
        "http://ops:s3cr3t-pa55@127.0.0.1:8080/v1/moderations",
        "https://ops:s3cr3t-pa55@@api.example.com",
    ],
)
def test_a_url_with_credentials_is_refused_and_the_secret_is_not_shown(dotted: str, key: str, url: str) -> None:
    # The gateway sent `user:pass@` of its upstream on in the Host header; a moderator URL
    # would carry them to its server the same way. They belong in the key's variable.
    error = policy_error(_nest(dotted, key, url))
    assert error.key == f"{dotted}.{key}"
    assert "without credentials" in str(error)
    assert "s3cr3t-pa55" not in str(error) and "s3cr3t-pa55" not in repr(error.value)
    assert "ops" not in str(error.value)


def test_an_upstream_with_credentials_in_the_environment_is_refused_too() -> None:
    error = policy_error({}, env={"AUPGUARD_GATEWAY__UPSTREAM": "https://ops:s3cr3t-pa55@api.example.com"})
    assert error.key == "gateway.upstream" and "s3cr3t-pa55" not in str(error)


@pytest.mark.parametrize(("dotted", "key"), URL_KEYS)
@pytest.mark.parametrize("url", ["ftp://api.example.com", "api.example.com", "https://", "https://h:port"])
def test_a_moderator_or_upstream_url_must_be_http(dotted: str, key: str, url: str) -> None:
    assert policy_error(_nest(dotted, key, url)).key == f"{dotted}.{key}"


def test_plain_urls_still_load() -> None:
    policy = Policy.from_mapping(
        {
            "gateway": {"upstream": "https://api.anthropic.com/"},
            "moderation": {
                "claude": {"base_url": "http://127.0.0.1:9000"},
                "openai": {"url": "https://mod.example.com/v1/moderations"},
            },
        },
        env={},
    )
    assert policy.gateway.upstream == "https://api.anthropic.com"
    assert policy.moderation.claude is not None and policy.moderation.claude.base_url == "http://127.0.0.1:9000"
    assert policy.moderation.openai is not None
    assert policy.moderation.openai.url == "https://mod.example.com/v1/moderations"


def test_the_trusted_proxy_header_is_a_header_name() -> None:
    assert Policy().review.trusted_proxy_header is None  # the socket peer: no header is believed
    policy = Policy.from_mapping({"review": {"trusted_proxy_header": "X-Forwarded-For"}}, env={})
    assert policy.review.trusted_proxy_header == "x-forwarded-for"
    for bad in ("X Forwarded For", "X-Forwarded-For:", 5, "-x"):
        assert policy_error({"review": {"trusted_proxy_header": bad}}).key == "review.trusted_proxy_header"

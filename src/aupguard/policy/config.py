"""The policy: one frozen object, loaded from TOML, a mapping or the environment.

Every key is declared once, in the ``_FIELDS`` table below, with its parser and a description
of what is allowed; loading checks every key and stops at the first bad one with a
:class:`~aupguard.errors.PolicyError` that names the key, the value and what is allowed.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..durations import DURATION_HELP, parse_duration
from ..errors import PolicyError
from .archive import ENDPOINT_HELP, S3_URL_HELP, s3_url
from .gateway import GATEWAY_FIELDS, GatewayPolicy
from .moderation import MODERATION_FIELDS, PROMPTS_FIELDS, ModerationPolicy, PromptsPolicy
from .notify import NOTIFY_FIELDS, NotifyPolicy
from .review import REVIEW_FIELDS, ReviewPolicy
from .values import allowed_and_why, any_text, boolean, choice, count, http_url, optional_text, rate, text

__all__ = [
    "ENV_PREFIX",
    "CapturePolicy",
    "EnforcementPolicy",
    "GatewayPolicy",
    "IdentityPolicy",
    "LadderPolicy",
    "LimitsPolicy",
    "OtelPolicy",
    "Policy",
    "ReviewPolicy",
    "StoragePolicy",
    "TermsPolicy",
]

ENV_PREFIX = "AUPGUARD_"
STRATEGIES = ("moving-window", "fixed-window", "sliding-window-counter")


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    require_account: bool = True
    hash_key_env: str = "AUPGUARD_HASH_KEY"
    hash_key_file: str | None = None


@dataclass(frozen=True, slots=True)
class TermsPolicy:
    version: str
    url: str = ""


@dataclass(frozen=True, slots=True)
class LadderPolicy:
    window: float = 30 * 86400.0
    warn: int = 1
    throttle: int = 3
    suspend: int = 5
    suspend_for: float | None = None


@dataclass(frozen=True, slots=True)
class LimitsPolicy:
    default: str = "60/minute"
    throttled: str = "5/minute"
    strategy: str = "moving-window"
    tokens: str | None = None  # a per-user token budget, e.g. "200000/day"
    legacy_headers: bool = True  # also RateLimit-Limit/-Remaining/-Reset (earlier drafts); default false next release


@dataclass(frozen=True, slots=True)
class StoragePolicy:
    store: str = "sqlite:///aupguard.db"
    counters: str = "memory://"
    sync_interval: float = 0.25
    audit_queue: int = 10_000
    fail: str = "open"  # when the counter store is down: serve from memory (open) or answer 503 (closed)
    timeout: float = 1.0  # per counter-store (Redis) operation
    store_timeout: float = 5.0  # waiting for a connection to a server store (PostgreSQL)
    pool_size: int = 4  # connections per process to a server store
    migrate: str = "on-start"  # or "manual": a schema behind is an error until `aupguard migrate`
    spill: str = ".aupguard/spill"  # audit records wait here while the store is down
    spill_max: int = 256 * 1024 * 1024  # bytes of spill per process before the loud alarm


@dataclass(frozen=True, slots=True)
class CapturePolicy:
    enabled: bool = False
    key_env: str = "AUPGUARD_CAPTURE_KEY"
    retention: float = 30 * 86400.0
    completions: bool = True
    archive: str | None = None  # s3://bucket/prefix for `aupguard capture archive` (run it from cron)
    archive_endpoint_url: str | None = None  # an S3-compatible server; None: AWS S3
    archive_gzip: bool = True


@dataclass(frozen=True, slots=True)
class EnforcementPolicy:
    """``monitor``: every check runs and is recorded, nothing the policy decides is refused
    (docs/moderation.md#rolling-out-with-monitor-mode)."""

    mode: str = "enforce"


@dataclass(frozen=True, slots=True)
class OtelPolicy:
    """OpenTelemetry spans (docs/observability.md). Off the hook unless a tracer provider is set."""

    capture_content: bool = False  # prompt and completion text in spans: opt-in, never by default


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything aupguard enforces. Build with :meth:`from_toml` or :meth:`from_mapping`."""

    identity: IdentityPolicy = field(default_factory=IdentityPolicy)
    terms: TermsPolicy | None = None
    ladder: LadderPolicy = field(default_factory=LadderPolicy)
    limits: LimitsPolicy = field(default_factory=LimitsPolicy)
    storage: StoragePolicy = field(default_factory=StoragePolicy)
    prompts: PromptsPolicy = field(default_factory=PromptsPolicy)
    moderation: ModerationPolicy = field(default_factory=ModerationPolicy)
    capture: CapturePolicy = field(default_factory=CapturePolicy)
    review: ReviewPolicy = field(default_factory=ReviewPolicy)
    gateway: GatewayPolicy = field(default_factory=GatewayPolicy)
    notify: NotifyPolicy = field(default_factory=NotifyPolicy)
    otel: OtelPolicy = field(default_factory=OtelPolicy)
    enforcement: EnforcementPolicy = field(default_factory=EnforcementPolicy)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Policy:
        """Load a TOML file, then apply ``AUPGUARD_<TABLE>__<KEY>`` overrides from ``env``
        (``os.environ`` when not given; pass ``{}`` for none)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PolicyError("policy file", str(path), "an existing, readable TOML file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(
                "policy file", str(path), f"a readable UTF-8 TOML file ({exc.__class__.__name__})"
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError("policy file", str(path), f"valid TOML ({exc})") from None
        return cls.from_mapping(data, env=env)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, env: Mapping[str, str] | None = None) -> Policy:
        """Build from nested tables (``{"ladder": {"warn": 2}}``), then apply env overrides
        (``os.environ`` when ``env`` is not given; pass ``{}`` for none)."""
        merged = _merge_env(data, os.environ if env is None else env)
        unknown = sorted(set(merged) - set(_FIELDS))
        if unknown:
            raise PolicyError(unknown[0], merged[unknown[0]], f"one of the tables {', '.join(_FIELDS)}")
        sections: dict[str, Any] = {}
        for name, table in merged.items():
            if not isinstance(table, Mapping):
                raise PolicyError(name, table, "a table of keys")
            sections[name] = _build_section(name, table)
        policy = cls(**sections)
        _check_cross_fields(policy)
        return policy

    def replace(self, **changes: Any) -> Policy:
        """A copy with whole sections replaced, validated like a loaded policy."""
        policy = replace(self, **changes)
        _check_cross_fields(policy)
        return policy


# -- parsers ---------------------------------------------------------------------------


_positive_int = count(1_000_000)


_strategy = choice(STRATEGIES)


def _optional_duration(value: object) -> float | None:
    return None if value in (None, "", "never") else parse_duration(value)


def _uri(value: object) -> str:
    if isinstance(value, str) and "://" in value:
        return value
    raise ValueError


Parser = Callable[[object], Any]
_FIELDS: dict[str, tuple[type[Any], dict[str, tuple[Parser, str]]]] = {
    "identity": (
        IdentityPolicy,
        {
            "require_account": (boolean, "true or false"),
            "hash_key_env": (text, "the name of an environment variable"),
            "hash_key_file": (optional_text, "a path to a key file, or empty"),
        },
    ),
    "terms": (
        TermsPolicy,
        {
            "version": (text, "a non-empty version string such as '2026-01'"),
            "url": (any_text, "the URL of your usage policy, or empty"),
        },
    ),
    "ladder": (
        LadderPolicy,
        {
            "window": (parse_duration, DURATION_HELP),
            "warn": (_positive_int, "an integer from 1 to 1000000"),
            "throttle": (_positive_int, "an integer from 1 to 1000000"),
            "suspend": (_positive_int, "an integer from 1 to 1000000"),
            "suspend_for": (
                _optional_duration,
                DURATION_HELP + ", or absent for 'until reinstated'",
            ),
        },
    ),
    "limits": (
        LimitsPolicy,
        {
            "default": (rate, "a rate such as '60/minute' or '1000 per hour' (one rate, amount >= 1)"),
            "throttled": (rate, "a rate such as '5/minute' (one rate, amount >= 1)"),
            "strategy": (_strategy, " | ".join(STRATEGIES)),
            "tokens": (rate, "a token budget such as '200000/day' (one rate, amount >= 1)"),
            "legacy_headers": (boolean, "true or false"),
        },
    ),
    "storage": (
        StoragePolicy,
        {
            "store": (_uri, "a store URI: sqlite:///path, memory:// or postgresql://user@host/db"),
            "counters": (
                _uri,
                "a counter URI: memory://, redis://host:port/db, rediss://, redis+sentinel://, redis+cluster://",
            ),
            "sync_interval": (parse_duration, DURATION_HELP),
            "audit_queue": (_positive_int, "an integer from 1 to 1000000 (records held before writers wait)"),
            "fail": (choice(("open", "closed")), "open | closed"),
            "timeout": (parse_duration, DURATION_HELP),
            "store_timeout": (parse_duration, DURATION_HELP),
            "pool_size": (count(256), "an integer from 1 to 256"),
            "migrate": (choice(("on-start", "manual")), "on-start | manual"),
            "spill": (text, "a directory for audit records written while the store is down"),
            "spill_max": (count(2**40), "a number of bytes from 1 to 2**40"),
        },
    ),
    "prompts": (PromptsPolicy, PROMPTS_FIELDS),
    "moderation": (ModerationPolicy, MODERATION_FIELDS),
    "capture": (
        CapturePolicy,
        {
            "enabled": (boolean, "true or false"),
            "key_env": (text, "the name of an environment variable holding the capture master key"),
            "retention": (parse_duration, DURATION_HELP),
            "completions": (boolean, "true or false"),
            "archive": (s3_url, S3_URL_HELP),
            "archive_endpoint_url": (http_url("capture.archive_endpoint_url", ENDPOINT_HELP), ENDPOINT_HELP),
            "archive_gzip": (boolean, "true or false"),
        },
    ),
    "review": (ReviewPolicy, REVIEW_FIELDS),
    "gateway": (GatewayPolicy, GATEWAY_FIELDS),
    "notify": (NotifyPolicy, NOTIFY_FIELDS),
    "enforcement": (
        EnforcementPolicy,
        {"mode": (choice(("enforce", "monitor")), "enforce | monitor")},
    ),
    "otel": (
        OtelPolicy,
        {"capture_content": (boolean, "true or false (prompt and completion text in spans; default false)")},
    ),
}


def _build_section(name: str, table: Mapping[str, Any]) -> Any:
    cls, specs = _FIELDS[name]
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in specs:
            raise PolicyError(f"{name}.{key}", raw, f"one of the keys {', '.join(specs)}")
        parse, allowed = specs[key]
        try:
            values[key] = parse(raw)
        except PolicyError:  # a nested value names its own path
            raise
        except ValueError as exc:
            raise PolicyError(f"{name}.{key}", raw, allowed_and_why(allowed, exc)) from None
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    for key in required:
        if key not in values:
            raise PolicyError(f"{name}.{key}", None, specs[key][1] + " (required when [" + name + "] is present)")
    return cls(**values)


def _check_cross_fields(policy: Policy) -> None:
    prompts = policy.prompts
    needs = {
        "allowlist": prompts.allowlist or prompts.allowlist_patterns,
        "templates": prompts.templates,
        "corpus": prompts.corpus,
    }
    if prompts.mode in needs and not needs[prompts.mode]:
        wanted = {
            "allowlist": "prompts.allowlist or prompts.allowlist_patterns",
            "templates": "prompts.templates",
            "corpus": "prompts.corpus",
        }[prompts.mode]
        raise PolicyError("prompts.mode", prompts.mode, f"a mode whose settings are given (set {wanted})")
    ladder = policy.ladder
    if not ladder.warn <= ladder.throttle:
        raise PolicyError("ladder.throttle", ladder.throttle, f"an integer >= ladder.warn ({ladder.warn})")
    if not ladder.throttle <= ladder.suspend:
        raise PolicyError("ladder.suspend", ladder.suspend, f"an integer >= ladder.throttle ({ladder.throttle})")


def _merge_env(data: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Apply ``AUPGUARD_<TABLE>__<KEY>=value`` overrides. A value the key accepts as plain
    text is taken as it is (``10/minute``, ``2026-01-15``); otherwise it is read as a TOML
    scalar (``true``, ``5``)."""
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        table, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if table not in _FIELDS or key not in _FIELDS[table][1]:
            raise PolicyError(  # the value is not shown: an unknown variable may hold a secret
                name,
                "(value not shown)",
                "AUPGUARD_<TABLE>__<KEY> naming a policy key, e.g. AUPGUARD_LIMITS__DEFAULT",
            )
        value: Any = raw
        try:  # the raw text when the key takes it as it is, else the TOML scalar it spells
            _FIELDS[table][1][key][0](raw)
        except ValueError:
            try:
                value = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                value = raw
        section = merged.setdefault(table, {})
        if isinstance(section, dict):
            section[key] = value
    return merged

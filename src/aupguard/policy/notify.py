"""The ``[notify]`` policy table: webhooks told about what reviewers need to know.

``webhooks`` is a list of tables ``{url, events, secret}`` (or ``secret_env``, the name of an
environment variable holding the secret): an http(s) URL without credentials, a non-empty
list of event names from :data:`EVENTS`, and the secret the bodies are signed with (at least
16 characters; never shown in an error). The other keys bound delivery.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..durations import DURATION_HELP, parse_duration
from ..errors import PolicyError
from .values import http_url

__all__ = ["EVENTS", "NOTIFY_FIELDS", "NotifyPolicy", "Webhook"]

EVENTS = ("user_suspended", "user_reinstated", "item_flagged", "appeal_received", "queue_sla_breached")
MIN_SECRET = 16
_HIDDEN = "(not shown)"


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    events: tuple[str, ...]
    secret: str | None = None  # the signing secret, or None when ``secret_env`` names it
    secret_env: str | None = None

    @property
    def target(self) -> str:
        """The id of this webhook in the outbox: stable while its URL is."""
        return "w" + hashlib.sha256(self.url.encode()).hexdigest()[:16]

    def __repr__(self) -> str:  # the secret never reaches a log through a repr
        return f"Webhook(url={self.url!r}, events={self.events!r})"


@dataclass(frozen=True, slots=True)
class NotifyPolicy:
    webhooks: tuple[Webhook, ...] = ()
    timeout: float = 5.0  # per delivery attempt (connect + read)
    batch_window: float = 10.0  # item_flagged notifications this close together go in one delivery
    poll: float = 1.0  # how often a sender looks for rows written by other processes
    give_up_after: float = 3 * 86400.0  # a notification no receiver took this long is marked failed
    retry_min: float = 2.0  # the first retry's delay; each next one doubles (with jitter), up to an hour


def _bounded(most: float) -> Callable[[object], float]:
    def parse(value: object) -> float:
        seconds = parse_duration(value)
        if not 0 < seconds <= most:
            raise ValueError
        return seconds

    return parse


def _webhooks(value: object) -> tuple[Webhook, ...]:
    if not isinstance(value, list | tuple):  # not shown: a misplaced table may hold a secret
        raise PolicyError("notify.webhooks", _HIDDEN, "a list of tables {url, events, secret}")
    hooks = tuple(_webhook(f"notify.webhooks[{i}]", entry) for i, entry in enumerate(value))
    urls = [h.url for h in hooks]
    for i, url in enumerate(urls):
        if url in urls[:i]:
            raise PolicyError(f"notify.webhooks[{i}].url", _HIDDEN, "a URL no other webhook has")
    return hooks


def _webhook(key: str, entry: object) -> Webhook:
    if not isinstance(entry, Mapping):
        raise PolicyError(key, _HIDDEN, "a table {url = ..., events = [...], secret = ...}")
    unknown = sorted(set(entry) - {"url", "events", "secret", "secret_env"})
    if unknown:
        raise PolicyError(f"{key}.{unknown[0]}", _HIDDEN, "one of the keys url, events, secret, secret_env")
    url_allowed = "an http(s) URL with a host and no query or fragment"
    try:  # a chat webhook's URL is itself a secret: never shown in the error
        url = http_url(f"{key}.url", url_allowed)(entry.get("url"))
    except ValueError as exc:  # PolicyError too
        allowed = exc.allowed if isinstance(exc, PolicyError) else url_allowed
        raise PolicyError(f"{key}.url", _HIDDEN, allowed) from None
    events = entry.get("events")
    if not isinstance(events, list | tuple) or not events or any(e not in EVENTS for e in events):
        raise PolicyError(f"{key}.events", events, f"a non-empty list of {', '.join(EVENTS)}")
    secret, secret_env = entry.get("secret"), entry.get("secret_env")
    if (secret is None) == (secret_env is None):
        raise PolicyError(f"{key}.secret", _HIDDEN, "a signing secret (or secret_env), exactly one of them")
    if secret is not None and (not isinstance(secret, str) or len(secret.strip()) < MIN_SECRET):
        raise PolicyError(f"{key}.secret", _HIDDEN, f"a string of at least {MIN_SECRET} characters")
    if secret_env is not None and (not isinstance(secret_env, str) or not secret_env.strip()):
        raise PolicyError(f"{key}.secret_env", secret_env, "the name of an environment variable")
    return Webhook(url, tuple(dict.fromkeys(events)), secret, secret_env)


NOTIFY_FIELDS: dict[str, tuple[Callable[[object], Any], str]] = {
    "webhooks": (_webhooks, "a list of tables {url, events, secret}"),
    "timeout": (_bounded(60.0), DURATION_HELP + ", at most 60 s"),
    "batch_window": (_bounded(3600.0), DURATION_HELP + ", at most 1 h"),
    "poll": (_bounded(600.0), DURATION_HELP + ", at most 10 min"),
    "give_up_after": (_bounded(90 * 86400.0), DURATION_HELP + ", at most 90 days"),
    "retry_min": (_bounded(3600.0), DURATION_HELP + ", at most 1 h"),
}

"""What an engine needs around its life: the figures read at each metrics scrape, the spill
file of its store, and hooks (at exit, in a forked child) that do not keep it alive."""

from __future__ import annotations

import hashlib
import os
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ..audit.spill import SpillFile
from ..counters.redis import RedisCounters
from ..policy.config import Policy
from ..stores import SQLStore

if TYPE_CHECKING:
    from ..audit.writer import AuditLog
    from ..counters.base import Counters
    from ..metrics import Metrics
    from .records import Records
    from .screening import Screening
    from .state_cache import StateCache

T = TypeVar("T")

__all__ = ["register_figures", "spill_for", "weakly"]


def register_figures(
    metrics: Metrics, audit: AuditLog, counters: Counters, cache: StateCache, screening: Screening, records: Records
) -> None:
    """The figures read when metrics are scraped."""
    add = metrics.read_at_scrape
    spill = audit._spill
    add(
        "aupguard_audit_queue_depth",
        "Audit operations waiting to be written.",
        "gauge",
        lambda: [("", audit.pending())],
    )
    add(
        "aupguard_store_errors_total",
        "Failed writes and reads of the durable store, by who saw them.",
        "counter",
        lambda: [
            ('source="audit"', audit.failures),
            ('source="state_sync"', cache.failures),
            ('source="flags"', screening.flag_failures),
        ],
    )
    add(
        "aupguard_unavailable_total",
        "Guarded calls answered 503 safeguards_unavailable.",
        "counter",
        lambda: [("", records.unavailable)],
    )
    add(
        "aupguard_audit_spilled_total",
        "Audit operations written to the spill file (store down).",
        "counter",
        lambda: [("", 0 if spill is None else spill.spilled)],
    )
    add(
        "aupguard_audit_spill_bytes",
        "Bytes waiting in this process's spill file.",
        "gauge",
        lambda: [("", 0 if spill is None else spill.bytes)],
    )
    add(
        "aupguard_audit_spill_full",
        "1 while the spill file is at its bound (writers wait).",
        "gauge",
        lambda: [("", int(spill is not None and spill.full))],
    )
    if isinstance(counters, RedisCounters):
        add(
            "aupguard_counter_store_errors_total",
            "Failed Redis operations.",
            "counter",
            lambda: [("", counters.errors)],
        )
        add("aupguard_counter_store_up", "1 when Redis answers, 0 while serving from the fallback.", "gauge",
            lambda: [("", int(counters.available))])  # fmt: skip


def spill_for(store: SQLStore, policy: Policy) -> SpillFile | None:
    """The spill file of a store that can be down (not ``memory://``): one folder per store,
    so records are only ever replayed into the store they were meant for."""
    if not store.shared:
        return None
    folder = hashlib.sha256(store.uri.encode()).hexdigest()[:16]
    return SpillFile(os.path.join(os.path.abspath(policy.storage.spill), folder), policy.storage.spill_max)


def weakly(guard: T, act: Callable[[T], None]) -> Callable[[], None]:
    """``act(guard)`` for a hook that runs later (at exit, in a forked child), without keeping
    the engine alive until then."""
    ref = weakref.ref(guard)

    def call() -> None:
        alive = ref()
        if alive is not None:
            act(alive)

    return call

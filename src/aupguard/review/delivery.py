"""Webhook delivery: one background thread per webhook sends what the outbox holds for it.

Never on the request path: a change writes its notification rows in its own transaction
(:meth:`Notifier.rows_for`, the store's ``outbox_hook``) and returns; the senders poll the
outbox (every ``[notify] poll``; rows written by other processes, or left by a process
that stopped, are found the same way). Each webhook has its own thread and its own bounded
timeout, so a receiver that is slow or down delays only its own deliveries. A failed
delivery is retried with exponential backoff and jitter, as the same delivery (same id,
same events), until ``give_up_after``. URLs (a chat webhook's URL is itself a secret) and
secrets are never logged: a webhook is named by its target id.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import AupguardError, ConfigurationError
from ..policy.notify import Webhook
from ..stores.appeal_records import OutboxRow
from ..stores.records import AuditEvent
from .notify import SIGNATURE_HEADER, backoff, body_of, new_delivery_id, notifications_for, sign, sla_rows

if TYPE_CHECKING:
    from ..metrics import Metrics
    from ..policy.config import Policy
    from ..stores import SQLStore

__all__ = ["Notifier"]

log = logging.getLogger("aupguard.notify")
MAX_BATCH = 100
MAX_RESPONSE = 64 * 1024
PRUNE_AFTER = 7 * 86400.0


class Notifier:
    """The webhooks of one engine: the outbox hook and the sender threads (a part of
    :class:`~aupguard.engine.safeguards.Safeguards`, made when ``[notify] webhooks`` is set)."""

    def __init__(self, policy: Policy, store: SQLStore, metrics: Metrics, clock: Callable[[], float]) -> None:
        self.store = store
        self._clock = clock
        self.sla = policy.review.sla
        self.policy = policy.notify
        self.hooks = self.policy.webhooks
        self._secrets = {h.target: _secret(h) for h in self.hooks}
        self.routes: dict[str, list[str]] = {}
        for hook in self.hooks:
            for event in hook.events:
                self.routes.setdefault(event, []).append(hook.target)
        self.delivered = 0  # deliveries a receiver took (this process)
        self.failures = 0  # attempts that failed
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        store.outbox_hook = self.rows_for
        add = metrics.read_at_scrape
        add("aupguard_webhook_deliveries_total", "Webhook deliveries a receiver took (this process).", "counter",
            lambda: [("", self.delivered)])  # fmt: skip
        add("aupguard_webhook_failures_total", "Webhook delivery attempts that failed (this process).", "counter",
            lambda: [("", self.failures)])  # fmt: skip
        self._start()

    def rows_for(self, events: Sequence[AuditEvent]) -> list[tuple[str, float, str, str, str]]:
        rows = notifications_for(events, self.routes)
        if rows:
            self._wake.set()  # this process's senders look again soon (after the commit, by their poll)
        return rows

    # -- threads -----------------------------------------------------------------------

    def _start(self) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._send_loop, args=(hook,), name=f"aupguard-notify-{hook.target}", daemon=True)
            for hook in self.hooks
        ]
        if "queue_sla_breached" in self.routes:
            self._threads.append(threading.Thread(target=self._sla_loop, name="aupguard-notify-sla", daemon=True))
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Stop the senders (an attempt under way ends within its timeout); undelivered rows
        stay in the outbox for the next start."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + self.policy.timeout + 2.0  # one bound for all, not one per webhook
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.store.outbox_hook = None

    def after_fork(self) -> None:
        """A forked child starts its own senders (threads do not survive a fork)."""
        self._start()

    def _pause(self, seconds: float) -> None:
        # a wake-up from a write in this process comes before its commit: look again shortly after
        if self._wake.wait(seconds):
            self._wake.clear()
            self._stop.wait(0.05)

    def _sla_loop(self) -> None:
        sla = self.sla
        targets = self.routes["queue_sla_breached"]
        while not self._stop.is_set():
            now = self._clock()

            def make_rows(items: list[tuple[str, float]], at: float = now) -> list[Any]:
                return sla_rows(items, sla, at, targets)

            try:
                self.store.sla_breaches(older_than=now - sla, make_rows=make_rows)
            except AupguardError as exc:
                log.warning("could not check the review queue's SLA: %s", exc.__class__.__name__)
            self._stop.wait(max(self.policy.poll, 1.0))

    def _send_loop(self, hook: Webhook) -> None:
        client = httpx.Client(timeout=httpx.Timeout(self.policy.timeout), follow_redirects=False, trust_env=False)
        pruned = 0.0
        try:
            while not self._stop.is_set():
                try:
                    sent = self._send_due(client, hook)
                    now = self._clock()
                    if now - pruned > 3600.0:
                        self.store.prune_outbox(before=now - PRUNE_AFTER)
                        pruned = now
                except AupguardError as exc:  # the store is down: the rows wait in it
                    log.warning("webhook %s: outbox unavailable: %s", hook.target, exc.__class__.__name__)
                    sent = False
                if not sent:
                    self._pause(self.policy.poll)
        finally:
            client.close()

    # -- one round ---------------------------------------------------------------------

    def _send_due(self, client: httpx.Client, hook: Webhook) -> bool:
        """Send every delivery due for ``hook`` now; True when one was attempted."""
        now = self._clock()
        rows = self.store.due_outbox(hook.target, now=now, limit=MAX_BATCH * 2)
        attempted = False
        for batch in batches(rows, now, self.policy.batch_window):
            if self._stop.is_set():
                break
            delivery_id = batch[0].delivery_id or new_delivery_id()
            until = now + self.policy.timeout + 5.0
            leased = self.store.lease_outbox(batch, delivery_id, now=now, until=until)
            if not leased:
                continue
            attempted = True
            self._attempt(client, hook, delivery_id, leased)
        return attempted

    def _attempt(self, client: httpx.Client, hook: Webhook, delivery_id: str, rows: list[OutboxRow]) -> None:
        store = self.store
        ids = [r.id for r in rows]
        created = time.time()
        body = body_of(delivery_id, rows[0].event, [r.data for r in rows], created)
        headers = {
            "content-type": "application/json",
            "user-agent": "aupguard-webhooks",
            "aupguard-delivery": delivery_id,
            "aupguard-event": rows[0].event,
            SIGNATURE_HEADER.lower(): sign(self._secrets[hook.target], body, int(created)),
        }
        ok = False
        try:
            ok = _post(client, hook.url, body, headers, self.policy.timeout)
        except httpx.HTTPError as exc:
            log.info("webhook %s: delivery failed: %s", hook.target, exc.__class__.__name__)
        now = self._clock()
        if ok:
            self.delivered += 1
            store.outbox_done(ids, at=now)
            return
        self.failures += 1
        if now - min(r.at for r in rows) > self.policy.give_up_after:
            log.error("webhook %s: gave up on %d notification(s) after %d attempts", hook.target, len(rows),
                      rows[0].attempts + 1)  # fmt: skip
            store.outbox_give_up(ids, at=now)
        else:
            store.outbox_retry(ids, next_at=now + backoff(rows[0].attempts, random.random(), self.policy.retry_min))


def batches(rows: Sequence[OutboxRow], now: float, window: float) -> list[list[OutboxRow]]:
    """The deliveries to make from due rows (oldest first): a retry resends the rows of its
    delivery together; new ``item_flagged`` rows go together once the oldest of them is
    ``window`` old (so flags close in time make one delivery); any other row goes alone."""
    out: list[list[OutboxRow]] = []
    retries: dict[str, list[OutboxRow]] = {}
    fresh_flags: list[OutboxRow] = []
    for row in rows:
        if row.delivery_id is not None:
            if row.delivery_id not in retries:
                retries[row.delivery_id] = []
                out.append(retries[row.delivery_id])
            retries[row.delivery_id].append(row)
        elif row.event == "item_flagged":
            fresh_flags.append(row)
        else:
            out.append([row])
    if fresh_flags and fresh_flags[0].at + window <= now:
        first = fresh_flags[0].at
        out.append([r for r in fresh_flags if r.at <= first + window][:MAX_BATCH])
    return out


def _post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str], timeout: float) -> bool:
    """POST, reading at most a little of the answer, within ``timeout`` overall."""
    deadline = time.monotonic() + timeout
    request = client.build_request("POST", url, content=body, headers=headers)
    response = client.send(request, stream=True)
    try:
        read = 0
        for chunk in response.iter_raw():
            read += len(chunk)
            if read > MAX_RESPONSE or time.monotonic() > deadline:
                break
        return 200 <= response.status_code < 300
    finally:
        response.close()


def _secret(hook: Webhook) -> str:
    if hook.secret is not None:
        return hook.secret
    assert hook.secret_env is not None
    value = os.environ.get(hook.secret_env, "")
    if len(value.strip()) < 16:
        raise ConfigurationError(
            f"[notify] webhook {hook.target}: the environment variable {hook.secret_env} holds no signing secret "
            "(at least 16 characters)"
        )
    return value

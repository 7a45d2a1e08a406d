"""Users' recorded state in process memory, so a guarded call does no SQL.

A user is loaded once (the first call after start or after eviction) and then kept up to
date: changes made through this process update the cache directly, and a watcher thread
polls the store's change feed every ``sync_interval`` to reload users that other processes
changed. That is what makes a suspension made anywhere take effect here within a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ..ladder import UserState
from ..stores import SQLStore

__all__ = ["StateCache"]

log = logging.getLogger("aupguard.state")


class StateCache:
    def __init__(
        self,
        store: SQLStore,
        load: Callable[[str], UserState],
        *,
        sync_interval: float,
        max_users: int = 100_000,
    ) -> None:
        self._store = store
        self._load = load
        self._max = max_users
        self._users: OrderedDict[str, UserState] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._recent: dict[str, int] = {}  # user hash → latest change seq the watcher saw
        self._interval = sync_interval
        self.failures = 0  # polls of the change feed that failed
        if store.shared:
            self._seq = store.change_seq()
            self._thread = self._start()

    def _start(self) -> threading.Thread:
        thread = threading.Thread(target=self._watch, args=(self._interval,), name="aupguard-state-sync", daemon=True)
        thread.start()
        return thread

    def after_fork(self) -> None:
        """In a forked child: new locks, and a watcher of its own (threads do not survive fork)."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if self._thread is not None:
            self._thread = self._start()

    def get(self, user_hash: str) -> UserState | None:
        return self._users.get(user_hash)

    def put(self, state: UserState) -> None:
        with self._lock:
            self._users[state.user_hash] = state
            if len(self._users) > self._max:
                self._users.popitem(last=False)

    def fetch(self, user_hash: str, load: Callable[[], UserState]) -> UserState:
        """Load a user into the cache. A change another process commits while the load runs
        could be skipped by the watcher (the user was not cached yet), so the watcher keeps
        the latest change it saw per user, and a load that may have missed one runs again."""
        seen = self._seq
        state = load()
        self.put(state)
        if self._recent.get(user_hash, 0) > seen:
            state = load()
            self.put(state)
        return state

    def _watch(self, interval: float) -> None:
        last_prune = time.monotonic()
        failing = False
        while not self._stop.wait(interval):
            try:
                seq, changed = self._store.changes_since(self._seq)
                if len(self._recent) > self._max:
                    self._recent.clear()
                for user_hash in changed:
                    self._recent[user_hash] = seq
                self._seq = seq
                for user_hash in changed:
                    if user_hash in self._users:
                        self.put(self._load(user_hash))
                if time.monotonic() - last_prune > 600:
                    self._store.prune_changes(time.time() - 3600)
                    last_prune = time.monotonic()
            except Exception as exc:  # keep watching; the next poll retries
                self.failures += 1
                if not failing:  # once per outage, not once per poll
                    log.warning("state sync failed: %s; retrying every %ss", exc.__class__.__name__, interval)
                failing = True
            else:
                if failing:
                    log.warning("state sync works again")
                failing = False

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

"""The escalation ladder: pure functions from a user's recorded state to a level.

Rules (``[ladder]`` in the policy):

* a strike *counts* while it is younger than ``window``, has not been voided, and was
  made after the user's last reinstatement;
* ``warn`` / ``throttle`` counting strikes put the user at that level;
* the strike that brings the count to ``suspend`` *records* a suspension that lasts
  ``suspend_for`` (or until reinstated when ``suspend_for`` is absent), however the strikes
  decay meanwhile; each further strike at or above the threshold starts it afresh. When it
  runs out the user is served at the throttled tier until strikes decay;
* voiding a strike that takes the count back under ``suspend`` lifts a suspension the
  ladder imposed (not one an operator imposed);
* a manual suspension (``Safeguards.suspend``) holds until its end or a reinstatement.
"""

from __future__ import annotations

from dataclasses import dataclass

from .durations import format_duration
from .outcome import Level
from .policy.config import LadderPolicy

__all__ = [
    "Level",
    "UserState",
    "UserStatus",
    "counting_strikes",
    "derive_status",
    "lift_after_void",
    "status_expires",
    "strikes_to_keep",
    "suspension_after_strike",
]


@dataclass(frozen=True, slots=True)
class UserState:
    """What the store records about one user (by hash), as the ladder needs it.

    ``strike_times`` holds the timestamps of the most recent non-voided strikes (at most
    ``ladder.suspend`` of them, ascending): enough to derive the level at any later time.
    """

    user_hash: str
    strike_times: tuple[float, ...] = ()
    reset_at: float | None = None
    suspended: bool = False
    suspended_until: float | None = None
    suspend_reason: str | None = None
    terms_version: str | None = None
    suspend_auto: bool = False  # the suspension was imposed by the ladder, not by an operator

    @property
    def is_new(self) -> bool:
        return self == UserState(self.user_hash)


@dataclass(frozen=True, slots=True)
class UserStatus:
    """A user's standing at one moment."""

    user_hash: str
    level: Level
    strikes: int  # counting strikes (inside the window, not voided, after reinstatement)
    until: float | None = None  # end of a suspension (epoch seconds); None = indefinite
    reason: str | None = None
    terms_version: str | None = None


def counting_strikes(state: UserState, ladder: LadderPolicy, now: float) -> tuple[float, ...]:
    """The strike times that count at ``now``: younger than the window, after reinstatement."""
    floor = now - ladder.window
    if state.reset_at is not None and state.reset_at > floor:
        floor = state.reset_at
    return tuple(t for t in state.strike_times if t > floor and t <= now)


def strikes_to_keep(ladder: LadderPolicy) -> int:
    """How many recent strike times a :class:`UserState` must hold to derive any level."""
    return ladder.suspend


def derive_status(state: UserState, ladder: LadderPolicy, now: float, strike_count: int | None = None) -> UserStatus:
    """The user's level at ``now``. ``strike_count`` is the exact count when known (the state
    holds only the latest ``ladder.suspend`` strikes); it changes only what is reported."""
    n = len(counting_strikes(state, ladder, now))
    reported = n if strike_count is None else strike_count
    if state.suspended and (state.suspended_until is None or now < state.suspended_until):
        return UserStatus(
            state.user_hash, Level.SUSPENDED, reported, state.suspended_until, state.suspend_reason, state.terms_version
        )
    if n >= ladder.throttle:
        level = Level.THROTTLED
    elif n >= ladder.warn:
        level = Level.WARNED
    else:
        level = Level.OK
    return UserStatus(state.user_hash, level, reported, None, None, state.terms_version)


def status_expires(state: UserState, ladder: LadderPolicy, now: float) -> float:
    """When the status derived at ``now`` may next change by the passing of time alone: the
    oldest counting strike leaving the window, or a suspension running out."""
    ends = [t + ladder.window for t in counting_strikes(state, ladder, now)[:1]]
    if state.suspended and state.suspended_until is not None and state.suspended_until > now:
        ends.append(state.suspended_until)
    future = [t for t in state.strike_times if t > now]  # a strike stamped ahead of this clock
    ends.extend(future[:1])
    return min(ends, default=float("inf"))


def suspension_after_strike(state: UserState, ladder: LadderPolicy, now: float) -> dict[str, object] | None:
    """The suspension to record after a strike (``state`` includes it), or None.

    A suspension already running at least as long is left alone, so an operator's longer
    suspension is never shortened by the ladder."""
    n = len(counting_strikes(state, ladder, now))
    if n < ladder.suspend:
        return None
    until = None if ladder.suspend_for is None else now + ladder.suspend_for
    running = state.suspended and (state.suspended_until is None or now < state.suspended_until)
    if running and (state.suspended_until is None or (until is not None and until <= state.suspended_until)):
        return None
    reason = f"{ladder.suspend} strikes within {format_duration(ladder.window)}"
    # extending an operator's running suspension keeps it theirs: a later void must not lift it
    auto = 1 if not running or state.suspend_auto else 0
    return {"suspended": 1, "suspended_until": until, "suspend_reason": reason, "suspend_auto": auto}


def lift_after_void(state: UserState, ladder: LadderPolicy, now: float) -> dict[str, object] | None:
    """Lift the ladder's own suspension when a voided strike takes the count under ``suspend``."""
    if state.suspended and state.suspend_auto and len(counting_strikes(state, ladder, now)) < ladder.suspend:
        return {"suspended": 0, "suspended_until": None, "suspend_reason": None, "suspend_auto": 0}
    return None

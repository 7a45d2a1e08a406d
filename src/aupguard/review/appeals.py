"""End-user appeals: filing (``Safeguards.appeal``), deciding (``Safeguards.decide_appeal``)
and the user's own view of their standing (``Safeguards.notices``).

The appeal text is end-user text: cleaned (no invisible characters, no control characters
but newlines and tabs), bounded by ``[review] appeal_max_chars``, and stored sealed with
AES-GCM under a key derived (HKDF) from the current hash key, bound to the appeal's id; it is
never logged, never put in an audit event or a webhook. Filing is rate-limited per user by
``[review] appeals``, counted in the store in the transaction that inserts, so every process
agrees. An appeal names a strike of the user, or a refused request of theirs (its strike, if
it earned one, is the one appealed); an id of anyone else's reads as unknown, exactly as an
id that does not exist. Upholding voids the strike and lifts a suspension the ladder imposed
for it, in the transaction that records the decision; denying keeps it. Either way the user
sees the decision and its reason in their notices (never who decided).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import limits
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..engine.user_actions import describe_change
from ..errors import AppealConflict, AppealError, AppealRateLimited, UnknownAppealTarget
from ..ids import new_id
from ..ladder import Level, derive_status, lift_after_void
from ..normalize import clean
from ..stores.appeal_records import AppealRecord
from ..stores.records import AuditEvent

if TYPE_CHECKING:
    from ..audit.writer import AuditLog
    from ..engine.user_actions import UserActions
    from ..identity import HashKey, UserHasher
    from ..policy.config import Policy
    from ..stores import SQLStore

__all__ = ["AppealDesk", "Notices", "clean_appeal_text"]

MAX_REASON = 2000


def clean_appeal_text(text: object, most: int) -> str:
    """The text as stored: cleaned, stripped, 1 to ``most`` characters; else AppealError."""
    if not isinstance(text, str):
        raise AppealError("the appeal's text must be a string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise AppealError("the appeal's text is not valid Unicode") from None
    kept = "".join(c for c in clean(text) if c in "\n\t" or (c >= " " and c != "\x7f"))
    kept = kept.strip()
    if not kept:
        raise AppealError("say why you appeal: the text is empty")
    if len(kept) > most:
        raise AppealError(f"the appeal's text is longer than {most} characters")
    return kept


def _aad(appeal_id: str) -> bytes:
    return f"aupguard-appeal|{appeal_id}".encode()


def _key(hash_key: HashKey) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"aupguard appeal text").derive(hash_key.secret)


@dataclass(frozen=True, slots=True)
class Notices:
    """What an end user may know of their own standing (``Safeguards.notices``)."""

    level: str
    suspended_until: float | None  # None while suspended: until reinstated
    suspension: str | None  # "automatic" (the ladder) or "manual" (an operator); None: not suspended
    strikes: list[dict[str, Any]]
    appeals: list[dict[str, Any]]
    appeals_left: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "suspended": self.level == Level.SUSPENDED.value,
            "suspended_until": self.suspended_until,
            "suspension": self.suspension,
            "strikes": self.strikes,
            "appeals": self.appeals,
            "appeals_left": self.appeals_left,
        }


class AppealDesk:
    """The appeals (a part of :class:`~aupguard.engine.safeguards.Safeguards`, which exposes
    ``appeal``, ``aappeal``, ``decide_appeal`` and ``notices``); no state of its own but the
    derived keys."""

    def __init__(
        self,
        policy: Policy,
        hasher: UserHasher,
        store: SQLStore,
        users: UserActions,
        audit: AuditLog,
        clock: Callable[[], float],
    ) -> None:
        self.policy = policy
        self.hasher = hasher
        self.store = store
        self.users = users
        self.audit = audit
        self._clock = clock
        self._keys: dict[str, bytes] = {}

    # -- policy --------------------------------------------------------------------------

    def _rate(self) -> tuple[int, float]:
        item = limits.parse(self.policy.review.appeals)
        return item.amount, float(item.get_expiry())

    def _seal_key(self, kid: str) -> bytes:
        key = self._keys.get(kid)
        if key is None:
            found = next((k for k in self.hasher.keyring.keys if k.kid == kid), None)
            if found is None:
                raise AppealError(f"the hash key {kid!r} that sealed this appeal is no longer in the key ring")
            key = self._keys[kid] = _key(found)
        return key

    # -- filing --------------------------------------------------------------------------

    def appeal(self, user_id: str, *, strike_id: str | None = None, request_id: str | None = None, text: str) -> str:
        """File the user's appeal against their strike or refused request; returns its id."""
        return self.file(user_id, strike_id=strike_id, request_id=request_id, text=text).id

    async def aappeal(
        self, user_id: str, *, strike_id: str | None = None, request_id: str | None = None, text: str
    ) -> str:
        return await asyncio.to_thread(lambda: self.appeal(user_id, strike_id=strike_id, request_id=request_id,
                                                           text=text))  # fmt: skip

    def file(self, user_id: str, *, strike_id: str | None, request_id: str | None, text: object) -> AppealRecord:
        if (strike_id is None) == (request_id is None):
            raise AppealError("appeal either a strike (strike_id) or a refused request (request_id)")
        for value in (strike_id, request_id):
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 200):
                raise AppealError("an id is a string of 1 to 200 characters")
        body = clean_appeal_text(text, self.policy.review.appeal_max_chars)
        user_hash = self.users._known_hash(user_id)
        strike_id, request_id = self._target(user_hash, strike_id, request_id)
        now = self._clock()
        most, window = self._rate()
        appeal_id = new_id()
        kid = self.hasher.keyring.current.kid
        nonce = os.urandom(12)
        sealed = AESGCM(self._seal_key(kid)).encrypt(nonce, body.encode("utf-8"), _aad(appeal_id))
        appeal = AppealRecord(appeal_id, now, user_hash, strike_id, request_id, kid, nonce, sealed)
        details = {"appeal_id": appeal_id, "strike_id": strike_id, "request_id": request_id}
        event = AuditEvent(new_id(), now, user_hash, "appeal_filed", "user", "appeal filed", details)
        refused = self.store.file_appeal(appeal, since=now - window, most=most, event=event)
        if refused == "duplicate":
            raise AppealConflict("this was appealed already; see your notices for the outcome")
        if refused is not None:
            wait = max(1, int(float(refused) + window - now + 0.999))
            raise AppealRateLimited(f"you can file {most} appeals per {_span(window)}; retry in {wait} s",
                                    retry_after=wait)  # fmt: skip
        return appeal

    def _target(self, user_hash: str, strike_id: str | None, request_id: str | None) -> tuple[str | None, str | None]:
        """The strike (and request) appealed, both the user's own; unknown otherwise."""
        if strike_id is not None:
            strike = self.store.find_strike(strike_id)
            if strike is None or strike.user_hash != user_hash:  # another user's strike reads as unknown
                raise UnknownAppealTarget("you have no strike with that id")
            if strike.voided_at is not None:
                raise AppealConflict("this strike was voided already: it no longer counts")
            return strike_id, None
        assert request_id is not None
        self.audit.flush()  # the refusal's record may still be queued
        records = self.store.find_decisions(request_id=request_id, limit=1)
        if not records or records[0].user_hash != user_hash:
            raise UnknownAppealTarget("you have no refused request with that id")
        items = [i for i in self.store.review_items(status=None, user_hash=user_hash, limit=1000)
                 if i.request_id == request_id and i.strike_id]  # fmt: skip
        if records[0].outcome == "allowed" and not items:
            raise AppealError("that request was not refused and earned no strike: there is nothing to appeal")
        return (items[0].strike_id if items else None), request_id

    # -- reading (reviewers) -------------------------------------------------------------

    def text(self, appeal: AppealRecord) -> str | None:
        """The appeal's text, for the review console and CLI; None if it cannot be opened."""
        try:
            plain = AESGCM(self._seal_key(appeal.kid)).decrypt(appeal.nonce, appeal.ciphertext, _aad(appeal.id))
        except (InvalidTag, AppealError):
            return None
        return plain.decode("utf-8")

    def get(self, appeal_id: str) -> AppealRecord:
        appeal = self.store.appeal(appeal_id) if isinstance(appeal_id, str) else None
        if appeal is None:
            raise UnknownAppealTarget("no appeal has that id")
        return appeal

    # -- deciding ------------------------------------------------------------------------

    def decide_appeal(self, appeal_id: str, *, upheld: bool, reason: str, actor: str = "system") -> AppealRecord:
        """Uphold (the strike is voided, and a suspension the ladder imposed for it lifted) or
        deny an open appeal; ``reason`` is shown to the user. Returns the decided appeal."""
        if not isinstance(upheld, bool):
            raise TypeError("upheld is True or False")
        reason = reason.strip() if isinstance(reason, str) else ""
        if not reason or len(reason) > MAX_REASON:
            raise AppealError(f"give the reason the user will read (1 to {MAX_REASON} characters)")
        appeal = self.get(appeal_id)
        if appeal.status != "open":
            raise AppealConflict(f"this appeal was {appeal.status} already")
        status = "upheld" if upheld else "denied"
        now = self._clock()
        strike = self.store.find_strike(appeal.strike_id) if upheld and appeal.strike_id else None
        void = strike.id if strike is not None and strike.voided_at is None else None
        details = {"appeal_id": appeal.id, "strike_id": appeal.strike_id, "request_id": appeal.request_id,
                   "outcome": status}  # fmt: skip
        ladder = self.policy.ladder
        describe = describe_change(ladder, now, "appeal_decided", actor, reason, details)
        after = self.store.decide_appeal(
            appeal, status=status, actor=actor, reason=reason, at=now, window_start=now - ladder.window,
            keep=self.users._keep, describe=describe, void=void,
            follow_up=(lambda state: lift_after_void(state, ladder, now)) if void else None,
        )  # fmt: skip
        if after is None:
            raise AppealConflict("this appeal was decided already")
        self.users.cache.put(after)
        self.users.changed(appeal.user_hash)
        return self.get(appeal.id)

    # -- the user's own view ---------------------------------------------------------------

    def notices(self, user_id: str) -> Notices:
        """The user's own view of their standing: strikes, suspension, appeals and outcomes."""
        user_hash = self.users._known_hash(user_id)
        now = self._clock()
        state = self.users.load_state(user_hash)
        status = derive_status(state, self.policy.ladder, now)
        floor = now - self.policy.ladder.window
        if state.reset_at is not None:
            floor = max(floor, state.reset_at)
        strikes = [
            {"id": s.id, "at": s.at, "category": s.category, "voided": s.voided_at is not None,
             "voided_at": s.voided_at, "counts": s.voided_at is None and s.at > floor and s.at <= now}
            for s in self.store.strikes(user_hash, limit=50)
        ]  # fmt: skip
        appeals: list[dict[str, Any]] = [
            {"id": a.id, "at": a.at, "strike_id": a.strike_id, "request_id": a.request_id, "status": a.status,
             "decided_at": a.decided_at, "reason": a.decision_reason}
            for a in self.store.user_appeals(user_hash, limit=50)
        ]  # fmt: skip
        most, window = self._rate()
        recent = sum(1 for a in self.store.user_appeals(user_hash, limit=most) if a.at > now - window)
        suspended = status.level is Level.SUSPENDED
        return Notices(
            status.level.value,
            status.until if suspended else None,
            ("automatic" if state.suspend_auto else "manual") if suspended else None,
            strikes,
            appeals,
            max(0, most - recent),
        )


def _span(seconds: float) -> str:
    from ..durations import format_duration

    return format_duration(seconds)

"""Every move a call makes after it is registered (the state machine is ``calls.MOVES``): bridged, ended,
failed as a phone system reports them, and closed when Millis reports the end of the session. Each move is
one conditional write: a duplicate, late or out-of-order report changes nothing."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from millis_sip.core.calls import ON_A_PHONE, CallRecord, CallStatus
from millis_sip.core.errors import StoreUnavailable, WebhookUnauthorized
from millis_sip.core.ports import (
    CallStore,
    Clock,
    InboundCallStore,
    Metrics,
    MillisReport,
    NoMetrics,
    Parallel,
    Secret,
    SessionOutcome,
    TransactionState,
    in_sequence,
    transaction_key,
    within_store_budget,
)
from millis_sip.core.registration import webhook_credential_hash

log = logging.getLogger(__name__)

MILLIS_FAILED_STATUSES = frozenset({"error"})


@dataclass(frozen=True, slots=True)
class SessionReport:
    """Millis' ``session_data_webhook``: the fields the bridge keeps (the rest is never stored)."""

    call_id: str
    session_id: str | None = None
    call_status: str | None = None
    duration: float | None = None  # seconds
    error_message: str | None = None

    @property
    def failed(self) -> bool:
        return (self.call_status or "").lower() in MILLIS_FAILED_STATUSES


class SessionReports:
    """Millis' session webhook: the call is over. Only the call's own credential (what its registration gave
    Millis) opens its record; replays and late deliveries change nothing. ``stack_secret`` opens only the
    calls registered before calls had credentials of their own."""

    def __init__(self, store: CallStore, *, clock: Clock, ttl_seconds: int, stack_secret: Secret | None) -> None:
        self._store = store
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_seconds)
        self._stack_secret = stack_secret

    def close(self, report: SessionReport, credential: str) -> SessionOutcome:
        """``WebhookUnauthorized`` unless ``credential`` is the call's (for a call registered before per-call
        credentials, or one not stored, the stack secret)."""
        now = self._clock.now()
        status = CallStatus.FAILED if report.failed else CallStatus.ENDED
        reason = f"millis_{report.call_status or 'ended'}"

        def close(credential_hash: str | None) -> SessionOutcome:
            return self._store.close_session(
                report.call_id,
                credential_hash=credential_hash,
                status=status,
                reason=reason[:128],
                now=now,
                expires_at=(now + self._ttl).replace(microsecond=0),
                report=MillisReport(
                    call_status=report.call_status,
                    duration_seconds=round(report.duration) if report.duration is not None else None,
                    session_id=report.session_id,
                ),
            )

        outcome = close(webhook_credential_hash(credential))
        if outcome is SessionOutcome.FOREIGN:
            raise WebhookUnauthorized("The X-Webhook-Secret is not this call's.")
        if outcome in (SessionOutcome.LEGACY, SessionOutcome.UNKNOWN):
            # No record holds a credential to check against (registered before per-call credentials, or not
            # stored: never, or deleted by TTL before a late report): only the stack secret is answered.
            if not self._is_stack_secret(credential):
                raise WebhookUnauthorized("The X-Webhook-Secret is not this call's.")
            if outcome is SessionOutcome.LEGACY:
                outcome = close(None)
        (log.warning if outcome is SessionOutcome.UNKNOWN else log.info)(
            "Millis session webhook",
            extra={"call_id": report.call_id, "outcome": outcome.value, "call_status": report.call_status},
        )
        if report.failed and report.error_message:
            log.warning("Millis reported an error for the session", extra={"error_message": report.error_message[:500]})
        return outcome

    def _is_stack_secret(self, credential: str) -> bool:
        if self._stack_secret is None:
            return False
        return hmac.compare_digest(credential.encode(), self._stack_secret().encode())


class PhoneCalls:
    """A phone call's moves after the router handed it to Millis, as the phone system reports them. The
    snapshot is the call as the phone system's own state carries it (Chime's TransactionAttributes), so a
    record that could not be written when the call started is written by the first move that succeeds.

    With a ``deadline`` (on the clock's monotonic time), each DynamoDB round trip gets the phone path's store
    budget and no more: a report that a caller waits on (a failed bridge, before the other region is tried)
    never spends the caller's time on a store that hangs."""

    def __init__(
        self,
        store: InboundCallStore,
        *,
        clock: Clock,
        ttl_seconds: int,
        metrics: Metrics | None = None,
        parallel: Parallel = in_sequence,
    ) -> None:
        self._store = store
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_seconds)
        self._metrics = metrics or NoMetrics()
        self._parallel = parallel

    def find(
        self, carrier: str, call_ref: str, attempt: int = 1, *, deadline: float | None = None
    ) -> CallRecord | None:
        """The call the router handed a carrier's call to (None: it never did, or the store cannot say)."""

        def read() -> CallRecord | None:
            mark = self._store.transaction_mark(transaction_key(carrier, call_ref, attempt))
            if mark is None or mark.state is not TransactionState.DONE or not mark.millis_call_id:
                return None
            return self._store.get(mark.millis_call_id)

        try:
            return self._within(deadline, read)
        except StoreUnavailable as exc:
            log.error("Cannot find the phone call's record", extra={"error": str(exc)})
            return None

    def bridged(self, snapshot: CallRecord, *, leg_id: str | None, deadline: float | None = None) -> datetime:
        """The agent answered. Returns when (the phone system keeps it to time the call)."""
        now = self._clock.now()
        moved = replace(snapshot, bridged_at=now, leg_b_call_id=leg_id, expires_at=self._expiry(now))
        self._move(moved, CallStatus.BRIDGED, (CallStatus.CLAIMED,), now, deadline=deadline)
        self._metrics.inbound("bridged")
        return now

    def ended(
        self, snapshot: CallRecord, *, who: str, bridged_at: datetime | None, deadline: float | None = None
    ) -> bool:
        """One side hung up (``who``: caller, agent, unknown); the duration counts from ``bridged_at``."""
        now = self._clock.now()
        if bridged_at is not None:
            duration, reason = max(0, round((now - bridged_at).total_seconds())), f"{who}_hung_up"
        else:
            duration, reason = 0, f"{who}_hung_up_before_bridge"
        ended = replace(snapshot, ended_at=now, duration_seconds=duration, reason=reason, expires_at=self._expiry(now))
        moved = self._move(ended, CallStatus.ENDED, ON_A_PHONE, now, deadline=deadline)
        if moved:
            self._metrics.inbound("ended")
        return moved

    def completed(self, snapshot: CallRecord, *, duration_seconds: int, deadline: float | None = None) -> bool:
        """The phone system reports the bridged call over after ``duration_seconds`` connected."""
        now = self._clock.now()
        ended = replace(
            snapshot,
            bridged_at=snapshot.bridged_at or now - timedelta(seconds=duration_seconds),
            ended_at=now,
            duration_seconds=duration_seconds,
            reason="call_completed",
            expires_at=self._expiry(now),
        )
        moved = self._move(ended, CallStatus.ENDED, ON_A_PHONE, now, deadline=deadline)
        if moved:
            self._metrics.inbound("ended")
        return moved

    def failed(
        self,
        snapshot: CallRecord,
        *,
        reason: str,
        allowed_from: tuple[CallStatus, ...] = (CallStatus.CLAIMED,),
        deadline: float | None = None,
    ) -> bool:
        """The call could not go on (the bridge failed, the phone system refused the answer)."""
        now = self._clock.now()
        failed = replace(snapshot, reason=reason, ended_at=now, expires_at=self._expiry(now))
        return self._move(failed, CallStatus.FAILED, allowed_from, now, deadline=deadline)

    def _within[T](self, deadline: float | None, call: Callable[[], T]) -> T:
        """``call()``, within the store's budget when there is a deadline (``StoreUnavailable`` past it)."""
        return call() if deadline is None else within_store_budget(self._parallel, self._clock, deadline, call)

    def _move(
        self,
        snapshot: CallRecord,
        to: CallStatus,
        allowed_from: tuple[CallStatus, ...],
        now: datetime,
        *,
        deadline: float | None = None,
    ) -> bool:
        try:
            moved = self._within(
                deadline, lambda: self._store.transition(snapshot, to, allowed_from=allowed_from, now=now)
            )
        except StoreUnavailable as exc:
            log.error(
                "Could not record the call's new status",
                extra={"millis_call_id": snapshot.call_id, "status": to.value, "error": str(exc)},
            )
            return False
        if not moved:
            log.info(
                "Status not changed: the call is already past it",
                extra={"millis_call_id": snapshot.call_id, "status": to.value},
            )
        return moved

    def _expiry(self, now: datetime) -> datetime:
        return (now + self._ttl).replace(microsecond=0)

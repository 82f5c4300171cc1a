"""The inbound-call router: the one decision every phone system's edge asks for when a call comes in.

Given the call (carrier, the carrier's id for it, caller, dialed number), it answers with a Millis call to
send it to, or a refusal with a reason the edge turns into a spoken message and a hang-up. In order:

1. **The same call asked again** (a retried invocation or webhook): the first answer, never a second Millis
   registration. The first asker owns the call through a leased marker in the store; a retry arriving while
   the owner still works waits for it, within the deadline.
2. **A pending registration** made over HTTP with a ``lookup_key`` equal to the caller's number, else the
   dialed number: claimed exactly once (a conditional write), so two callers never get one Millis session.
3. **The default agent** (``DEFAULT_AGENT_ID``): a fresh registration on the nearest region the edge can
   reach. Otherwise a refusal.

Where a call can go depends on the edge (``Placement``): Chime reaches a Millis region only through that
region's Voice Connector and only with a short user part; a carrier dials any SIP URI. A call the edge cannot
place is never handed to it. When a bridge fails, ``failover`` tries the other region once, for calls the
router registered itself (an HTTP registration cannot be re-made without its body).

If the store is down when the call arrives, the call still goes through: no claim, a fresh registration,
and the record travels with the phone system's own state (Chime's TransactionAttributes) until a later event
can write it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol

from millis_sip.core.calls import TOKEN, CallRecord, CallStatus
from millis_sip.core.errors import BridgeError, MillisError, StoreUnavailable, Unroutable
from millis_sip.core.ports import (
    MIN_ATTEMPT_SECONDS,
    Clock,
    InboundCallStore,
    Metrics,
    MillisGateway,
    NoMetrics,
    TransactionMark,
    TransactionState,
)
from millis_sip.core.regions import MillisRegion
from millis_sip.core.registration import SessionWebhook, attempts_text

log = logging.getLogger(__name__)

STORE_RESERVE_SECONDS = 0.5  # kept back from Millis for the DynamoDB write and the answer
POLL_SECONDS = 0.1  # while another invocation of the same call is still working
MARKER_LIFETIME = timedelta(days=1)  # how long a call's marker outlives its registration


def transaction_key(carrier: str, call_ref: str, attempt: int) -> str:
    """The store key of the marker that owns one attempt at one phone call."""
    return f"{carrier}-transaction#{call_ref}#{attempt}"


@dataclass(frozen=True, slots=True)
class InboundCall:
    """A phone call, as its edge read it off the wire."""

    carrier: str  # "chime"
    call_ref: str  # the carrier's id for the call (Chime: TransactionId)
    caller: str | None  # the caller's number (From)
    dialed: str | None  # the number dialed (To)
    context: Mapping[str, str] = field(default_factory=dict)  # the carrier's ids, put into Millis' metadata


class Placement[P](Protocol):
    """How an edge sends calls to Millis."""

    @property
    def unreachable(self) -> str:
        """The refusal reason when no Millis region can be reached from this edge."""
        ...

    def reachable(self, region: MillisRegion) -> bool: ...

    def place(self, record: CallRecord) -> P:
        """Where the edge sends this call (raises ``Unroutable`` when it cannot send it there)."""
        ...


@dataclass(frozen=True, slots=True)
class Routed[P]:
    record: CallRecord
    placement: P
    how: str  # "claimed", "registered", "replayed"


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    replayed: bool = False  # the same refusal as an earlier invocation's (not counted again)


class _Refusal(BridgeError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class CallRouter:
    def __init__(
        self,
        gateway: MillisGateway,
        store: InboundCallStore,
        *,
        clock: Clock,
        region_order: Sequence[MillisRegion],
        ttl_seconds: int,
        default_agent_id: str | None,
        webhook: SessionWebhook | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._gateway = gateway
        self._store = store
        self._clock = clock
        self._order = tuple(region_order)
        self._ttl = timedelta(seconds=ttl_seconds)
        self._default_agent_id = default_agent_id
        self._webhook = webhook
        self._metrics = metrics or NoMetrics()

    def route[P](
        self, call: InboundCall, *, deadline: float, placement: Placement[P], attempt: int = 1
    ) -> Routed[P] | Refused:
        """Decide where ``call`` goes; the answer is ready by ``deadline`` (on the clock's monotonic time)."""
        return self._route(call, deadline, placement, attempt, self._order)

    def failover[P](
        self, call: InboundCall, failed: CallRecord, *, attempt: int, deadline: float, placement: Placement[P]
    ) -> Routed[P] | Refused | None:
        """After a bridge to ``failed`` did not connect: one more registration on another region the edge can
        reach, when the router made the first one itself (an HTTP registration cannot be re-made without its
        body), this was the first attempt, and time allows. None when no failover applies."""
        if attempt != 1 or failed.source == "http":
            return None
        others = [r for r in self._order if r.value != failed.millis_region and placement.reachable(r)]
        if not others or deadline - self._clock.monotonic() <= STORE_RESERVE_SECONDS + MIN_ATTEMPT_SECONDS:
            return None
        log.info("Trying the other Millis region", extra={"regions": [r.value for r in others]})
        return self._route(call, deadline, placement, attempt + 1, others)

    # --- the decision ---------------------------------------------------------------------------------

    def _route[P](
        self,
        call: InboundCall,
        deadline: float,
        placement: Placement[P],
        attempt: int,
        regions: Sequence[MillisRegion],
    ) -> Routed[P] | Refused:
        key = transaction_key(call.carrier, call.call_ref, attempt)
        mark = self._own(key, deadline)
        if mark is not None and mark.state is TransactionState.DONE:
            log.info("Retried invocation: reusing the first answer", extra={"millis_call_id": mark.millis_call_id})
            self._metrics.inbound("retried")
            return self._replay(mark, placement)
        if mark is not None and mark.state is TransactionState.FAILED:
            return Refused(mark.reason or "failed", replayed=True)
        if mark is not None and mark.state is TransactionState.PENDING:
            return self._refuse("retry_in_progress")
        lock = key if mark is not None else None
        # DynamoDB just failed (after its retries): every further call would spend the caller's time too.
        # No claim; register, answer, and let the record ride with the phone system to a later event.
        store_up = mark is not None

        if attempt == 1 and store_up:
            claimed = self._claim(call, lock, placement)
            if claimed is not None:
                return claimed
        try:
            record = self._register(call, deadline, [r for r in regions if placement.reachable(r)], placement)
        except BridgeError as exc:
            self._fail_transaction(lock, exc.code)
            return self._refuse(exc.code)
        try:
            where = placement.place(record)
        except Unroutable as exc:
            log.error(
                "Millis' SIP URI cannot go the way this phone system sends calls",
                extra={"millis_call_id": record.call_id, "reason": exc.reason, "sip_uri": str(record.sip_uri)},
            )
            if store_up:
                failed = replace(record, status=CallStatus.FAILED, reason=exc.reason, ended_at=record.created_at)
                self._commit(failed, lock)
                self._fail_transaction(lock, exc.reason)
            return self._refuse(exc.reason)
        if store_up:
            self._commit(record, lock)
        else:
            log.error(
                "DynamoDB is unavailable: bridging without storing; a later event writes the record",
                extra={"millis_call_id": record.call_id},
            )
        return Routed(record, where, "registered")

    def _own(self, key: str, deadline: float) -> TransactionMark | None:
        """Take the call, or wait (bounded by the deadline) for the invocation that has it. None: the store
        is unavailable."""
        while True:
            now = self._clock.now()
            lease = max(deadline - self._clock.monotonic(), 0.0)
            try:
                mark = self._store.begin_transaction(
                    key, now=now, lease_seconds=lease, expires_at=now + self._ttl + MARKER_LIFETIME
                )
            except StoreUnavailable as exc:
                log.warning(
                    "Cannot record the phone call's transaction; going on without it", extra={"error": str(exc)}
                )
                return None
            if mark.state is not TransactionState.PENDING:
                return mark
            if deadline - self._clock.monotonic() < STORE_RESERVE_SECONDS + POLL_SECONDS:
                return mark  # the other invocation still has it and its lease is valid
            self._clock.sleep(POLL_SECONDS)

    def _replay[P](self, mark: TransactionMark, placement: Placement[P]) -> Routed[P] | Refused:
        try:
            record = self._store.get(mark.millis_call_id) if mark.millis_call_id else None
        except StoreUnavailable:
            record = None
        if record is None:
            return self._refuse("retry_without_record")
        try:
            return Routed(record, placement.place(record), "replayed")
        except Unroutable as exc:  # the first invocation found it unroutable and is recording that
            return Refused(exc.reason, replayed=True)

    def _claim[P](self, call: InboundCall, lock: str | None, placement: Placement[P]) -> Routed[P] | None:
        """Atomically take the newest pending HTTP registration for the caller's number, else the dialed one."""
        now = self._clock.now()
        keys = [k for k in dict.fromkeys((call.caller, call.dialed)) if k and TOKEN.match(k)]
        for lookup_key in keys:
            try:
                candidates = self._store.pending_for(lookup_key, now)
            except StoreUnavailable as exc:
                log.warning("Cannot look for pending registrations", extra={"error": str(exc)})
                return None
            for candidate in candidates:
                try:
                    where = placement.place(candidate)
                except Unroutable as exc:
                    log.warning(
                        "A pending registration cannot go the way this phone system sends calls; not claiming it",
                        extra={"millis_call_id": candidate.call_id, "reason": exc.reason},
                    )
                    continue
                claimed = replace(
                    candidate,
                    status=CallStatus.CLAIMED,
                    transaction_id=call.call_ref,
                    caller_number=call.caller,
                    dialed_number=call.dialed,
                )
                try:
                    won = self._store.commit_inbound(claimed, transaction_key=lock, claim=True, now=now)
                except StoreUnavailable as exc:
                    log.warning("Cannot claim a pending registration", extra={"error": str(exc)})
                    return None
                if won:
                    log.info("Claimed a pending registration", extra={"millis_call_id": claimed.call_id})
                    self._metrics.inbound("claimed")
                    return Routed(claimed, where, "claimed")
        return None

    def _register(
        self, call: InboundCall, deadline: float, regions: Sequence[MillisRegion], placement: Placement[Any]
    ) -> CallRecord:
        if self._default_agent_id is None:
            raise _Refusal("no_agent", "DEFAULT_AGENT_ID is not set: no agent for calls without a registration")
        if not regions:
            raise _Refusal(placement.unreachable, "no Millis region can be reached from this phone system")
        metadata = {"caller_number": call.caller, "dialed_number": call.dialed, **call.context}
        payload: dict[str, Any] = {
            "agent_id": self._default_agent_id,
            "metadata": {k: v for k, v in metadata.items() if v},
        }
        if self._webhook is not None:
            payload = self._webhook.attach(payload)
        budget = deadline - self._clock.monotonic() - STORE_RESERVE_SECONDS
        try:
            registration = self._gateway.register(payload, budget=budget, regions=regions)
        except MillisError as exc:
            log.error(
                "Millis could not register the phone call",
                extra={"error": exc.code, "attempts": attempts_text(exc.attempts)},
            )
            raise
        self._metrics.registered(
            registration.region.value,
            failed_over=registration.failed_over,
            latency_ms=registration.attempts[-1].elapsed_ms,
        )
        now = self._clock.now()
        return CallRecord(
            call_id=registration.call_id,
            sip_uri=registration.sip_uri,
            millis_region=registration.region.value,
            status=CallStatus.CLAIMED,
            created_at=now,
            expires_at=(now + self._ttl).replace(microsecond=0),
            # No lookup_key: carrier lookups find only registrations made over HTTP, never a phone call's.
            agent_id=self._default_agent_id,
            source=call.carrier,
            transaction_id=call.call_ref,
            caller_number=call.caller,
            dialed_number=call.dialed,
        )

    def _commit(self, record: CallRecord, lock: str | None) -> None:
        try:
            self._store.commit_inbound(record, transaction_key=lock, claim=False, now=self._clock.now())
        except BridgeError as exc:
            # The call goes on: the record rides with the phone system and a later event writes it.
            log.error(
                "Could not store the phone call's record; bridging anyway",
                extra={"millis_call_id": record.call_id, "error": str(exc)},
            )

    def _fail_transaction(self, lock: str | None, reason: str) -> None:
        if lock is None:
            return
        try:
            self._store.fail_transaction(lock, reason)
        except StoreUnavailable as exc:
            log.warning("Could not mark the phone call's transaction failed", extra={"error": str(exc)})

    def _refuse(self, reason: str) -> Refused:
        self._metrics.inbound_failure(reason)
        return Refused(reason)

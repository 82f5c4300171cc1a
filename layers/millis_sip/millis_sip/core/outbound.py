"""Outbound calls: the stack places a call from one of the user's numbers through the carrier that number is
with, and hands the person who answers to a Millis agent (docs/outbound.md).

Placing (``OutboundCalls.place``, the management API): the guards first, since an outbound route spends the
user's money (destinations allowed by prefix, ``from`` a number the user declared outbound-capable for that
carrier, hourly caps per ``from`` and for the stack, a cap on calls ringing at once), and nothing is sent
anywhere when one refuses. Then Millis registers the call (the nearest region, failover, the call's own webhook
credential), the record is stored ``queued`` (so a call the carrier accepts is always recorded: the answer
URL carries the call id), and the carrier is asked to place it. A carrier that refuses closes the record
``failed``.

Answering (``OutboundAnswers``, the phone path): when the person answers, the carrier requests the answer URL;
the call moves ``answered`` and is bridged to the registration's SIP URI, or, when a machine answered and
``machine_detection`` is ``hangup``, ends ``machine``. The registration is made when the call is placed, not
when it is answered, so the person hears the agent at once (docs/outbound.md, "When Millis is asked"). The
carrier's status callbacks move the call through ``ringing`` and close it (``no_answer``, ``busy``,
``canceled``, ``failed``); once bridged, the phone system's reports and Millis' session report close it as
they do an inbound call.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from millis_sip.core.calls import (
    NOT_ANSWERED,
    OUTBOUND_OPEN,
    OVER,
    CallRecord,
    CallStatus,
    Direction,
)
from millis_sip.core.errors import (
    CallNotCancelable,
    CallNotFound,
    CarrierError,
    CarrierNotConfigured,
    CarrierUnavailable,
    CredentialUnavailable,
    DestinationNotAllowed,
    FromNotAllowed,
    MachineDetectionUnavailable,
    MillisError,
    OutboundDisabled,
    OverOutboundCap,
    StoreUnavailable,
)
from millis_sip.core.keys import StackKeys
from millis_sip.core.numbers import NumberRoute
from millis_sip.core.ports import (
    Clock,
    Dialer,
    Metrics,
    NoMetrics,
    NumberRoutes,
    OutboundStore,
    Parallel,
    PlaceCall,
    in_sequence,
    within_store_budget,
)
from millis_sip.core.registration import MillisRegistrations, attempts_text

log = logging.getLogger(__name__)

CARRIER_RESERVE_SECONDS = 3.0  # of a request's budget, kept for the carrier's API after Millis
RING_SLOT_MARGIN_SECONDS = 60  # a slot outlives the ring timeout by this much (the carrier's queue, callbacks)
OUTBOUND_COUNTER = "outbound"  # the stack-wide hourly counter of outbound calls
ANSWER_PURPOSE = "outbound"  # what the answer and status URLs' tokens are for (core.keys.action_token)
MIN_RING_SECONDS, MAX_RING_SECONDS, DEFAULT_RING_SECONDS = 5, 120, 30


class MachineDetection(StrEnum):
    """What happens when a machine (voicemail) answers, where the carrier can tell."""

    OFF = "off"  # no detection: whoever answers is bridged at once (the fastest answer for a person)
    HANGUP = "hangup"  # a machine: hang up, the call ends ``machine``
    MESSAGE = "message"  # a machine: wait for the greeting to end, then bridge so the agent leaves a message


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """``POST /calls/outbound``'s body, checked for form by the HTTP edge."""

    to: str  # E.164
    from_: str  # E.164
    carrier: str
    agent_id: str | None = None
    agent_config: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    include_metadata_in_prompt: bool | None = None
    ring_timeout_seconds: int = DEFAULT_RING_SECONDS
    machine_detection: MachineDetection = MachineDetection.OFF


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """The toll-fraud guards (docs/outbound.md, "Guards")."""

    allowed_prefixes: tuple[str, ...] = ()  # e.g. ("+1", "+44"); empty: outbound calls are off
    calls_per_hour_per_number: int | None = None  # per ``from`` unless its route sets its own; None: no cap
    calls_per_hour_total: int | None = None  # every outbound call of the stack together
    max_ringing: int | None = None  # calls placed and not answered yet, at once

    def allows(self, to: str) -> bool:
        return any(to.startswith(prefix) for prefix in self.allowed_prefixes)


class OutboundUrls(Protocol):
    """Where a carrier sends the person's answer and the call's status (the HTTP edge knows the public URL)."""

    def answer_url(self, carrier: str, call_id: str, token: str) -> str: ...

    def status_url(self, carrier: str, call_id: str, token: str) -> str: ...


class OutboundCalls:
    """Placing and canceling outbound calls (the management API's use cases)."""

    def __init__(
        self,
        millis: MillisRegistrations,
        store: OutboundStore,
        numbers: NumberRoutes,
        dialers: Mapping[str, Dialer],
        *,
        policy: OutboundPolicy,
        clock: Clock,
        ttl_seconds: int,
        keys: StackKeys,
        metrics: Metrics | None = None,
        carriers: Sequence[str] = (),
        unconfigured: Mapping[str, str] | None = None,
    ) -> None:
        self._millis = millis
        self._store = store
        self._numbers = numbers
        self._dialers = dict(dialers)
        self._policy = policy
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_seconds)
        self._keys = keys
        self._metrics = metrics or NoMetrics()
        # The carriers a request may name, and for each unconfigured one what to configure.
        self._carriers = tuple(carriers) or tuple(self._dialers)
        self._unconfigured = dict(unconfigured or {})

    def place(
        self, request: OutboundRequest, *, budget: float, urls: OutboundUrls, webhook_url: str | None = None
    ) -> CallRecord:
        """Place ``request``; the record as stored (``queued``, with the carrier's call id when it could be
        written). ``urls``: where the carrier comes back to. Every refusal comes before anything is sent
        anywhere."""
        started = self._clock.monotonic()
        self._check(request)
        dialer = self._dialer(request.carrier)
        if request.machine_detection is not MachineDetection.OFF and not dialer.detects_machines:
            raise MachineDetectionUnavailable(
                f"{request.carrier} cannot tell a person from a machine: leave machine_detection off for it."
            )
        route = self._from_route(request)
        self._keys.ready()  # the tokens and counters need it: a failure to read it comes before any work
        now = self._clock.now()
        self._admit(request, route, now)
        # The call's own id before Millis gives one: its slot among the calls ringing at once is held under it
        # (before Millis is asked: a refused call spends nothing) and the record keeps it as its transaction.
        ref = uuid.uuid4().hex
        holds_slot = self._take_slot(ref, request, now)
        payload = self._payload(request, route)
        millis_budget = budget - CARRIER_RESERVE_SECONDS
        try:
            registration = self._millis.register(payload, budget=millis_budget, webhook_url=webhook_url)
        except MillisError as exc:
            log.error(
                "Millis could not register the outbound call",
                extra={"error": exc.code, "attempts": attempts_text(exc.attempts)},
            )
            self._free_slot(ref, holds_slot)
            raise
        now = self._clock.now()
        record = CallRecord(
            call_id=registration.call_id,
            sip_uri=registration.sip_uri,
            millis_region=registration.region.value,
            status=CallStatus.QUEUED,
            created_at=now,
            expires_at=(now + self._ttl).replace(microsecond=0),
            agent_id=payload.get("agent_id"),
            source=request.carrier,
            transaction_id=ref,
            caller_number=request.from_,
            dialed_number=request.to,
            webhook_hash=registration.webhook_hash,
            direction=Direction.OUTBOUND,
            carrier=request.carrier,
            machine_detection=request.machine_detection.value,
            ring_timeout_seconds=request.ring_timeout_seconds,
        )
        try:
            self._store.put_new(record)
        except StoreUnavailable:
            log.error(
                "Millis registered an outbound call that could not be stored; not placing it",
                extra={"millis_call_id": record.call_id},
            )
            self._free_slot(ref, holds_slot)
            raise
        token = self._keys.action_token(ANSWER_PURPOSE, request.carrier, record.call_id)
        place = PlaceCall(
            call_id=record.call_id,
            to=request.to,
            from_=request.from_,
            answer_url=urls.answer_url(request.carrier, record.call_id, token),
            status_url=urls.status_url(request.carrier, record.call_id, token),
            ring_timeout_seconds=request.ring_timeout_seconds,
            machine_detection=request.machine_detection.value,
        )
        remaining = budget - (self._clock.monotonic() - started)
        try:
            placed = dialer.place(place, budget=remaining)
        except CredentialUnavailable as exc:  # nothing was sent: the secret could not be read
            log.error(
                "The carrier's credential could not be read; the outbound call was not placed",
                extra={"millis_call_id": record.call_id, "carrier": request.carrier, "error": exc.code},
            )
            self._close(record, CallStatus.FAILED, exc.code)
            self._free_slot(ref, holds_slot)
            raise
        except CarrierError as exc:
            maybe = isinstance(exc, CarrierUnavailable) and exc.maybe_placed
            log.error(
                "The carrier did not place the outbound call",
                extra={
                    "millis_call_id": record.call_id,
                    "carrier": request.carrier,
                    "error": exc.code,
                    "carrier_status": exc.carrier_status,
                    "carrier_code": exc.carrier_code,
                    "maybe_placed": maybe,
                },
            )
            # A call that may ring after all stays queued: its answer URL still finds it, and its status
            # callbacks close it. Otherwise it is over: the Millis registration goes unused.
            if not maybe:
                self._close(record, CallStatus.FAILED, f"carrier_{exc.code.removeprefix('carrier_')}")
                self._free_slot(ref, holds_slot)
            self._metrics.inbound_failure(exc.code)
            raise
        if placed.carrier_call_id is not None:
            record = replace(record, carrier_call_id=placed.carrier_call_id)
            try:
                self._store.note_carrier_call(record.call_id, placed.carrier_call_id)
            except StoreUnavailable as exc:  # the callbacks carry the call id: they find the record anyway
                log.warning("Could not store the carrier's call id", extra={"error": str(exc)})
        log.info(
            "Outbound call placed",
            extra={
                "call_id": record.call_id,
                "carrier": request.carrier,
                "carrier_call_id": placed.carrier_call_id,
                "millis_region": record.millis_region,
                "attempts": attempts_text(registration.attempts),
            },
        )
        self._metrics.inbound("outbound_placed")
        return record

    def cancel(self, call_id: str, *, budget: float) -> CallRecord:
        """Hang up an outbound call that has not been answered yet; the record, ``canceled``.

        The record is closed first, then the carrier is asked to hang up: the carrier's own report of the hang-up
        then finds the call canceled (it cannot close it ``no_answer`` first), and a call that rings after all is
        hung up at its answer. A cancel the carrier did not take (its error is raised) is sent again by the same
        request: a call already ``canceled`` is answered as canceled, and the carrier asked once more."""
        record = self._store.get(call_id)
        if record is None:
            raise CallNotFound(f"No call {call_id}.")
        if record.direction is not Direction.OUTBOUND or record.status not in (*NOT_ANSWERED, CallStatus.CANCELED):
            raise CallNotCancelable(
                f"Call {call_id} is {record.status.value}: only an outbound call that is queued or ringing can be "
                "canceled."
            )
        dialer = self._dialer(record.carrier or "")
        if record.status is not CallStatus.CANCELED:
            now = self._clock.now()
            canceled = replace(record, status=CallStatus.CANCELED, reason="canceled_by_api", ended_at=now)
            if not self._store.transition(
                replace(canceled, expires_at=self._expiry(now)),
                CallStatus.CANCELED,
                allowed_from=NOT_ANSWERED,
                now=now,
            ):
                current = self._store.get(call_id) or record
                if current.status is not CallStatus.CANCELED:
                    raise CallNotCancelable(
                        f"Call {call_id} is {current.status.value} now: it can no longer be canceled."
                    )
                canceled = current
            self._free_slot(record.transaction_id or call_id, True)
            log.info("Outbound call canceled", extra={"call_id": call_id, "carrier": record.carrier})
            record = canceled
        carrier_call_id = record.carrier_call_id or (self._store.get(call_id) or record).carrier_call_id
        if carrier_call_id:
            dialer.cancel(carrier_call_id, budget=budget)
        return record

    # --- the guards -------------------------------------------------------------------------------------

    def _dialer(self, carrier: str) -> Dialer:
        dialer = self._dialers.get(carrier)
        if dialer is not None:
            return dialer
        if carrier in self._unconfigured:
            raise CarrierNotConfigured(self._unconfigured[carrier])
        raise CarrierNotConfigured(f"{carrier} cannot place calls; use one of {', '.join(self._carriers)}.")

    def _check(self, request: OutboundRequest) -> None:
        if not self._policy.allowed_prefixes:
            raise OutboundDisabled(
                "Outbound calls are off: allow destinations with the OutboundAllowedPrefixes parameter "
                "(OUTBOUND_ALLOWED_PREFIXES), e.g. +1,+44."
            )
        if not self._policy.allows(request.to):
            raise DestinationNotAllowed(
                f"{request.to[:3]}... is not an allowed destination: calls may go only to numbers starting with "
                f"{', '.join(self._policy.allowed_prefixes)} (OUTBOUND_ALLOWED_PREFIXES)."
            )

    def _from_route(self, request: OutboundRequest) -> NumberRoute:
        route = self._numbers.get(request.from_)
        if route is None or request.carrier not in route.outbound_carriers:
            raise FromNotAllowed(
                f"from is not a number declared for outbound calls through {request.carrier}: set "
                f'"outbound_carriers": ["{request.carrier}"] on its route (PUT /numbers/{{number}}).'
            )
        return route

    def _admit(self, request: OutboundRequest, route: NumberRoute, now: datetime) -> None:
        hour = now.replace(minute=0, second=0, microsecond=0)
        expires, stamp = hour + timedelta(hours=2), f"{hour:%Y-%m-%dT%H}"
        retry_after = max(1, int((hour + timedelta(hours=1) - now).total_seconds()))
        per_number = route.max_outbound_calls_per_hour or self._policy.calls_per_hour_per_number
        counts: list[tuple[str, int, str]] = []
        if per_number is not None:
            key = self._keys.lookup_index(request.from_)  # no number in clear in the key
            counts.append((f"outbound-per-hour#{key}#{stamp}", per_number, "this from number's"))
        if self._policy.calls_per_hour_total is not None:
            counts.append(
                (f"outbound-per-hour#{OUTBOUND_COUNTER}#{stamp}", self._policy.calls_per_hour_total, "the stack's")
            )
        for key, limit, whose in counts:
            if not self._store.count_call(key, limit=limit, expires_at=expires):
                self._metrics.inbound_failure("over_outbound_cap")
                raise OverOutboundCap(
                    f"{whose.capitalize()} hourly cap of {limit} outbound calls is reached.", retry_after=retry_after
                )

    def _payload(self, request: OutboundRequest, route: NumberRoute) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "agent_id": request.agent_id or route.agent_id,
            "agent_config": dict(request.agent_config) if request.agent_config is not None else None,
            "include_metadata_in_prompt": request.include_metadata_in_prompt,
        }
        if request.agent_id is None and request.agent_config is None and route.agent_config is not None:
            fields["agent_config"] = dict(route.agent_config)
        metadata = {
            **(request.metadata or {}),
            "direction": Direction.OUTBOUND.value,
            "caller_number": request.from_,
            "dialed_number": request.to,
            "carrier": request.carrier,
        }
        fields["metadata"] = metadata
        return {name: value for name, value in fields.items() if value is not None}

    def _close(self, record: CallRecord, status: CallStatus, reason: str) -> None:
        now = self._clock.now()
        closed = replace(record, reason=reason, ended_at=now, expires_at=self._expiry(now))
        try:
            self._store.transition(closed, status, allowed_from=OUTBOUND_OPEN, now=now)
        except StoreUnavailable as exc:
            log.error("Could not close the outbound call", extra={"millis_call_id": record.call_id, "error": str(exc)})

    def _take_slot(self, ref: str, request: OutboundRequest, now: datetime) -> bool:
        limit = self._policy.max_ringing
        if limit is None:
            return False
        until = now + timedelta(seconds=request.ring_timeout_seconds + RING_SLOT_MARGIN_SECONDS)
        if not self._store.take_ringing_slot(ref, limit=limit, until=until, now=now):
            self._metrics.inbound_failure("over_outbound_cap")
            raise OverOutboundCap(f"{limit} outbound calls are ringing already (OUTBOUND_MAX_RINGING).", retry_after=5)
        return True

    def _free_slot(self, ref: str, held: bool) -> None:
        if not held:
            return
        try:
            self._store.free_ringing_slot(ref)
        except StoreUnavailable as exc:  # it frees itself at its time
            log.warning("Could not free the ringing slot", extra={"error": str(exc)})

    def _expiry(self, now: datetime) -> datetime:
        return (now + self._ttl).replace(microsecond=0)


# --- the phone path: the person answers, the carrier reports --------------------------------------------


class OutboundStatus(StrEnum):
    """A carrier's report of an outbound call, in the stack's words (each carrier edge maps its own)."""

    RINGING = "ringing"
    ANSWERED = "answered"  # the person picked up (the answer URL usually says so first)
    COMPLETED = "completed"  # over after being answered
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    CANCELED = "canceled"
    FAILED = "failed"
    MACHINE = "machine"  # the carrier's detection: a machine answered (with its async report)
    OTHER = "other"  # queued, initiated, ...: nothing to record


@dataclass(frozen=True, slots=True)
class Bridge:
    """Bridge the person to this registration's SIP URI (the edge renders the dial)."""

    record: CallRecord


@dataclass(frozen=True, slots=True)
class HangUp:
    """End the call without an agent (``reason`` for the log)."""

    reason: str
    speak: bool = False  # say the failure message first (the person was expecting someone)


type AnswerDecision = Bridge | HangUp

MACHINE_ANSWERS = frozenset(
    {"machine", "machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}
)


def is_machine(answered_by: str | None) -> bool:
    return (answered_by or "").lower() in MACHINE_ANSWERS


_CLOSING: dict[OutboundStatus, tuple[CallStatus, tuple[CallStatus, ...]]] = {
    OutboundStatus.NO_ANSWER: (CallStatus.NO_ANSWER, NOT_ANSWERED),
    OutboundStatus.BUSY: (CallStatus.BUSY, NOT_ANSWERED),
    OutboundStatus.CANCELED: (CallStatus.CANCELED, NOT_ANSWERED),
    OutboundStatus.FAILED: (CallStatus.FAILED, OUTBOUND_OPEN),
    OutboundStatus.MACHINE: (CallStatus.MACHINE, OUTBOUND_OPEN),
}


@dataclass
class OutboundAnswers:
    """What the carrier edges ask when an outbound call is answered or reported (InboundFunction)."""

    store: OutboundStore
    clock: Clock
    ttl_seconds: int
    metrics: Metrics = field(default_factory=NoMetrics)
    parallel: Parallel = in_sequence

    def find(self, call_id: str, carrier: str, *, deadline: float) -> CallRecord | None:
        """The outbound call ``call_id`` placed through ``carrier`` (None: unknown, another carrier's, or the
        store cannot say)."""
        try:
            record = within_store_budget(self.parallel, self.clock, deadline, lambda: self.store.get(call_id))
        except StoreUnavailable as exc:
            log.error("Cannot read the outbound call's record", extra={"error": str(exc)})
            return None
        if record is None or record.direction is not Direction.OUTBOUND or record.carrier != carrier:
            return None
        return record

    def answered(
        self,
        record: CallRecord,
        *,
        carrier_call_id: str | None,
        answered_by: str | None,
        deadline: float,
        leg_id: str | None = None,
    ) -> AnswerDecision:
        """The person (or a machine) answered: bridge, or hang up. ``leg_id``: the answered call's own id where
        the carrier named the call otherwise until it was answered (Plivo's CallUUID after its request_uuid); it
        becomes the record's ``carrier_call_id``, the id its transfers take."""
        if record.status in OVER or record.status in (CallStatus.BRIDGED,):
            return HangUp(f"already_{record.status.value}")
        now = self.clock.now()
        machine = is_machine(answered_by)
        if machine and record.machine_detection == MachineDetection.HANGUP:
            self._move(
                replace(record, reason="machine_answered", answered_by=answered_by, ended_at=now),
                CallStatus.MACHINE,
                OUTBOUND_OPEN,
                now,
                deadline,
            )
            self._free_slot(record, deadline)
            self.metrics.inbound("outbound_machine")
            return HangUp("machine_answered")
        if record.status is CallStatus.ANSWERED:  # asked again (a retried webhook, a detection result): same answer
            said = (answered_by or "").lower() or None
            if said and said != record.answered_by:  # the detection's result came after the answer (Telnyx)
                record = replace(record, answered_by=said)
                self._noted(lambda: self.store.note_answered_by(record.call_id, said), deadline)
            return Bridge(record)
        answered = replace(
            record,
            status=CallStatus.ANSWERED,
            answered_at=now,
            answered_by=(answered_by or "").lower() or None,
            carrier_call_id=leg_id or record.carrier_call_id or carrier_call_id,
        )
        moved = self._move(answered, CallStatus.ANSWERED, NOT_ANSWERED, now, deadline)
        self._free_slot(record, deadline)
        if not moved and record.status not in NOT_ANSWERED:
            return HangUp(f"already_{record.status.value}")
        log.info(
            "Outbound call answered",
            extra={
                "millis_call_id": record.call_id,
                "answered_by": answered.answered_by,
                "registration_age_seconds": round((now - record.created_at).total_seconds(), 1),
            },
        )
        self.metrics.inbound("outbound_answered")
        return Bridge(answered)

    def reported(
        self,
        record: CallRecord,
        status: OutboundStatus,
        *,
        carrier_call_id: str | None,
        reason: str | None = None,
        duration_seconds: int | None = None,
        answered_by: str | None = None,
        deadline: float,
    ) -> bool:
        """A status callback; True when it moved the call."""
        now = self.clock.now()
        snapshot = replace(record, carrier_call_id=record.carrier_call_id or carrier_call_id)
        if status is OutboundStatus.MACHINE and record.machine_detection != MachineDetection.HANGUP:
            # A machine, and the call goes on (the agent leaves a message): note who answered, close nothing.
            status, answered_by = OutboundStatus.OTHER, answered_by or "machine"
        if status is OutboundStatus.OTHER:  # nothing to record but the carrier's id and who answered, when new
            said = (answered_by or "").lower() or None
            if said and record.status in (CallStatus.ANSWERED, CallStatus.BRIDGED) and record.answered_by != said:
                self._noted(lambda: self.store.note_answered_by(record.call_id, said), deadline)
            if carrier_call_id and not record.carrier_call_id:
                self._note(record.call_id, carrier_call_id, deadline)
            return False
        if status is OutboundStatus.RINGING:
            return self._move(
                replace(snapshot, ringing_at=now), CallStatus.RINGING, (CallStatus.QUEUED,), now, deadline
            )
        if status is OutboundStatus.COMPLETED:
            if record.status in NOT_ANSWERED:  # hung up before the answer URL was asked: nobody reached Millis
                status = OutboundStatus.NO_ANSWER if not duration_seconds else OutboundStatus.FAILED
                reason = reason or "completed_before_answer"
            else:
                moved = self._move(
                    replace(
                        snapshot,
                        ended_at=now,
                        duration_seconds=duration_seconds or 0,
                        reason=reason or "call_completed",
                    ),
                    CallStatus.ENDED,
                    (CallStatus.ANSWERED, CallStatus.BRIDGED),
                    now,
                    deadline,
                )
                return moved
        closing = _CLOSING.get(status)
        if closing is None:
            return False
        to, allowed = closing
        moved = self._move(
            replace(
                snapshot,
                ended_at=now,
                reason=reason or to.value,
                answered_by=(answered_by or "").lower() or snapshot.answered_by,
            ),
            to,
            allowed,
            now,
            deadline,
        )
        self._free_slot(record, deadline)
        if moved:
            self.metrics.inbound(f"outbound_{to.value}")
        return moved

    def dialed(
        self, record: CallRecord, *, connected: bool, duration_seconds: int | None, status: str, deadline: float
    ) -> bool:
        """How the leg to Millis went (the answer's dial reports it when it ends): connected for
        ``duration_seconds``, the call was bridged and is now over; else it failed (the person hears the failure
        message). A carrier whose dial report names no duration (None) closes the call with its final status
        callback: the call is only marked bridged here. True when it moved the call."""
        now = self.clock.now()
        if not connected:
            return self._move(
                replace(record, reason=f"millis_leg_{status or 'failed'}"[:128], ended_at=now),
                CallStatus.FAILED,
                (CallStatus.ANSWERED,),
                now,
                deadline,
            )
        if duration_seconds is None:
            bridged = replace(record, bridged_at=record.answered_at or now)
            return self._move(bridged, CallStatus.BRIDGED, (CallStatus.ANSWERED,), now, deadline)
        bridged_at = now - timedelta(seconds=duration_seconds)
        if record.answered_at is not None:  # never before the answer (a carrier's durations are whole seconds)
            bridged_at = max(bridged_at, record.answered_at)
        bridged = replace(record, bridged_at=bridged_at)
        self._move(bridged, CallStatus.BRIDGED, (CallStatus.ANSWERED,), now, deadline)
        ended = replace(bridged, ended_at=now, duration_seconds=duration_seconds, reason="call_completed")
        moved = self._move(ended, CallStatus.ENDED, (CallStatus.BRIDGED, CallStatus.ANSWERED), now, deadline)
        if moved:
            self.metrics.inbound("outbound_ended")
        return moved

    def _move(
        self, snapshot: CallRecord, to: CallStatus, allowed: tuple[CallStatus, ...], now: datetime, deadline: float
    ) -> bool:
        snapshot = replace(snapshot, expires_at=(now + timedelta(seconds=self.ttl_seconds)).replace(microsecond=0))
        try:
            return within_store_budget(
                self.parallel,
                self.clock,
                deadline,
                lambda: self.store.transition(snapshot, to, allowed_from=allowed, now=now),
            )
        except StoreUnavailable as exc:
            log.error(
                "Could not record the outbound call's new status",
                extra={"millis_call_id": snapshot.call_id, "status": to.value, "error": str(exc)},
            )
            return False

    def _note(self, call_id: str, carrier_call_id: str, deadline: float) -> None:
        self._noted(lambda: self.store.note_carrier_call(call_id, carrier_call_id), deadline)

    def _noted(self, write: Callable[[], None], deadline: float) -> None:
        """A note on the record (the carrier's id, who answered): worth a try, never worth failing a call for."""
        try:
            within_store_budget(self.parallel, self.clock, deadline, write)
        except StoreUnavailable as exc:  # a later callback may bring it again
            log.warning("Could not note the outbound call's detail", extra={"error": str(exc)})

    def _free_slot(self, record: CallRecord, deadline: float) -> None:
        ref = record.transaction_id or record.call_id
        try:
            within_store_budget(self.parallel, self.clock, deadline, lambda: self.store.free_ringing_slot(ref))
        except StoreUnavailable as exc:  # it frees itself at its time
            log.warning("Could not free the ringing slot", extra={"error": str(exc)})

"""The inbound-call router: the one decision every phone system's edge asks for when a call comes in
(docs/router.md).

Given the call (carrier, the carrier's id for it, caller, dialed number, what the carrier says about the
caller), it answers with a Millis call to send it to, a refusal with a reason the edge turns into a spoken
message and a hang-up, or a challenge (ask the caller for a PIN, then ask again). In order:

1. **The same call asked again** (a retried invocation or webhook): the first answer, never a second Millis
   registration. The call transaction (``core.transaction``) owns the call through a leased marker in the
   store; a retry arriving while the owner still works waits for it, within the deadline. The same call id
   asked for other numbers is a conflict, and a call that has ended is never answered again (a replayed
   request): both are refused.
2. **A pending registration** made over HTTP for the caller's number, claimed only when the caller is verified
   as the registration asks (``CallerVerification``: the carrier's attestation, a PIN, or caller ID trusted by
   explicit choice); else one made for the dialed number (``dialed_number``: one of your numbers, no proof).
   A registration is about one side of the call only: a call *to* a number never takes a registration made
   for a caller *from* it. Claimed exactly once, with a conditional write; each PIN attempt is counted before
   its digits are compared (``core.pins``).
3. **The dialed number's route**: a fresh registration with that route's agent and metadata.
4. **The default agent** (``DEFAULT_AGENT_ID``). Otherwise a refusal. Fresh registrations count against the
   hourly caps (``core.caps``).

Every registration the router makes carries, in ``metadata``, the caller and dialed numbers, the carrier and
its call id, and the route's own metadata; what the caller wrote (its X- SIP headers) goes under a key of its
own, ``caller_supplied``. Numbers are E.164 or absent (``core.phone``): the edges read them that way. The
reads (pending registrations for both numbers, the number's route) do not depend on the transaction's ownership
write: they run beside it, in one round trip (``Parallel``).

Where a call can go depends on the edge (``Placement``): Chime reaches a Millis region only through that
region's Voice Connector and only with a short user part; a carrier dials any SIP URI. A call the edge cannot
place is never handed to it. When a bridge fails, ``failover`` tries the other region once, for calls the
router registered itself (an HTTP registration cannot be re-made without its body).

If the store is down when the call arrives, the call still goes through: no claim, a fresh registration, and
the record travels with the phone system's own state (Chime's TransactionAttributes) until a later event can
write it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol

from millis_sip.core.calls import (
    E164,
    MAX_PIN_FAILURES,
    PIN_DIGITS,
    CallRecord,
    CallSource,
    CallStatus,
)
from millis_sip.core.caps import HourlyCaps
from millis_sip.core.errors import BridgeError, LeaseLost, MillisError, StoreUnavailable, Unroutable
from millis_sip.core.keys import StackKeys
from millis_sip.core.numbers import CachedNumberRoutes, NumberRoute
from millis_sip.core.pins import PinCheck, Proof
from millis_sip.core.ports import (
    MIN_ATTEMPT_SECONDS,
    Clock,
    InboundCallStore,
    Metrics,
    NoMetrics,
    NumberRoutes,
    Parallel,
    in_sequence,
)
from millis_sip.core.regions import MillisRegion
from millis_sip.core.registration import MillisRegistrations, attempts_text
from millis_sip.core.sip import SipUri, header_variables
from millis_sip.core.transaction import (
    STORE_RESERVE_SECONDS,
    CallTransaction,
    Opened,
    PinPrompt,
    Transactions,
)

log = logging.getLogger(__name__)

MAX_PIN_TRIES = 3  # PINs one call may key in before the router goes on without the registration

NO_AGENT = "no_agent"  # no number route and no default agent: the call is not for this stack
OVER_HOURLY_CAP = "over_hourly_cap"  # the number's (or the stack's) calls started as many sessions as allowed
CALL_CONFLICT = "call_conflict"  # the call id was first asked for other numbers: another call reusing the id
CALL_ENDED = "call_ended"  # the call this id was answered for is over: a phone system never asks again
CALLER_SUPPLIED = "caller_supplied"  # the metadata key of what the caller wrote (X- SIP headers)
# Refusals a retry may cure (the phone system may try another route); the others will not change by retrying.
TRANSIENT_REFUSALS = frozenset(
    {"millis_unavailable", "millis_key_unavailable", "retry_in_progress", "retry_without_record"}
)


@dataclass(frozen=True, slots=True)
class InboundCall:
    """A phone call, as its edge read it off the wire."""

    carrier: str  # "chime", "twilio", "sip", ...
    call_ref: str  # the carrier's id for the call (Chime TransactionId, Twilio CallSid, the SIP Call-ID)
    caller: str | None  # the caller's number (From), E.164 (core.phone.canonical_number); None: no number
    dialed: str | None  # the number dialed (To), E.164; None: no number
    attestation: str | None = None  # "A", "B" or "C" when the carrier verified the caller's number
    pin: str | None = None  # what the caller keyed in after a Challenge ("": nothing)
    can_challenge: bool = False  # the edge can ask the caller for a PIN
    context: Mapping[str, str] = field(default_factory=dict)  # the carrier's other ids, for Millis' metadata
    sip_headers: Mapping[str, str] = field(default_factory=dict)  # the caller's X- headers: the caller wrote them
    # The phone system asks again for the same call after a transient refusal (a SIP server told 503 with
    # Retry-After), so such a refusal is not kept: the next ask registers afresh. Otherwise a second ask is a
    # redelivery of one whose answer was lost, and gets the same refusal without a second Millis call.
    retries_refusals: bool = False
    # The caller's leg where the carrier's call control names it apart from call_ref (Vonage: the leg's uuid,
    # call_ref being the conversation): what a transfer moves.
    leg_id: str | None = None


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


class AnySipUri:
    """The placement of an edge that dials any SIP URI (carriers, SIP servers): every region, as Millis gave it."""

    unreachable = "no_region"

    def reachable(self, region: MillisRegion) -> bool:
        return True

    def place(self, record: CallRecord) -> SipUri:
        return record.sip_uri


ANY_SIP_URI = AnySipUri()


@dataclass(frozen=True, slots=True)
class Routed[P]:
    record: CallRecord
    placement: P
    how: str  # "claimed", "number_route", "default_agent", "replayed"


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    replayed: bool = False  # the same refusal as an earlier invocation's (not counted again)

    @property
    def transient(self) -> bool:
        return self.reason in TRANSIENT_REFUSALS


@dataclass(frozen=True, slots=True)
class Challenge:
    """Ask the caller for the PIN of the registration that waits for their number, then route again with the
    digits in ``InboundCall.pin``."""

    digits: int = PIN_DIGITS
    retry: bool = False  # the last PIN was wrong


type Decision[P] = Routed[P] | Refused | Challenge


class _Refusal(BridgeError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class _Lookups:
    """What the store said about the call before anything was decided (beside its transaction)."""

    candidates: list[tuple[str, list[CallRecord]]]  # (lookup key, its pending registrations, newest first)
    route: NumberRoute | None


@dataclass(frozen=True, slots=True)
class _Agent:
    """Who takes a fresh registration (the number's route, or the default agent) and its hourly caps."""

    fields: dict[str, Any]  # what Millis is told of the agent: agent_id and/or agent_config, ...
    how: str  # "number_route" or "default_agent"
    metadata: Mapping[str, Any]  # the route's own
    cap: int | None  # calls per hour to the dialed number
    total_cap: int | None  # the stack's calls per hour

    @property
    def capped(self) -> bool:
        return self.cap is not None or self.total_cap is not None


class CallRouter:
    def __init__(
        self,
        millis: MillisRegistrations,
        store: InboundCallStore,
        numbers: NumberRoutes | None,
        *,
        clock: Clock,
        region_order: Sequence[MillisRegion],
        ttl_seconds: int,
        default_agent_id: str | None,
        default_agent_calls_per_hour: int | None = None,
        default_agent_calls_per_hour_total: int | None = None,
        keys: StackKeys | None = None,
        metrics: Metrics | None = None,
        parallel: Parallel = in_sequence,
    ) -> None:
        self._millis = millis
        self._store = store
        self._numbers = numbers
        self._clock = clock
        self._order = tuple(region_order)
        self._ttl = timedelta(seconds=ttl_seconds)
        self._default_agent_id = default_agent_id
        self._default_cap = default_agent_calls_per_hour
        self._default_total_cap = default_agent_calls_per_hour_total
        self._metrics = metrics or NoMetrics()
        keys = keys or StackKeys(None)
        self._transactions = Transactions(store, clock, self._ttl, self._metrics, parallel)
        self._caps = HourlyCaps(store, keys=keys, clock=clock, parallel=parallel)
        self._pins = PinCheck(store, keys=keys, metrics=self._metrics)

    def route[P](self, call: InboundCall, *, deadline: float, placement: Placement[P], attempt: int = 1) -> Decision[P]:
        """Decide where ``call`` goes; the answer is ready by ``deadline`` (on the clock's monotonic time)."""
        return self._route(call, deadline, placement, attempt, self._order)

    def failover[P](
        self, call: InboundCall, failed: CallRecord, *, attempt: int, deadline: float, placement: Placement[P]
    ) -> Decision[P] | None:
        """After a bridge to ``failed`` did not connect: one more registration on another region the edge can
        reach, when the router made the first one itself (an HTTP registration cannot be re-made without its
        body), this was the first attempt, and time allows. None when no failover applies."""
        if attempt != 1 or failed.source == CallSource.HTTP:
            return None
        others = [r for r in self._order if r.value != failed.millis_region and placement.reachable(r)]
        if not others or deadline - self._clock.monotonic() <= STORE_RESERVE_SECONDS + MIN_ATTEMPT_SECONDS:
            return None
        log.info("Trying the other Millis region", extra={"regions": [r.value for r in others]})
        return self._route(replace(call, pin=None), deadline, placement, attempt + 1, others)

    # --- the decision ---------------------------------------------------------------------------------

    def _route[P](
        self,
        call: InboundCall,
        deadline: float,
        placement: Placement[P],
        attempt: int,
        regions: Sequence[MillisRegion],
    ) -> Decision[P]:
        """The decision, in the order of this module's docstring."""
        tx, found = self._open(call, deadline, attempt)
        # 1. The same call asked again: what an earlier invocation answered.
        if (again := self._asked_again(tx, placement)) is not None:
            return again
        # 2. A registration waiting for this call, claimed (a PIN asked for first where it needs one).
        if (claimed := self._from_registrations(call, tx, found.candidates, placement)) is not None:
            return claimed
        # 3, 4. A fresh registration: the dialed number's route, else the default agent; else a refusal.
        return self._fresh(call, tx, found.route, deadline, placement, regions)

    def _open(self, call: InboundCall, deadline: float, attempt: int) -> tuple[CallTransaction, _Lookups]:
        """Open the call's transaction and read what a decision needs beside it (the reads do not depend on
        the ownership write): pending registrations for both numbers (on the first attempt only: a failover
        claims nothing), the dialed number's route. What has not answered within the store's budget counts as
        unavailable."""
        first = attempt == 1
        lookup_keys = [k for k in dict.fromkeys((call.caller, call.dialed)) if k and E164.match(k)] if first else []
        number = call.dialed if call.dialed and E164.match(call.dialed) and self._numbers is not None else None
        now = self._clock.now()

        def reader(lookup_key: str) -> Callable[[], list[CallRecord]]:
            return lambda: self._store.pending_for(lookup_key, now)

        # A route already in memory (CachedNumberRoutes) needs no request, and so no worker thread either.
        known, route = (
            self._numbers.cached(number) if number and isinstance(self._numbers, CachedNumberRoutes) else (False, None)
        )
        read_route = [] if known or number is None else [lambda: self._numbers.get(number) if self._numbers else None]
        tx, results = self._transactions.open(
            call.carrier,
            call.call_ref,
            attempt,
            caller=call.caller,
            dialed=call.dialed,
            deadline=deadline,
            resume=call.pin is not None,
            reads=(*read_route, *(reader(k) for k in lookup_keys)),
        )
        if read_route:
            route, *pending = results
        else:
            pending = results
        if isinstance(route, BaseException):
            log.warning("Cannot read the number's route; going on without it", extra={"error": str(route) or "timeout"})
            route = None
        candidates: list[tuple[str, list[CallRecord]]] = []
        for lookup_key, records in zip(lookup_keys, pending, strict=True):
            if isinstance(records, BaseException):
                log.warning("Cannot look for pending registrations", extra={"error": str(records) or "timeout"})
                continue
            candidates.append((lookup_key, records))
        return tx, _Lookups(candidates, route)

    def _asked_again[P](self, tx: CallTransaction, placement: Placement[P]) -> Decision[P] | None:
        """The answer to a call an earlier invocation decided (or is deciding): its answer again, or a refusal.
        None: this invocation decides (it owns the call, or the store is down)."""
        match tx.opened:
            case Opened.OWNED | Opened.STORE_DOWN:
                return None
            case Opened.CONFLICT:
                log.warning(
                    "The call id was first asked for other numbers: refusing the conflicting request",
                    extra={"state": tx.state},
                )
                return self._refuse(CALL_CONFLICT)
            case Opened.ANSWERED:
                log.info("Retried invocation: reusing the first answer", extra={"millis_call_id": tx.answered_call_id})
                self._metrics.inbound("retried")
                return self._replay(tx, placement)
            case Opened.REFUSED:
                return Refused(tx.reason, replayed=True)
            case Opened.IN_PROGRESS:
                return self._refuse("retry_in_progress")
            case Opened.CHALLENGED:
                return Challenge()  # asked again before the caller answered: ask again

    def _replay[P](self, tx: CallTransaction, placement: Placement[P]) -> Routed[P] | Refused:
        record = tx.answered_record()
        if record is None:
            return self._refuse("retry_without_record")
        try:
            where = placement.place(record)
        except Unroutable as exc:  # the first invocation found it unroutable and is recording that
            return Refused(exc.reason, replayed=True)
        if record.status in (CallStatus.ENDED, CallStatus.FAILED):
            # A phone system never asks again for a call that is over: this is a captured request, replayed.
            log.warning("A request for a call that is over: not answering it again", extra={"status": record.status})
            return self._refuse(CALL_ENDED)
        return Routed(record, where, "replayed")

    # --- claims and PINs --------------------------------------------------------------------------------

    def _from_registrations[P](
        self,
        call: InboundCall,
        tx: CallTransaction,
        candidates: list[tuple[str, list[CallRecord]]],
        placement: Placement[P],
    ) -> Routed[P] | Challenge | None:
        """A registration waiting for this call, claimed (or a PIN asked for first); None: register afresh. Only
        while the store is up: a claim cannot be made safely without it."""
        if tx.opened is not Opened.OWNED:
            return None
        if (prompt := tx.challenge) is None:
            return self._claim(call, tx, candidates, placement)
        # The caller answered a PIN prompt: that registration; else the others, without a second prompt.
        if (answered := self._answer_challenge(call, tx, prompt, placement)) is not None:
            return answered
        one_pin_per_call = replace(call, pin=None, can_challenge=False)
        return self._claim(one_pin_per_call, tx, candidates, placement, skip=prompt.candidate)

    def _claim[P](
        self,
        call: InboundCall,
        tx: CallTransaction,
        candidates: list[tuple[str, list[CallRecord]]],
        placement: Placement[P],
        *,
        skip: str | None = None,
    ) -> Routed[P] | Challenge | None:
        """The newest pending registration for the caller's number that the caller proves is theirs, else the
        newest for the dialed number (``dialed_number``); claimed atomically. A Challenge when the caller must
        key in a PIN first. A registration is never claimed from the other side of the call than it is for;
        ``skip`` (the one whose PIN the caller did not give) is not claimed at all."""
        for lookup_key, records in candidates:
            for candidate in records:
                by_caller = candidate.caller_verification.by_caller
                if candidate.call_id == skip or lookup_key != (call.caller if by_caller else call.dialed):
                    continue  # made for the other side of the call (e.g. a caller's, and this call is *to* it)
                try:
                    where = placement.place(candidate)
                except Unroutable as exc:
                    log.warning(
                        "A pending registration cannot go the way this phone system sends calls; not claiming it",
                        extra={"millis_call_id": candidate.call_id, "reason": exc.reason},
                    )
                    continue
                if by_caller:
                    proof = self._pins.proof(call, candidate, tx)
                    if proof is Proof.CHALLENGE:
                        if self._pins.ask(tx, candidate.call_id, tries=0):
                            return Challenge()
                        continue
                    if proof is not Proof.VERIFIED:
                        log.info(
                            "The caller's number matches a registration, but the caller is not verified",
                            extra={
                                "millis_call_id": candidate.call_id,
                                "caller_verification": candidate.caller_verification.value,
                                "why": proof.value,
                            },
                        )
                        continue
                won = self._take(call, candidate, tx)
                if won is not None:
                    return Routed(won, where, "claimed")
        return None

    def _answer_challenge[P](
        self, call: InboundCall, tx: CallTransaction, prompt: PinPrompt, placement: Placement[P]
    ) -> Routed[P] | Challenge | None:
        """The caller keyed in ``call.pin`` for the registration ``prompt`` names: claim it, ask again, or give up
        on it."""
        digits = call.pin or ""
        candidate_id, tries_so_far = prompt
        try:
            candidate = tx.within(lambda: self._store.get(candidate_id))
        except StoreUnavailable:
            candidate = None
        if candidate is None or not digits or candidate.pin_locked:
            log.info(
                "No PIN, or no registration to unlock: going on without it", extra={"millis_call_id": candidate_id}
            )
            return None
        proof, attempts = self._pins.try_pin(candidate, digits, tx)
        if proof is Proof.VERIFIED:
            try:
                where = placement.place(candidate)
            except Unroutable:
                return None
            won = self._take(call, candidate, tx)
            return Routed(won, where, "claimed") if won is not None else None
        if proof is not Proof.PIN_MISMATCH:
            return None  # locked, or the attempt could not be counted
        tries = tries_so_far + 1
        log.warning("Wrong PIN", extra={"millis_call_id": candidate.call_id, "tries": tries})
        again = tries < MAX_PIN_TRIES and attempts < MAX_PIN_FAILURES
        if again and self._pins.ask(tx, candidate.call_id, tries=tries):
            return Challenge(retry=True)
        return None

    def _take(self, call: InboundCall, candidate: CallRecord, tx: CallTransaction) -> CallRecord | None:
        claimed = replace(
            candidate,
            status=CallStatus.CLAIMED,
            transaction_id=call.call_ref,
            caller_number=call.caller,
            dialed_number=call.dialed,
            carrier=call.carrier,  # the phone system the call came through (transfers move it there)
            carrier_call_id=call.leg_id,
        )
        try:
            won = tx.commit(claimed, claim=True)
        except LeaseLost:
            log.warning("A retry took this phone call over; leaving the registration to it")
            return None
        except StoreUnavailable as exc:
            log.warning("Cannot claim a pending registration", extra={"error": str(exc)})
            return None
        if not won:
            return None
        log.info("Claimed a pending registration", extra={"millis_call_id": claimed.call_id})
        self._metrics.inbound("claimed")
        return claimed

    # --- a fresh registration ---------------------------------------------------------------------------

    def _fresh[P](
        self,
        call: InboundCall,
        tx: CallTransaction,
        route: NumberRoute | None,
        deadline: float,
        placement: Placement[P],
        regions: Sequence[MillisRegion],
    ) -> Routed[P] | Refused:
        """A fresh registration, committed as the call's answer. With the store down (DynamoDB just failed after
        its retries: every further call would spend the caller's time too), the record rides with the phone
        system to a later event."""
        try:
            reachable = [r for r in regions if placement.reachable(r)]
            record, how = self._register(call, route, deadline, reachable, placement.unreachable)
        except BridgeError as exc:
            if call.retries_refusals and exc.code in TRANSIENT_REFUSALS:
                tx.release()
            else:
                tx.fail(exc.code)
            return self._refuse(exc.code)
        try:
            where = placement.place(record)
        except Unroutable as exc:
            log.error(
                "Millis' SIP URI cannot go the way this phone system sends calls",
                extra={"millis_call_id": record.call_id, "reason": exc.reason, "sip_uri": str(record.sip_uri)},
            )
            unused = replace(record, status=CallStatus.FAILED, reason=exc.reason, ended_at=record.created_at)
            tx.fail(exc.reason, record=unused)
            return self._refuse(exc.reason)
        tx.commit_new(record)
        return Routed(record, where, how)

    def _register(
        self,
        call: InboundCall,
        route: NumberRoute | None,
        deadline: float,
        regions: Sequence[MillisRegion],
        unreachable: str,
    ) -> tuple[CallRecord, str]:
        """A fresh Millis registration with the number's route or the default agent; ``_Refusal`` with neither,
        with no region the edge reaches, or over an hourly cap (checked in that order)."""
        agent = self._agent(route)
        if not regions:
            raise _Refusal(unreachable, "no Millis region can be reached from this phone system")
        if agent.capped and not self._caps.admit(call.dialed, agent.cap, agent.total_cap, deadline):
            raise _Refusal(OVER_HOURLY_CAP, "the calls of this hour already started as many sessions as allowed")
        payload: dict[str, Any] = {**agent.fields, "metadata": self._metadata(call, agent.metadata)}
        budget = deadline - self._clock.monotonic() - STORE_RESERVE_SECONDS
        try:
            registration = self._millis.register(payload, budget=budget, regions=regions)
        except MillisError as exc:
            log.error(
                "Millis could not register the phone call",
                extra={"error": exc.code, "attempts": attempts_text(exc.attempts)},
            )
            raise
        now = self._clock.now()
        record = CallRecord(
            call_id=registration.call_id,
            sip_uri=registration.sip_uri,
            millis_region=registration.region.value,
            status=CallStatus.CLAIMED,
            created_at=now,
            expires_at=(now + self._ttl).replace(microsecond=0),
            # No lookup_key: carrier lookups find only registrations made over HTTP, never a phone call's.
            agent_id=agent.fields.get("agent_id"),
            source=call.carrier,
            transaction_id=call.call_ref,
            caller_number=call.caller,
            dialed_number=call.dialed,
            webhook_hash=registration.webhook_hash,
            carrier_call_id=call.leg_id,
        )
        return record, agent.how

    def _agent(self, route: NumberRoute | None) -> _Agent:
        """The number's route, else the default agent, with the hourly caps that apply to it."""
        if route is not None:
            return _Agent(route.millis_fields(), "number_route", route.metadata, route.max_calls_per_hour, None)
        if self._default_agent_id is not None:
            fields = {"agent_id": self._default_agent_id}
            return _Agent(fields, "default_agent", {}, self._default_cap, self._default_total_cap)
        raise _Refusal(NO_AGENT, "no route for the number and DEFAULT_AGENT_ID is not set")

    @staticmethod
    def _metadata(call: InboundCall, route_metadata: Mapping[str, Any]) -> dict[str, Any]:
        """Millis' metadata for a registration the router makes: the route's, what the caller wrote (under a key
        of its own), the numbers, the carrier and its ids; keys without a value left out."""
        metadata = dict(route_metadata)
        supplied = header_variables(call.sip_headers)
        metadata[CALLER_SUPPLIED] = supplied or None  # never the backend's key of that name: the caller's, or none
        metadata.update(
            {
                "caller_number": call.caller,
                "dialed_number": call.dialed,
                "carrier": call.carrier,
                "carrier_call_id": call.call_ref,
                **call.context,
            }
        )
        return {k: v for k, v in metadata.items() if v is not None}

    def _refuse(self, reason: str) -> Refused:
        self._metrics.inbound_failure(reason)
        return Refused(reason)

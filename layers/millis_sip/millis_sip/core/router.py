"""The inbound-call router: the one decision every phone system's edge asks for when a call comes in
(docs/router.md).

Given the call (carrier, the carrier's id for it, caller, dialed number, what the carrier says about the
caller), it answers with a Millis call to send it to, a refusal with a reason the edge turns into a spoken
message and a hang-up, or a challenge (ask the caller for a PIN, then ask again). In order:

1. **The same call asked again** (a retried invocation or webhook): the first answer, never a second Millis
   registration. The first asker owns the call through a leased marker in the store; a retry arriving while
   the owner still works waits for it, within the deadline.
2. **A pending registration** made over HTTP with a ``lookup_key`` equal to the caller's number, claimed only
   when the caller is verified as the registration asks (``CallerVerification``: the carrier's attestation, a
   PIN, or caller ID trusted by explicit choice); else one whose ``lookup_key`` is the dialed number (a number
   dedicated to that registration needs no proof). Claimed exactly once, with a conditional write.
3. **The dialed number's route**: a fresh registration with that route's agent and metadata.
4. **The default agent** (``DEFAULT_AGENT_ID``). Otherwise a refusal.

Every registration the router makes carries, in ``metadata``, the caller and dialed numbers, the carrier and
its call id, and the route's own metadata. The ownership write and the reads (pending registrations for both
numbers, the number's route) are independent: they run together (``Parallel``).

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
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol

from millis_sip.core.calls import (
    E164,
    MAX_PIN_FAILURES,
    PIN_DIGITS,
    TOKEN,
    CallerVerification,
    CallRecord,
    CallSource,
    CallStatus,
)
from millis_sip.core.errors import BridgeError, LeaseLost, MillisError, StoreUnavailable, Unroutable
from millis_sip.core.keys import StackKeys
from millis_sip.core.numbers import NumberRoute
from millis_sip.core.ports import (
    MIN_ATTEMPT_SECONDS,
    Clock,
    InboundCallStore,
    Metrics,
    NoMetrics,
    NumberRoutes,
    Parallel,
    TransactionLock,
    TransactionMark,
    TransactionState,
    in_sequence,
    transaction_key,
)
from millis_sip.core.regions import MillisRegion
from millis_sip.core.registration import MillisRegistrations, attempts_text, pin_matches
from millis_sip.core.sip import SipUri, header_variables

log = logging.getLogger(__name__)

STORE_RESERVE_SECONDS = 0.5  # kept back from Millis for the DynamoDB write and the answer
STORE_BUDGET_SECONDS = 1.0  # the most one DynamoDB round trip may take before the call goes on without it
POLL_SECONDS = 0.1  # while another invocation of the same call is still working
MARKER_LIFETIME = timedelta(days=1)  # how long a call's marker outlives its registration
MAX_PIN_TRIES = 3  # PINs one call may key in before the router goes on without the registration
FULL_ATTESTATION = "A"

NO_AGENT = "no_agent"  # no number route and no default agent: the call is not for this stack
OVER_HOURLY_CAP = "over_hourly_cap"  # the number's calls started as many sessions this hour as it allows
# Refusals a retry may cure (the phone system may try another route); the others will not change by retrying.
TRANSIENT_REFUSALS = frozenset(
    {"millis_unavailable", "millis_key_unavailable", "retry_in_progress", "retry_without_record"}
)


@dataclass(frozen=True, slots=True)
class InboundCall:
    """A phone call, as its edge read it off the wire."""

    carrier: str  # "chime", "twilio", "sip", ...
    call_ref: str  # the carrier's id for the call (Chime TransactionId, Twilio CallSid, the SIP Call-ID)
    caller: str | None  # the caller's number (From)
    dialed: str | None  # the number dialed (To)
    attestation: str | None = None  # "A", "B" or "C" when the carrier verified the caller's number
    pin: str | None = None  # what the caller keyed in after a Challenge ("": nothing)
    can_challenge: bool = False  # the edge can ask the caller for a PIN
    context: Mapping[str, str] = field(default_factory=dict)  # the carrier's other ids, for Millis' metadata
    sip_headers: Mapping[str, str] = field(default_factory=dict)  # the caller's X- headers, as the carrier passed them
    # The phone system asks again for the same call after a transient refusal (a SIP server told 503 with
    # Retry-After), so such a refusal is not kept: the next ask registers afresh. Otherwise a second ask is a
    # redelivery of one whose answer was lost, and gets the same refusal without a second Millis call.
    retries_refusals: bool = False


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
    """What the store said about the call before anything was decided."""

    mark: TransactionMark | None  # None: the store is unavailable
    candidates: list[tuple[str, list[CallRecord]]]  # (lookup key, its pending registrations, newest first)
    route: NumberRoute | None


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
        self._keys = keys or StackKeys(None)
        self._metrics = metrics or NoMetrics()
        self._parallel = parallel

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
        key = transaction_key(call.carrier, call.call_ref, attempt)
        owner = uuid.uuid4().hex  # this invocation: the marker's later writes hold only while it owns the call
        found = self._look(call, key, owner, deadline, first=attempt == 1)
        mark = found.mark
        if mark is not None and mark.state is TransactionState.DONE:
            log.info("Retried invocation: reusing the first answer", extra={"millis_call_id": mark.millis_call_id})
            self._metrics.inbound("retried")
            return self._replay(mark, placement, deadline)
        if mark is not None and mark.state is TransactionState.FAILED:
            return Refused(mark.reason or "failed", replayed=True)
        if mark is not None and mark.state is TransactionState.PENDING:
            return self._refuse("retry_in_progress")
        if mark is not None and mark.state is TransactionState.CHALLENGED:
            return Challenge()  # asked again before the caller answered: ask again
        lock = TransactionLock(key, owner) if mark is not None else None
        # DynamoDB just failed (after its retries): every further call would spend the caller's time too.
        # No claim; register, answer, and let the record ride with the phone system to a later event.
        store_up = mark is not None

        skip: set[str] = set()
        claimant = call
        if lock is not None and mark is not None and mark.millis_call_id:  # the caller answered a challenge
            answered = self._answer_challenge(call, lock, mark, placement, deadline)
            if answered is not None:
                return answered
            skip.add(mark.millis_call_id)
            claimant = replace(call, pin=None, can_challenge=False)  # one PIN per call: no second challenge
        if attempt == 1 and lock is not None:
            claimed = self._claim(claimant, lock, found.candidates, skip, placement, deadline)
            if claimed is not None:
                return claimed
        try:
            reachable = [r for r in regions if placement.reachable(r)]
            record, how = self._register(call, found.route, deadline, reachable, placement.unreachable)
        except BridgeError as exc:
            if call.retries_refusals and exc.code in TRANSIENT_REFUSALS:
                self._release_transaction(lock, deadline)
            else:
                self._fail_transaction(lock, exc.code, deadline)
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
                self._commit(failed, lock, deadline)
                self._fail_transaction(lock, exc.reason, deadline)
            return self._refuse(exc.reason)
        if store_up:
            self._commit(record, lock, deadline)
        else:
            log.error(
                "DynamoDB is unavailable: bridging without storing; a later event writes the record",
                extra={"millis_call_id": record.call_id},
            )
        return Routed(record, where, how)

    def _look(self, call: InboundCall, key: str, owner: str, deadline: float, *, first: bool) -> _Lookups:
        """Own the call and read what a decision needs, all at once: the reads do not depend on the write. Each
        gets the store's budget; what has not answered by then counts as unavailable."""
        lookup_keys = [k for k in dict.fromkeys((call.caller, call.dialed)) if k and TOKEN.match(k)] if first else []
        number = call.dialed if call.dialed and E164.match(call.dialed) and self._numbers is not None else None
        now = self._clock.now()
        resume = call.pin is not None

        def reader(lookup_key: str) -> Callable[[], list[CallRecord]]:
            return lambda: self._store.pending_for(lookup_key, now)

        results = self._parallel(
            lambda: self._begin(key, owner, deadline, resume=resume),
            lambda: self._numbers.get(number) if number is not None and self._numbers is not None else None,
            *(reader(k) for k in lookup_keys),
            timeout=self._store_budget(deadline),
        )
        mark, route, *pending = results
        if isinstance(mark, (StoreUnavailable, TimeoutError)):
            log.warning("Cannot record the phone call's transaction; going on", extra={"error": str(mark) or "timeout"})
            mark = None
        elif isinstance(mark, BaseException):  # a bug, not the store
            raise mark
        if mark is not None and mark.state is TransactionState.PENDING:
            mark = self._wait_for_owner(key, owner, deadline, mark, resume=resume)
        if isinstance(route, BaseException):
            log.warning("Cannot read the number's route; going on without it", extra={"error": str(route) or "timeout"})
            route = None
        candidates: list[tuple[str, list[CallRecord]]] = []
        for lookup_key, records in zip(lookup_keys, pending, strict=True):
            if isinstance(records, BaseException):
                log.warning("Cannot look for pending registrations", extra={"error": str(records) or "timeout"})
                continue
            candidates.append((lookup_key, records))
        return _Lookups(mark, candidates, route)

    def _begin(self, key: str, owner: str, deadline: float, *, resume: bool) -> TransactionMark:
        now = self._clock.now()
        return self._store.begin_transaction(
            key,
            owner=owner,
            now=now,
            lease_seconds=max(deadline - self._clock.monotonic(), 0.0),
            expires_at=now + self._ttl + MARKER_LIFETIME,
            resume_challenge=resume,
        )

    def _wait_for_owner(
        self, key: str, owner: str, deadline: float, mark: TransactionMark, *, resume: bool
    ) -> TransactionMark | None:
        """Another invocation has the call: ask again until it finishes or its lease runs out (then this one
        takes over), bounded by the deadline. None: the store became unavailable."""
        while mark.state is TransactionState.PENDING:
            if deadline - self._clock.monotonic() < STORE_RESERVE_SECONDS + POLL_SECONDS:
                return mark  # the other invocation still has it and its lease is valid
            self._clock.sleep(POLL_SECONDS)
            try:
                mark = self._bounded(deadline, lambda: self._begin(key, owner, deadline, resume=resume))
            except StoreUnavailable as exc:
                log.warning("Cannot record the phone call's transaction; going on", extra={"error": str(exc)})
                return None
        return mark

    def _store_budget(self, deadline: float) -> float:
        """How long the next DynamoDB round trip may take: STORE_BUDGET_SECONDS, less when the deadline is near."""
        return max(min(STORE_BUDGET_SECONDS, deadline - self._clock.monotonic()), 0.05)

    def _bounded[T](self, deadline: float, call: Callable[[], T]) -> T:
        """``call()`` within the store's budget; ``StoreUnavailable`` when it does not answer in time (it goes on
        in the background, and its answer is not waited for)."""
        [result] = self._parallel(call, timeout=self._store_budget(deadline))
        if isinstance(result, TimeoutError):
            raise StoreUnavailable("DynamoDB did not answer within the phone call's budget.")
        if isinstance(result, BaseException):
            raise result
        value: T = result
        return value

    def _replay[P](self, mark: TransactionMark, placement: Placement[P], deadline: float) -> Routed[P] | Refused:
        call_id = mark.millis_call_id
        try:
            record = self._bounded(deadline, lambda: self._store.get(call_id)) if call_id else None
        except StoreUnavailable:
            record = None
        if record is None:
            return self._refuse("retry_without_record")
        try:
            return Routed(record, placement.place(record), "replayed")
        except Unroutable as exc:  # the first invocation found it unroutable and is recording that
            return Refused(exc.reason, replayed=True)

    # --- claims and PINs --------------------------------------------------------------------------------

    def _claim[P](
        self,
        call: InboundCall,
        lock: TransactionLock,
        candidates: list[tuple[str, list[CallRecord]]],
        skip: set[str],
        placement: Placement[P],
        deadline: float,
    ) -> Routed[P] | Challenge | None:
        """The newest pending registration for the caller's number that the caller proves is theirs, else the
        newest for the dialed number; claimed atomically. A Challenge when the caller must key in a PIN first."""
        for lookup_key, records in candidates:
            by_caller = lookup_key == call.caller
            for candidate in records:
                if candidate.call_id in skip:
                    continue
                try:
                    where = placement.place(candidate)
                except Unroutable as exc:
                    log.warning(
                        "A pending registration cannot go the way this phone system sends calls; not claiming it",
                        extra={"millis_call_id": candidate.call_id, "reason": exc.reason},
                    )
                    continue
                if by_caller:
                    proof = self._proof(call, candidate, deadline)
                    if proof == "challenge":
                        if self._challenge(lock, candidate.call_id, deadline, tries=0):
                            return Challenge()
                        continue
                    if proof != "verified":
                        log.info(
                            "The caller's number matches a registration, but the caller is not verified",
                            extra={
                                "millis_call_id": candidate.call_id,
                                "caller_verification": candidate.caller_verification.value,
                                "why": proof,
                            },
                        )
                        continue
                won = self._take(call, candidate, lock, deadline)
                if won is not None:
                    return Routed(won, where, "claimed")
        return None

    def _proof(self, call: InboundCall, candidate: CallRecord, deadline: float) -> str:
        """Whether the caller proves the number is theirs, as ``candidate`` asks: verified, challenge, or why not."""
        policy = candidate.caller_verification
        if policy is CallerVerification.TRUST_CALLER_ID:
            return "verified"
        if policy is CallerVerification.ATTESTATION:
            return "verified" if call.attestation == FULL_ATTESTATION else "not_attested"
        if candidate.pin_locked:
            return "pin_locked"
        if call.pin:  # digits the phone system collected itself (a SIP server's dialplan)
            if pin_matches(candidate, call.pin, self._keys):
                return "verified"
            self._wrong_pin(candidate, deadline)
            return "pin_mismatch"
        return "challenge" if call.can_challenge and call.pin is None else "no_pin_prompt"

    def _challenge(self, lock: TransactionLock, candidate: str, deadline: float, *, tries: int) -> bool:
        try:
            self._bounded(deadline, lambda: self._store.challenge_transaction(lock, candidate=candidate, tries=tries))
        except StoreUnavailable as exc:
            log.warning("Cannot ask for the PIN (the store is unavailable)", extra={"error": str(exc)})
            return False
        self._metrics.inbound("pin_requested")
        return True

    def _answer_challenge[P](
        self, call: InboundCall, lock: TransactionLock, mark: TransactionMark, placement: Placement[P], deadline: float
    ) -> Routed[P] | Challenge | None:
        """The caller keyed in ``call.pin`` for ``mark.millis_call_id``: claim it, ask again, or give up on it."""
        digits = call.pin or ""
        candidate_id = mark.millis_call_id or ""
        try:
            candidate = self._bounded(deadline, lambda: self._store.get(candidate_id))
        except StoreUnavailable:
            candidate = None
        if candidate is None or not digits:
            log.info(
                "No PIN, or no registration to unlock: going on without it", extra={"millis_call_id": candidate_id}
            )
            return None
        if pin_matches(candidate, digits, self._keys) and not candidate.pin_locked:
            try:
                where = placement.place(candidate)
            except Unroutable:
                return None
            won = self._take(call, candidate, lock, deadline)
            return Routed(won, where, "claimed") if won is not None else None
        self._wrong_pin(candidate, deadline)
        tries = mark.tries + 1
        log.warning("Wrong PIN", extra={"millis_call_id": candidate.call_id, "tries": tries})
        again = tries < MAX_PIN_TRIES and candidate.pin_failures + 1 < MAX_PIN_FAILURES
        if again and self._challenge(lock, candidate.call_id, deadline, tries=tries):
            return Challenge(retry=True)
        return None

    def _wrong_pin(self, candidate: CallRecord, deadline: float) -> None:
        self._metrics.inbound_failure("pin_mismatch")
        try:
            self._bounded(deadline, lambda: self._store.pin_failed(candidate.call_id))
        except StoreUnavailable as exc:
            log.warning("Cannot count the wrong PIN", extra={"error": str(exc)})

    def _take(
        self, call: InboundCall, candidate: CallRecord, lock: TransactionLock, deadline: float
    ) -> CallRecord | None:
        claimed = replace(
            candidate,
            status=CallStatus.CLAIMED,
            transaction_id=call.call_ref,
            caller_number=call.caller,
            dialed_number=call.dialed,
        )
        try:
            now = self._clock.now()
            won = self._bounded(deadline, lambda: self._store.commit_inbound(claimed, lock=lock, claim=True, now=now))
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

    def _register(
        self,
        call: InboundCall,
        route: NumberRoute | None,
        deadline: float,
        regions: Sequence[MillisRegion],
        unreachable: str,
    ) -> tuple[CallRecord, str]:
        if route is not None:
            fields, how, metadata = route.millis_fields(), "number_route", dict(route.metadata)
            cap = route.max_calls_per_hour
        elif self._default_agent_id is not None:
            fields, how, metadata = {"agent_id": self._default_agent_id}, "default_agent", {}
            cap = self._default_cap
        else:
            raise _Refusal(NO_AGENT, "no route for the number and DEFAULT_AGENT_ID is not set")
        if not regions:
            raise _Refusal(unreachable, "no Millis region can be reached from this phone system")
        if cap is not None and not self._admit(call.dialed, cap, deadline):
            raise _Refusal(OVER_HOURLY_CAP, f"{cap} calls this hour already started sessions for the number")
        metadata.update(header_variables(call.sip_headers))
        metadata.update(
            {
                "caller_number": call.caller,
                "dialed_number": call.dialed,
                "carrier": call.carrier,
                "carrier_call_id": call.call_ref,
                **call.context,
            }
        )
        payload: dict[str, Any] = {**fields, "metadata": {k: v for k, v in metadata.items() if v is not None}}
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
            agent_id=fields.get("agent_id"),
            source=call.carrier,
            transaction_id=call.call_ref,
            caller_number=call.caller,
            dialed_number=call.dialed,
            webhook_hash=registration.webhook_hash,
        )
        return record, how

    def _admit(self, dialed: str | None, cap: int, deadline: float) -> bool:
        """Count the call against its number's hourly cap. A store that cannot say lets the call through: the
        cap bounds spending, and a caller is never turned away for the store's fault."""
        hour = self._clock.now().replace(minute=0, second=0, microsecond=0)
        expires = hour + timedelta(hours=2)
        try:
            number = self._keys.lookup_index(dialed) if dialed else "unknown"  # no number in clear in the key
            key = f"calls-per-hour#{number}#{hour:%Y-%m-%dT%H}"
            return self._bounded(deadline, lambda: self._store.count_call(key, limit=cap, expires_at=expires))
        except BridgeError as exc:  # the store, or the stack secret, unavailable
            log.warning("Cannot count the call against the number's cap; letting it through", extra={"error": str(exc)})
            return True

    def _commit(self, record: CallRecord, lock: TransactionLock | None, deadline: float) -> None:
        now = self._clock.now()
        try:
            self._bounded(deadline, lambda: self._store.commit_inbound(record, lock=lock, claim=False, now=now))
        except LeaseLost:
            # This invocation outlived its lease and a retry answered the phone system instead: the retry's
            # record stands, and this Millis call is never bridged (its session lapses unused).
            log.warning(
                "A retry took this phone call over; this registration goes unused",
                extra={"millis_call_id": record.call_id},
            )
            self._metrics.inbound_failure("lease_lost")
        except BridgeError as exc:
            # The call goes on: the record rides with the phone system and a later event writes it.
            log.error(
                "Could not store the phone call's record; bridging anyway",
                extra={"millis_call_id": record.call_id, "error": str(exc)},
            )

    def _fail_transaction(self, lock: TransactionLock | None, reason: str, deadline: float) -> None:
        if lock is None:
            return
        try:
            self._bounded(deadline, lambda: self._store.fail_transaction(lock, reason))
        except StoreUnavailable as exc:
            log.warning("Could not mark the phone call's transaction failed", extra={"error": str(exc)})

    def _release_transaction(self, lock: TransactionLock | None, deadline: float) -> None:
        if lock is None:
            return
        try:
            self._bounded(deadline, lambda: self._store.release_transaction(lock))
        except StoreUnavailable as exc:  # its lease runs out by the deadline, and a retry then takes it over
            log.warning("Could not release the phone call's transaction", extra={"error": str(exc)})

    def _refuse(self, reason: str) -> Refused:
        self._metrics.inbound_failure(reason)
        return Refused(reason)

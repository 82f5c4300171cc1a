"""The ports: what the domain needs from the outside world, as protocols. Adapters implement them
(``millis_sip.adapters``); tests implement them in memory (``tests/support/fakes.py``, held to the same
contract as DynamoDB Local by ``tests/integration/test_store_contract.py``)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from millis_sip.core.calls import CallRecord, CallStatus, Direction
from millis_sip.core.errors import Attempt, StoreUnavailable
from millis_sip.core.regions import MillisRegion
from millis_sip.core.sip import SipUri

if TYPE_CHECKING:
    from millis_sip.core.numbers import NumberRoute

# --- time, secrets, metrics -----------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall time, UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (deadlines)."""
        ...

    def sleep(self, seconds: float) -> None: ...


class Secret(Protocol):
    """A credential read when needed (Secrets Manager in AWS, the environment locally). Raises a
    ``BridgeError`` when it cannot be read; never logs or echoes the value."""

    def __call__(self) -> str: ...

    def forget(self) -> None:
        """Drop any cached value (after a SnapStart restore)."""
        ...


class Metrics(Protocol):
    def registered(self, region: str, *, failed_over: bool, latency_ms: float) -> None:
        """A call was registered with Millis (Registrations, Failovers, MillisLatency)."""
        ...

    def inbound(self, outcome: str) -> None:
        """A phone call moved on: claimed, bridging, retried, bridged, ended (InboundCalls)."""
        ...

    def inbound_failure(self, reason: str) -> None:
        """A phone call was released without an agent, and why (CallFailures)."""
        ...


class Parallel(Protocol):
    """Runs independent calls, at the same time where the adapter can (the phone path's reads and its
    ownership write are one round trip instead of three). Each result is the call's value or the exception
    it raised; with ``timeout``, a ``TimeoutError`` for a call still running after that many seconds (it goes
    on in the background and its result is dropped)."""

    def __call__(self, *calls: Callable[[], Any], timeout: float | None = None) -> list[Any]: ...


STORE_BUDGET_SECONDS = 1.0  # the most one DynamoDB round trip may take before a phone call goes on without it


def store_budget(clock: Clock, deadline: float) -> float:
    """How long the next DynamoDB round trip of a phone call may take: STORE_BUDGET_SECONDS, less when the
    deadline (on ``clock.monotonic()``) is near."""
    return max(min(STORE_BUDGET_SECONDS, deadline - clock.monotonic()), 0.05)


def within_store_budget[T](parallel: Parallel, clock: Clock, deadline: float, call: Callable[[], T]) -> T:
    """``call()`` within the store's budget (``store_budget``); ``StoreUnavailable`` when it does not answer in
    time (it goes on in the background, and its answer is not waited for)."""
    [result] = parallel(call, timeout=store_budget(clock, deadline))
    if isinstance(result, TimeoutError):
        raise StoreUnavailable("DynamoDB did not answer within the phone call's budget.")
    if isinstance(result, BaseException):
        raise result
    value: T = result
    return value


def in_sequence(*calls: Callable[[], Any], timeout: float | None = None) -> list[Any]:
    """``Parallel`` one after the other (the default; what the unit tests use, on a clock that only moves
    when told: ``timeout`` has nothing to measure and is not applied)."""
    results: list[Any] = []
    for call in calls:
        try:
            results.append(call())
        except Exception as exc:  # noqa: BLE001 - handed back to the caller, as Parallel promises
            results.append(exc)
    return results


class NoMetrics:
    """Metrics that go nowhere (the default where none are wired)."""

    def registered(self, region: str, *, failed_over: bool, latency_ms: float) -> None:
        return None

    def inbound(self, outcome: str) -> None:
        return None

    def inbound_failure(self, reason: str) -> None:
        return None


# --- Millis -----------------------------------------------------------------------------------------

MIN_ATTEMPT_SECONDS = 0.2  # below this, a try at Millis cannot finish: do not start it


@dataclass(frozen=True, slots=True)
class MillisRegistration:
    call_id: str
    sip_uri: SipUri
    region: MillisRegion
    attempts: tuple[Attempt, ...]
    webhook_hash: str | None = None  # the hash of the session webhook credential the registration carried

    @property
    def failed_over(self) -> bool:
        return len(self.attempts) > 1


class MillisGateway(Protocol):
    def register(
        self, payload: Mapping[str, Any], *, budget: float, regions: Sequence[MillisRegion] | None = None
    ) -> MillisRegistration:
        """Register a SIP call within ``budget`` seconds, trying ``regions`` in order (default: nearest first).
        Raises a ``MillisError`` subclass when no region registered it."""
        ...


# --- the call store ---------------------------------------------------------------------------------


class SessionOutcome(StrEnum):
    CLOSED = "closed"  # the call was open and is now ended or failed
    ANNOTATED = "annotated"  # the call was already over: only Millis' fields it did not have were added
    UNKNOWN = "unknown"  # no such call: nothing was created
    # The store's answers that never reach Millis (nothing changed):
    FOREIGN = "foreign"  # the credential is not this call's
    LEGACY = "legacy"  # the call predates per-call credentials: only the stack secret opens it


@dataclass(frozen=True, slots=True)
class MillisReport:
    """What Millis' session report adds to a call's record."""

    call_status: str | None = None
    duration_seconds: int | None = None
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class CallQuery:
    """GET /calls without a lookup_key: the calls created in [since, until), newest first, that match every
    filter given. ``status`` ``expired`` is a registration that lapsed unclaimed; ``number`` matches the caller's
    or the dialed number, or the lookup_key of a registration; ``after`` is the opaque cursor of the page before
    (it carries the window and the position: the filters are the caller's to repeat)."""

    since: datetime
    until: datetime
    limit: int
    now: datetime
    status: CallStatus | None = None
    direction: Direction | None = None
    carrier: str | None = None
    agent_id: str | None = None
    number: str | None = None
    after: str | None = None


@dataclass(frozen=True, slots=True)
class CallPage:
    """Up to ``limit`` calls, newest first, and the cursor of the next page (None: none left). A page may hold
    fewer than ``limit`` calls, even none, while ``next`` is not None: each request reads a bounded amount."""

    calls: tuple[CallRecord, ...]
    next: str | None


class CallStore(Protocol):
    def put_new(self, record: CallRecord) -> None:
        """Store a call that must not exist yet (``CallAlreadyExists`` otherwise)."""
        ...

    def get(self, call_id: str) -> CallRecord | None: ...

    def latest_for(self, lookup_key: str, now: datetime) -> CallRecord | None:
        """The newest registration for ``lookup_key`` that has not expired at ``now`` and is not used yet."""
        ...

    def close_session(
        self,
        call_id: str,
        *,
        credential_hash: str | None,
        status: CallStatus,
        reason: str,
        now: datetime,
        expires_at: datetime,
        report: MillisReport,
    ) -> SessionOutcome:
        """Millis reports the session over: close the call if it is open, else only add the Millis fields it
        does not have yet (the first report of a session stands; one that adds nothing writes nothing, not even
        ``updated_at``). Only when ``credential_hash`` is the call's own (None: the call has none, as calls
        registered before per-call credentials); else FOREIGN or LEGACY and nothing changes."""
        ...

    def list_calls(self, query: CallQuery) -> CallPage:
        """The calls ``query`` asks for, a page at a time. ``InvalidRequest`` for a cursor this store did not
        give out. Markers and counters are never listed."""
        ...

    def cancel_registration(self, snapshot: CallRecord, *, now: datetime) -> bool:
        """Move a registration no phone call has claimed (``registered``, no transaction, unexpired at ``now``)
        to ``snapshot``'s status (``canceled``) with its ``reason``, ``ended_at`` and ``expires_at``, and take it
        out of the lookup index. False when it is anything else (claimed first, expired, gone): nothing changes."""
        ...


def transaction_key(carrier: str, call_ref: str, attempt: int) -> str:
    """The store key of the marker that owns one attempt at one phone call."""
    return f"{carrier}-transaction#{call_ref}#{attempt}"


def call_fingerprint(caller: str | None, dialed: str | None) -> str:
    """What tells one call under a carrier call id from another reusing it: the (canonical) numbers, hashed.
    Not keyed: the call's record holds the same numbers in clear, and the marker must be writable even when
    the keys secret cannot be read."""
    text = f"{caller or ''}\x00{dialed or ''}".encode()
    return base64.urlsafe_b64encode(hashlib.sha256(b"millis-sip-bridge/call/v1\x00" + text).digest()[:12]).decode()


class TransactionState(StrEnum):
    ACQUIRED = "acquired"  # this invocation owns the phone call: it may register with Millis
    PENDING = "pending"  # another invocation owns it and has not finished
    CHALLENGED = "challenged"  # the caller was asked for a PIN: millis_call_id is the registration it unlocks
    DONE = "done"  # finished: millis_call_id is the call to bridge to
    FAILED = "failed"  # finished without an agent: release the caller again


@dataclass(frozen=True, slots=True)
class TransactionMark:
    """What the store knows of one attempt of one phone call (kept for retried invocations). An ACQUIRED mark
    that resumes a challenge carries the challenge's registration and how many PINs were tried."""

    state: TransactionState
    millis_call_id: str | None = None
    reason: str | None = None
    tries: int = 0
    # What the phone system said the call was (``call_fingerprint``) when the marker was first taken: the same
    # call id asked again for other numbers is another call under a reused id, not a retry (None: not known).
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class TransactionLock:
    """A phone call's marker as one invocation owns it: every later write to the marker holds only while
    ``owner`` is still the marker's owner, so an invocation that outlived its lease cannot overwrite what the
    retry that took over wrote."""

    key: str
    owner: str


class InboundCallStore(CallStore, Protocol):
    """What the inbound-call router and the call lifecycle need on top of the HTTP API's store."""

    def begin_transaction(
        self,
        key: str,
        *,
        owner: str,
        now: datetime,
        lease_seconds: float,
        expires_at: datetime,
        resume_challenge: bool = False,
        fingerprint: str | None = None,
    ) -> TransactionMark:
        """Take ownership of ``key`` for ``owner`` (ACQUIRED), or say who has it and how far they got (with the
        fingerprint the marker was first taken with). A PENDING mark whose lease has run out is taken over; with
        ``resume_challenge`` a CHALLENGED one is too (the caller answered), and the ACQUIRED mark then carries the
        challenge's registration and tries. A marker keeps the fingerprint it was first written with."""
        ...

    def fail_transaction(self, lock: TransactionLock, reason: str) -> None:
        """Finish the call without an agent (nothing changes once another owner took the marker over)."""
        ...

    def release_transaction(self, lock: TransactionLock) -> None:
        """Give up a PENDING marker without an answer, so the phone system's next try starts afresh (after a
        fault a retry may cure). A finished marker, or one another owner took over, stays as it is."""
        ...

    def transaction_mark(self, key: str) -> TransactionMark | None:
        """How far the phone call's attempt ``key`` got (None: no such marker)."""
        ...

    def challenge_transaction(self, lock: TransactionLock, *, candidate: str, tries: int) -> None:
        """The caller is being asked for the PIN of ``candidate`` (``tries`` wrong answers so far)."""
        ...

    def reserve_pin_attempt(self, call_id: str, *, limit: int) -> int | None:
        """Count one more PIN attempt on the registration ``call_id`` before its digits are compared, unless
        ``limit`` were already counted: the count with this one, or None (nothing counted) when the registration
        is locked, no longer waiting, or gone. One conditional write, so that however many calls try at once,
        at most ``limit`` attempts are ever compared."""
        ...

    def count_call(self, key: str, *, limit: int, expires_at: datetime) -> bool:
        """Count one more call under ``key`` (one number, one hour) unless ``limit`` calls were counted; False
        (and nothing counted) at the limit."""
        ...

    def pending_for(self, lookup_key: str, now: datetime) -> list[CallRecord]:
        """Unexpired ``registered`` calls for ``lookup_key``, newest first (a handful at most)."""
        ...

    def commit_inbound(self, record: CallRecord, *, lock: TransactionLock | None, claim: bool, now: datetime) -> bool:
        """Store a call a phone call now uses, and finish its transaction, in one DynamoDB transaction.

        ``claim``: ``record`` is an HTTP registration moving registered -> claimed; False when another
        phone call claimed it first. Otherwise ``record`` is new (``CallAlreadyExists`` if it is not).
        ``LeaseLost`` (nothing written) when another invocation took the marker over."""
        ...

    def transition(
        self, snapshot: CallRecord, to: CallStatus, *, allowed_from: tuple[CallStatus, ...], now: datetime
    ) -> bool:
        """Move a call forward (conditional on its status and transaction), writing the fields of
        ``snapshot`` that belong to ``to``. A call that was never stored is created from ``snapshot``.
        False when the call is elsewhere in its life (a duplicate or late event): nothing changes."""
        ...


class NumberRoutes(Protocol):
    def get(self, number: str) -> NumberRoute | None: ...

    def put(self, route: NumberRoute) -> bool:
        """Store ``route`` (replacing any); True when there was none."""
        ...

    def delete(self, number: str) -> bool:
        """False when there was no route."""
        ...

    def page(self, *, limit: int, after: str | None) -> tuple[list[NumberRoute], str | None]:
        """Up to ``limit`` routes after the opaque cursor ``after``, and the cursor of the next page (None: last)."""
        ...


# --- outbound calls (docs/outbound.md) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceCall:
    """What a carrier's call-control client is asked to place."""

    call_id: str  # the stack's (Millis') call id: the answer and status URLs carry it
    to: str  # E.164
    from_: str  # E.164, a number of the user's at that carrier
    answer_url: str  # requested by the carrier when the person answers (signed as the carrier signs webhooks)
    status_url: str  # the carrier's status callbacks (ringing, answered, completed, busy, no-answer, ...)
    ring_timeout_seconds: int
    machine_detection: str  # off, hangup, message


@dataclass(frozen=True, slots=True)
class Placed:
    # The carrier's id for the call (Twilio CallSid, Vonage uuid, Plivo request_uuid, ...); None when the
    # carrier's answer names none (Telnyx TeXML: its first status callback brings the CallSid).
    carrier_call_id: str | None


class Dialer(Protocol):
    """A carrier's call-control API (adapters/carriers). Raises ``CarrierError`` subclasses."""

    @property
    def carrier(self) -> str: ...

    @property
    def detects_machines(self) -> bool:
        """The carrier can tell a person from a machine (its answering-machine detection)."""
        ...

    def place(self, call: PlaceCall, *, budget: float) -> Placed:
        """Ask the carrier to place ``call`` within ``budget`` seconds."""
        ...

    def cancel(self, carrier_call_id: str, *, budget: float) -> None:
        """Hang up a call that has not been answered yet (nothing when it is already over)."""
        ...


class OutboundStore(InboundCallStore, Protocol):
    """What outbound calls need of the store on top of the phone path's."""

    def note_carrier_call(self, call_id: str, carrier_call_id: str) -> None:
        """Record the carrier's id for a stored call (kept if already there)."""
        ...

    def note_answered_by(self, call_id: str, answered_by: str) -> None:
        """Record who answered a stored call (the carrier's machine detection, reported after the answer)."""
        ...

    def take_ringing_slot(self, call_id: str, *, limit: int, until: datetime, now: datetime) -> bool:
        """Hold one of ``limit`` slots for calls ringing at once until ``until`` (slots past their time are
        free again); False (nothing held) when every slot is held."""
        ...

    def free_ringing_slot(self, call_id: str) -> None:
        """Give the slot back (nothing when it was not held)."""
        ...

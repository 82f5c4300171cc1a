"""Call records and their state machine: plain dataclasses and enums (no pydantic: a phone call waits on the
cold start of every module here)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from millis_sip.core.sip import SipUri

# lookup_key, call_id and agent_id: visible ASCII, no spaces, 1-128 characters. That admits E.164
# numbers, SIP Call-IDs (local@host) and carrier references.
# Each pattern twice: for JSON Schema (ECMA-262, where "$" ends the text) and compiled for Python, where "$"
# would also match before a final newline and "\d" any script's digits: "\Z" and [0-9] there.
TOKEN_PATTERN = r"^[\x21-\x7e]{1,128}$"  # noqa: S105 - a regex, not a secret
TOKEN = re.compile(r"[\x21-\x7e]{1,128}\Z")
E164_PATTERN = r"^\+[1-9][0-9]{1,14}$"
E164 = re.compile(r"\+[1-9][0-9]{1,14}\Z")
MAX_CALL_TTL_SECONDS = 86_400  # no registration lives longer: lookups never read older items


class CallStatus(StrEnum):
    """Where a call is (docs/operations.md, "Call lifecycle"). Moves only forward, see ``MOVES``.
    ``expired`` is never stored: it is how a ``registered`` record reads once it has lapsed."""

    REGISTERED = "registered"  # registered with Millis, waiting for a carrier or a phone call
    CLAIMED = "claimed"  # a phone call took it and is being bridged to Millis
    BRIDGED = "bridged"  # the phone call is connected to the Millis agent
    ENDED = "ended"  # the phone call is over
    FAILED = "failed"  # the call could not be bridged (see reason)
    EXPIRED = "expired"
    # An outbound call (docs/outbound.md): placed through a carrier, then the person answers, then it is bridged.
    QUEUED = "queued"  # registered with Millis and handed to the carrier, not ringing yet
    RINGING = "ringing"  # the person's phone rings
    ANSWERED = "answered"  # the person (or a machine the call goes on with) answered: being bridged to Millis
    NO_ANSWER = "no_answer"  # nobody answered within the ring timeout
    BUSY = "busy"  # the line was busy (or the person declined)
    CANCELED = "canceled"  # canceled before it was answered or claimed (DELETE /calls/{call_id})
    MACHINE = "machine"  # a machine answered and machine_detection said hang up


OPEN = (CallStatus.REGISTERED, CallStatus.CLAIMED, CallStatus.BRIDGED)
ON_A_PHONE = (CallStatus.CLAIMED, CallStatus.BRIDGED)
# An outbound call before the person answers: the carrier may still hang it up, and a DELETE cancels it.
NOT_ANSWERED = (CallStatus.QUEUED, CallStatus.RINGING)
OUTBOUND_OPEN = (*NOT_ANSWERED, CallStatus.ANSWERED)
# Where a call may be, in either direction, before it is over.
LIVE = (*OPEN, *OUTBOUND_OPEN)

# The state machine: the statuses a call may move to each status from. Every move is one conditional write,
# so a duplicate, late or out-of-order event finds the call elsewhere and changes nothing.
MOVES: dict[CallStatus, tuple[CallStatus, ...]] = {
    CallStatus.CLAIMED: (CallStatus.REGISTERED,),  # a phone call claims an HTTP registration
    CallStatus.BRIDGED: (CallStatus.CLAIMED, CallStatus.ANSWERED),  # the agent answered the bridged leg
    CallStatus.ENDED: LIVE,  # a hang-up, or Millis' session report (any open call)
    CallStatus.FAILED: LIVE,  # the bridge failed, the carrier refused the answer or the call, Millis reported an error
    CallStatus.RINGING: (CallStatus.QUEUED,),
    CallStatus.ANSWERED: NOT_ANSWERED,
    CallStatus.NO_ANSWER: NOT_ANSWERED,
    CallStatus.BUSY: NOT_ANSWERED,
    # An outbound call before it is answered, or a registration no phone call has claimed (DELETE /calls/{call_id}).
    CallStatus.CANCELED: (*NOT_ANSWERED, CallStatus.REGISTERED),
    CallStatus.MACHINE: OUTBOUND_OPEN,
}

# The fields a move writes over what is stored; every other field of the snapshot is only filled in if missing.
FIELDS_OF_MOVE: dict[CallStatus, tuple[str, ...]] = {
    CallStatus.BRIDGED: ("bridged_at", "leg_b_call_id"),
    CallStatus.ENDED: ("ended_at", "duration_seconds", "reason"),
    CallStatus.FAILED: ("ended_at", "reason"),
    CallStatus.RINGING: ("ringing_at", "carrier_call_id"),
    CallStatus.ANSWERED: ("answered_at", "answered_by", "carrier_call_id"),
    CallStatus.NO_ANSWER: ("ended_at", "reason"),
    CallStatus.BUSY: ("ended_at", "reason"),
    CallStatus.CANCELED: ("ended_at", "reason"),
    CallStatus.MACHINE: ("ended_at", "reason", "answered_by"),
}
# Statuses after which nothing more happens to a call.
OVER = frozenset(status for status in CallStatus if status not in LIVE and status is not CallStatus.EXPIRED)


class Direction(StrEnum):
    """Who started the call: a person calling in (``inbound``, the default) or the stack placing it through a
    carrier (``outbound``, POST /calls/outbound)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class CallSource(StrEnum):
    """Who made the registration: ``http`` (POST /calls), or the phone system whose call the router registered
    it for (``chime``, ``twilio``, ``sip``, ...)."""

    HTTP = "http"
    CHIME = "chime"


class CallerVerification(StrEnum):
    """Which side of a phone call a registration's ``lookup_key`` is, and what the call must show to claim it
    (docs/router.md, "Caller ID is not proof"). The first three are about the **caller's** number and are never
    claimed by a call *to* that number; ``dialed_number`` is one of your numbers, claimed only by a call to it."""

    ATTESTATION = "attestation"  # the carrier verified the caller's number (STIR/SHAKEN, full attestation A)
    PIN = "pin"  # the caller keys in the PIN the registration was given
    TRUST_CALLER_ID = "trust_caller_id"  # caller ID alone (anyone can fake it): an explicit, documented risk
    DIALED_NUMBER = "dialed_number"  # the number dialed: whoever calls it takes the registration, no proof

    @property
    def by_caller(self) -> bool:
        """Claimed by the caller's number (with proof), not by the dialed number."""
        return self is not CallerVerification.DIALED_NUMBER


# PIN attempts, over all calls, after which a registration cannot be claimed by caller ID. Each attempt is
# counted before its digits are compared (``pin_failures``), so no more than this many are ever compared,
# however many calls try at once; the right PIN claims the registration, so the count is the wrong ones.
MAX_PIN_FAILURES = 5
PIN_DIGITS = 6


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A registered call as the bridge stores it. Never holds the Millis key, agent_config or metadata."""

    call_id: str
    sip_uri: SipUri
    millis_region: str
    status: CallStatus
    created_at: datetime
    expires_at: datetime
    lookup_key: str | None = None
    agent_id: str | None = None
    source: str = CallSource.HTTP
    # How a phone call claiming it by the caller's number proves it is that caller; a PIN only as a hash.
    caller_verification: CallerVerification = CallerVerification.ATTESTATION
    pin_hash: str | None = None
    pin_failures: int = 0
    # The hash of the credential Millis' session webhook for this call carries (only that opens the record).
    webhook_hash: str | None = None
    # Filled in when a phone call uses the registration.
    transaction_id: str | None = None
    caller_number: str | None = None
    dialed_number: str | None = None
    leg_b_call_id: str | None = None
    bridged_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: int | None = None
    reason: str | None = None
    # From Millis' session_data_webhook, when the session ends.
    millis_call_status: str | None = None
    millis_duration_seconds: int | None = None
    millis_session_id: str | None = None
    # Outbound calls (docs/outbound.md): the carrier placing it, its id for the call, how it went before the bridge.
    direction: Direction = Direction.INBOUND
    carrier: str | None = None
    carrier_call_id: str | None = None
    machine_detection: str | None = None  # off, hangup, message
    ring_timeout_seconds: int | None = None
    ringing_at: datetime | None = None
    answered_at: datetime | None = None
    answered_by: str | None = None  # human, machine, unknown: as the carrier's detection reported it
    # A transfer to a person (core/transfer.py, docs/transfers.md): where, how, who asked, and how it went.
    transfer_to: str | None = None  # E.164 or a sip: URI
    transfer_mode: str | None = None  # cold, warm
    transfer_by: str | None = None  # api
    transfer_status: str | None = None  # in_progress, connected, failed
    transfer_summary: str | None = None  # what the person hears first (warm)
    transfer_announce: str | None = None  # what the caller hears before the target rings
    transfer_requested_at: datetime | None = None
    transfer_ended_at: datetime | None = None

    @property
    def pin_locked(self) -> bool:
        return self.pin_failures >= MAX_PIN_FAILURES

    def as_seen_at(self, now: datetime) -> CallRecord:
        """The record with ``expired`` status once its registration has lapsed (TTL deletion lags)."""
        if self.status is CallStatus.REGISTERED and now >= self.expires_at:
            return replace(self, status=CallStatus.EXPIRED)
        return self

"""Transfers: the agent hands the caller to a person (docs/transfers.md).

``POST /calls/{call_id}/transfer`` asks the stack to move the call's phone leg, through the carrier's call
control, from the Millis agent to a target: a phone number (E.164) or a SIP URI. The guards come first and
nothing is sent anywhere when one refuses: the call must be connected to its agent (not over, not still
ringing), through a carrier whose call control the stack drives; the target must be allowed
(``TRANSFER_ALLOWED_TARGETS``: E.164 prefixes and SIP domains, nothing by default); and one transfer at a time
per call (a conditional write on the record). The record then shows the transfer (``transfer_to``, ``_mode``,
``_by``, ``_status``, ``_requested_at``) and the carrier's report of the transfer leg closes it (``connected``
or ``failed``, ``transfer_ended_at``).

Cold: the caller hears ``announce`` (if any), then the target rings. Warm: the person who answers hears the
``summary`` first (a whisper), then the caller is joined; a SIP target also gets it as ``X-Transfer-Summary``.
A target that does not answer: the caller hears the failure message, then the call ends (the agent's session
ended when its leg was moved, so there is no agent to go back to).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from millis_sip.core.calls import E164, OVER, CallRecord, CallStatus, Direction
from millis_sip.core.errors import (
    BridgeError,
    CallNotFound,
    CallNotTransferable,
    StoreUnavailable,
    TransferInProgress,
    TransferTargetNotAllowed,
    TransferUnavailable,
)
from millis_sip.core.keys import StackKeys
from millis_sip.core.ports import (
    Clock,
    NumberRoutes,
    Parallel,
    TransactionMark,
    in_sequence,
    transaction_key,
    within_store_budget,
)

log = logging.getLogger(__name__)

TRANSFER_PURPOSE = "transfer"  # what the transfer URLs' tokens are for (core.keys.action_token)
MAX_SUMMARY, MAX_ANNOUNCE = 1000, 500  # characters (a whisper is spoken; a SIP header has room for this)
SIP_TARGET_PATTERN = r"sips?:(?:[A-Za-z0-9._~%!$&'()*+,;=-]+@)?([A-Za-z0-9.-]+)(?::[0-9]{1,5})?"
SIP_TARGET = re.compile(SIP_TARGET_PATTERN + r"\Z")
# What POST /calls/{call_id}/transfer's ``to`` may be, as its schema states it: E.164, or a sip:/sips: URI.
TARGET_PATTERN = rf"^(?:\+[1-9][0-9]{{1,14}}|{SIP_TARGET_PATTERN})$"
# A call the agent is on: an inbound call claimed or bridged, an outbound call answered or bridged.
LIVE = frozenset({CallStatus.CLAIMED, CallStatus.BRIDGED, CallStatus.ANSWERED})


class TransferMode(StrEnum):
    COLD = "cold"
    WARM = "warm"


class TransferStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    CONNECTED = "connected"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """``POST /calls/{call_id}/transfer``'s body, checked for form by the HTTP edge."""

    to: str  # E.164, or a sip:/sips: URI
    mode: TransferMode = TransferMode.COLD
    summary: str | None = None
    announce: str | None = None
    asked_by: str = "api"


@dataclass(frozen=True, slots=True)
class TransferPolicy:
    """Where calls may be transferred (docs/transfers.md, "Guards"): E.164 prefixes (``+1``, ``+4420``) and SIP
    domains (``sip:pbx.example.com``, any user at that host). Empty: no transfers."""

    allowed: tuple[str, ...] = ()

    def allows(self, target: str) -> bool:
        if target.startswith("+"):
            return any(rule.startswith("+") and target.startswith(rule) for rule in self.allowed)
        match = SIP_TARGET.match(target)
        if match is None:
            return False
        host = match.group(1).lower()
        return any(rule.lower() in (f"sip:{host}", f"sips:{host}") for rule in self.allowed if not rule.startswith("+"))


@dataclass(frozen=True, slots=True)
class TransferPlan:
    """What the carrier is asked to do with the call's phone leg."""

    call_id: str
    carrier_call_id: str  # the caller's leg at the carrier
    to: str
    mode: TransferMode
    announce: str | None
    summary: str | None
    status_url: str  # where the carrier reports the transfer leg (the stack's transfer status URL)
    whisper_url: str  # what the person who answers hears first (warm)
    caller_id: str | None = None  # your number the call is at (the one dialed, or called from): the leg's From
    answer_url: str = ""  # where a carrier that moves a call to a URL (Plivo) fetches the transfer's call document


class TransferUrls(Protocol):
    def transfer_status_url(self, carrier: str, call_id: str, token: str) -> str: ...

    def transfer_whisper_url(self, carrier: str, call_id: str, token: str) -> str: ...

    def transfer_answer_url(self, carrier: str, call_id: str, token: str) -> str: ...


class Transferer(Protocol):
    """A carrier's call control, moving a live call's leg to a transfer target."""

    @property
    def carrier(self) -> str: ...

    def transfer(self, plan: TransferPlan, *, budget: float) -> None: ...


def carrier_refusal(transferer: Transferer, request: TransferRequest) -> str | None:
    """What the carrier's call control cannot do with ``request`` (a target or a mode it has no way to honour),
    said before anything is written or sent; None when it can. A transferer says so with ``refusal(request)``."""
    refusal = getattr(transferer, "refusal", None)
    return refusal(request) if callable(refusal) else None


class TransferStore(Protocol):
    def get(self, call_id: str) -> CallRecord | None: ...

    def begin_transfer(self, record: CallRecord, *, live: frozenset[CallStatus]) -> bool:
        """Write the transfer's fields if the call is still ``live`` and has no transfer in progress."""
        ...

    def end_transfer(self, call_id: str, status: str, *, ended_at: datetime) -> bool:
        """Close the call's transfer under way as ``status``; False when none was under way."""
        ...

    def transaction_mark(self, key: str) -> TransactionMark | None: ...


class CallTransfers:
    """Transferring live calls (the management API's use case)."""

    def __init__(
        self,
        store: TransferStore,
        transferers: Mapping[str, Transferer],
        *,
        numbers: NumberRoutes | None = None,
        policy: TransferPolicy,
        clock: Clock,
        keys: StackKeys,
    ) -> None:
        self._store = store
        self._numbers = numbers
        self._transferers = dict(transferers)
        self._policy = policy
        self._clock = clock
        self._keys = keys

    def _policy_for(self, record: CallRecord) -> tuple[TransferPolicy, str]:
        """The number route's transfer targets when it sets any, else the stack's (and whose they are)."""
        number = _route_number(record)
        route = self._numbers.get(number) if self._numbers is not None and number else None
        if route is not None and route.transfer_targets:
            return TransferPolicy(route.transfer_targets), "the number's"
        return self._policy, "the stack's"

    def transfer(self, call_id: str, request: TransferRequest, *, budget: float, urls: TransferUrls) -> CallRecord:
        """Move ``call_id``'s phone leg to ``request.to``; the record with the transfer under way."""
        record = self._store.get(call_id)
        if record is None:
            raise CallNotFound(f"No call {call_id}.")
        carrier = _carrier(record) or ""
        self._check(record, request.to)
        transferer = self._transferers.get(carrier)
        if transferer is None:
            raise TransferUnavailable(
                f"Calls through {carrier} cannot be transferred by the stack (docs/transfers.md, 'Which carriers')."
            )
        refused = carrier_refusal(transferer, request)
        if refused is not None:
            raise TransferUnavailable(refused)
        moving, plan = self._begin(record, request, carrier, urls)
        try:
            transferer.transfer(plan, budget=budget)
        except Exception as exc:
            # A request that may have been acted on (a read that timed out) stays in progress: the transfer leg's
            # report closes it. Anything else is over.
            if not getattr(exc, "maybe_placed", False):
                self._store.end_transfer(call_id, TransferStatus.FAILED.value, ended_at=self._clock.now())
            raise
        log.info(
            "Transfer started",
            extra={"call_id": call_id, "carrier": carrier, "to": _masked(request.to), "mode": request.mode.value},
        )
        return moving

    def refer(
        self, call_id: str, refer_to: str, *, carrier: str, urls: TransferUrls, legs: Collection[str] = ()
    ) -> tuple[CallRecord, TransferPlan]:
        """The agent's leg asked for a transfer with SIP REFER (``refer_to``: the Refer-To header's value), and the
        phone system ``carrier`` carries it out itself when the stack says yes (Twilio's <Dial referUrl>, a SIP
        server relaying the REFER): the same guards as an API transfer, cold, asked by ``refer``. ``legs``: the
        phone system's ids of the call the REFER came on (the record's call must be one of them). The record with
        the transfer under way, and the plan of the transfer (the target read from Refer-To, its status URL)."""
        record = self._store.get(call_id)
        if record is None or _carrier(record) != carrier:
            raise CallNotFound(f"No call {call_id} through {carrier}.")
        if legs and not {record.transaction_id, record.carrier_call_id} & set(legs):
            raise CallNotFound(f"Call {call_id} is not the call the REFER came on.")
        policy, _ = self._policy_for(record)
        target = refer_target(refer_to, policy)
        if target is None:
            raise TransferTargetNotAllowed(
                f"Refer-To {_masked_refer(refer_to)} is neither a number (tel:+E.164, or a SIP URI whose user is one)"
                " nor a SIP URI."
            )
        request = TransferRequest(to=target, mode=TransferMode.COLD, asked_by="refer")
        self._check(record, target)
        moving, plan = self._begin(record, request, carrier, urls)
        log.info("Transfer asked by REFER", extra={"call_id": call_id, "carrier": carrier, "to": _masked(target)})
        return moving, plan

    def refer_on_leg(
        self, carrier: str, call_ref: str, refer_to: str, *, urls: TransferUrls
    ) -> tuple[CallRecord, TransferPlan]:
        """A REFER on the phone call ``call_ref`` of ``carrier`` (a SIP server's Call-ID): the call it was routed
        to, then ``refer``."""
        call_id = call_on_leg(self._store, carrier, call_ref)
        if call_id is None:
            raise CallNotFound(f"No call routed for {carrier} call {call_ref[:64]!r}.")
        return self.refer(call_id, refer_to, carrier=carrier, urls=urls, legs={call_ref})

    def _check(self, record: CallRecord, target: str) -> None:
        """The guards every transfer passes before anything is written or sent: a live call, an allowed target."""
        leg = record.carrier_call_id or record.transaction_id  # the caller's leg at the carrier
        if record.status in OVER or record.status not in LIVE or not leg:
            raise CallNotTransferable(
                f"Call {record.call_id} is {record.status.value}: only a call connected to its agent can be"
                " transferred."
            )
        policy, whose = self._policy_for(record)
        if not policy.allowed:
            raise TransferTargetNotAllowed(
                "Transfers are off: allow targets with the TransferAllowedTargets parameter (TRANSFER_ALLOWED_TARGETS),"
                " e.g. +1,sip:pbx.example.com, or with transfer_targets on the number's route."
            )
        if not policy.allows(target):
            raise TransferTargetNotAllowed(
                f"{_masked(target)} is not among {whose} transfer targets ({', '.join(policy.allowed)})."
            )

    def _begin(
        self, record: CallRecord, request: TransferRequest, carrier: str, urls: TransferUrls
    ) -> tuple[CallRecord, TransferPlan]:
        """Record the transfer under way (one at a time: a conditional write), and the plan the phone system is
        given."""
        call_id = record.call_id
        self._keys.ready()
        moving = replace(
            record,
            transfer_to=request.to,
            transfer_mode=request.mode.value,
            transfer_by=request.asked_by,
            transfer_status=TransferStatus.IN_PROGRESS.value,
            transfer_summary=request.summary,
            transfer_announce=request.announce,
            transfer_requested_at=self._clock.now(),
            transfer_ended_at=None,
        )
        if not self._store.begin_transfer(moving, live=LIVE):
            current = self._store.get(call_id) or record
            if current.transfer_status == TransferStatus.IN_PROGRESS:
                raise TransferInProgress(f"Call {call_id} has a transfer under way.")
            raise CallNotTransferable(f"Call {call_id} is {current.status.value} now: it can no longer be transferred.")
        token = self._keys.action_token(TRANSFER_PURPOSE, carrier, call_id)
        plan = TransferPlan(
            call_id=call_id,
            carrier_call_id=record.carrier_call_id or record.transaction_id or "",
            to=request.to,
            mode=request.mode,
            announce=request.announce,
            summary=request.summary,
            status_url=urls.transfer_status_url(carrier, call_id, token),
            whisper_url=urls.transfer_whisper_url(carrier, call_id, token),
            caller_id=_route_number(record),
            answer_url=urls.transfer_answer_url(carrier, call_id, token),
        )
        return moving, plan


# The refusals of a REFER, and the status an answer gives each (HTTP's words: the phone system relays or not).
REFER_REFUSALS: tuple[tuple[type[BridgeError], int], ...] = (
    (TransferTargetNotAllowed, 403),
    (CallNotFound, 404),
    (CallNotTransferable, 409),
    (TransferInProgress, 409),
)


def refer_refusal(exc: BridgeError) -> int | None:
    """The status of a REFER refused by ``exc``; None: not a refusal (an error the caller raises on)."""
    return next((status for kind, status in REFER_REFUSALS if isinstance(exc, kind)), None)


def call_on_leg(store: TransferStore, carrier: str, call_ref: str) -> str | None:
    """The Millis call a phone call of ``carrier`` was routed to: its last attempt's (a failover's), else its
    first's."""
    for attempt in (2, 1):
        mark = store.transaction_mark(transaction_key(carrier, call_ref, attempt))
        if mark is not None and mark.millis_call_id:
            return mark.millis_call_id
    return None


def _carrier(record: CallRecord) -> str | None:
    """The phone system the call is at: the one it was placed through, the one that claimed a registration,
    else the one whose inbound call registered it."""
    return record.carrier or (None if record.source == "http" else str(record.source))


def _route_number(record: CallRecord) -> str | None:
    """The user's number the call belongs to: the one dialed (inbound), or the one called from (outbound)."""
    return record.caller_number if record.direction is Direction.OUTBOUND else record.dialed_number


def transfer_target(value: str) -> str | None:
    """The target in its canonical form (E.164, or a sip:/sips: URI), or None when it is neither."""
    value = value.strip()
    if value.startswith("+"):
        return value if E164.match(value) else None
    return value if SIP_TARGET.match(value) else None


def refer_target(refer_to: str, policy: TransferPolicy) -> str | None:
    """The target of a REFER's Refer-To in the stack's form (E.164, or a sip:/sips: URI without parameters or
    headers), or None when it is neither. ``"Ana" <sip:ana@pbx.example.com;transport=tls>`` is
    ``sip:ana@pbx.example.com``; ``<tel:+14155550199>``, ``sip:+14155550199@host;user=phone`` are ``+14155550199``,
    and so is a SIP URI whose user is an E.164 number at a host that is not an allowed SIP domain (a phone
    system writes the number it is to dial at its own host)."""
    value = refer_to.strip()
    if "<" in value:  # name-addr: the URI is between the angle brackets
        inner = value[value.index("<") + 1 :]
        if ">" not in inner:
            return None
        value = inner[: inner.index(">")]
    value = value.strip()
    scheme, _, rest = value.partition(":")
    scheme = scheme.lower()
    address = rest.split("?", 1)[0]
    main, *parameters = address.split(";")
    if scheme == "tel":
        number = main.replace("-", "").replace(".", "")
        return number if E164.match(number) else None
    if scheme not in ("sip", "sips"):
        return None
    uri = f"{scheme}:{main}"
    if SIP_TARGET.match(uri) is None:
        return None
    user = main.rsplit("@", 1)[0] if "@" in main else ""
    if E164.match(user) and ("user=phone" in (p.lower() for p in parameters) or not policy.allows(uri)):
        return user
    return uri


def _masked_refer(refer_to: str) -> str:
    """A Refer-To value as errors show it: its length only (it may hold a number in any form)."""
    return f"({len(refer_to)} characters)"


def _masked(target: str) -> str:
    """A target as logs and errors show it: a number's last four digits hidden, a SIP URI's user hidden."""
    if target.startswith("+"):
        return target[:-4] + "****"
    match = SIP_TARGET.match(target)
    return f"sip:***@{match.group(1)}" if match else "***"


@dataclass
class TransferReports:
    """What the carrier edges ask when a transfer leg reports (InboundFunction): the call, and how it ended."""

    store: TransferStore
    clock: Clock
    parallel: Parallel = in_sequence

    def find(self, call_id: str, carrier: str, *, deadline: float) -> CallRecord | None:
        """The call ``call_id`` with a transfer through ``carrier`` (None: unknown, or the store cannot say)."""
        try:
            record = within_store_budget(self.parallel, self.clock, deadline, lambda: self.store.get(call_id))
        except StoreUnavailable as exc:
            log.error("Cannot read the transferred call's record", extra={"error": str(exc)})
            return None
        if record is None or record.transfer_status is None:
            return None
        return record if _carrier(record) == carrier else None

    def find_on_leg(self, carrier: str, call_ref: str, *, deadline: float) -> CallRecord | None:
        """The call with a transfer that the phone call ``call_ref`` of ``carrier`` was routed to."""
        try:
            call_id = within_store_budget(
                self.parallel, self.clock, deadline, lambda: call_on_leg(self.store, carrier, call_ref)
            )
        except StoreUnavailable as exc:
            log.error("Cannot read the REFER's call", extra={"error": str(exc)})
            return None
        return None if call_id is None else self.find(call_id, carrier, deadline=deadline)

    def ended(self, record: CallRecord, *, connected: bool, deadline: float) -> bool:
        status = TransferStatus.CONNECTED if connected else TransferStatus.FAILED
        now = self.clock.now()
        try:
            moved = within_store_budget(
                self.parallel,
                self.clock,
                deadline,
                lambda: self.store.end_transfer(record.call_id, status.value, ended_at=now),
            )
        except StoreUnavailable as exc:
            log.error("Could not record how the transfer ended", extra={"error": str(exc)})
            return False
        log.info("Transfer ended", extra={"call_id": record.call_id, "transfer_status": status.value})
        return moved

"""The SIP media application: an inbound phone call is handed to a Millis agent through a Voice Connector.

One method per invocation type (README, "Chime SIP media application"):

- NEW_INBOUND_CALL: own the Chime transaction (a retried invocation reuses the first one's result), claim
  a pending HTTP registration for the caller (or the dialed number), else register a new call on the
  nearest Millis region that has a Voice Connector; answer CallAndBridge, all within the answer budget.
- ACTION_SUCCESSFUL (CallAndBridge): the call is bridged.
- ACTION_FAILED (CallAndBridge): one more try on the other region when time and configuration allow.
- HANGUP: hang up the other leg (Chime does not) and close the record.
- INVALID_LAMBDA_RESPONSE: log, count, hang up.
- anything else: an empty answer.

What later invocations need travels in TransactionAttributes, so a call never depends on a DynamoDB
write having succeeded: a record that could not be written is written by the next invocation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from millis_sip.config import ChimeSettings, VoiceRoute
from millis_sip.errors import BridgeError, MillisError, StoreUnavailable
from millis_sip.millis import MIN_ATTEMPT_SECONDS, MillisGateway
from millis_sip.observability import count_call_failure, count_call_outcome, count_registration, logger
from millis_sip.records import TOKEN_PATTERN, CallRecord, CallSource, CallStatus, iso
from millis_sip.regions import MillisRegion
from millis_sip.sip import InvalidSipUri, parse_sip_uri
from millis_sip.sma_actions import (
    HANGUP_NORMAL,
    HANGUP_UNAVAILABLE,
    VOICE_CONNECTOR_USER,
    Action,
    call_and_bridge,
    hangup,
    response,
    speak,
)
from millis_sip.sma_events import (
    ACTION_FAILED,
    ACTION_SUCCESSFUL,
    CALL_AND_BRIDGE,
    HANGUP,
    INVALID_LAMBDA_RESPONSE,
    LEG_A,
    LEG_B,
    NEW_INBOUND_CALL,
    Participant,
    SmaEvent,
    still_up_besides,
    whole_number,
)
from millis_sip.store import InboundCallStore, TransactionMark, TransactionState, transaction_key
from millis_sip.webhook import SessionWebhook, utc_now

STORE_RESERVE_SECONDS = 0.5  # kept back from Millis for the DynamoDB write and the answer
POLL_SECONDS = 0.1  # while another invocation of the same transaction is still working
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_TOKEN = re.compile(TOKEN_PATTERN)

# TransactionAttributes (at most 10): everything needed to write or move the record on a later event.
A_CALL_ID, A_REGION, A_URI, A_SOURCE = "millis_call_id", "millis_region", "sip_uri", "source"
A_CREATED, A_EXPIRES, A_ATTEMPT, A_LOOKUP, A_AGENT = "created_at", "expires_at", "attempt", "lookup_key", "agent_id"
A_BRIDGED, A_FAILURE = "bridged_at", "failure_reason"


class Unroutable(BridgeError):
    """The Millis SIP URI cannot go through the region's Voice Connector."""

    code = "uri_not_routable"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SipMediaApp:
    def __init__(
        self,
        gateway: MillisGateway,
        store: InboundCallStore,
        chime: ChimeSettings,
        *,
        region_order: Sequence[MillisRegion],
        ttl_seconds: int,
        default_agent_id: str | None,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        webhook: SessionWebhook | None = None,
    ) -> None:
        self._gateway = gateway
        self._store = store
        self._chime = chime
        self._order = tuple(region_order)
        self._ttl = timedelta(seconds=ttl_seconds)
        self._default_agent_id = default_agent_id
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._webhook = webhook

    def handle(self, event: SmaEvent, *, deadline: float) -> dict[str, Any]:
        """Answer one invocation. ``deadline`` is on the ``monotonic`` clock: the answer must be ready by then."""
        if event.type == NEW_INBOUND_CALL:
            return self._new_inbound_call(event, deadline)
        if event.type == ACTION_SUCCESSFUL:
            return self._action_successful(event)
        if event.type == ACTION_FAILED:
            return self._action_failed(event, deadline)
        if event.type == HANGUP:
            return self._hangup(event)
        if event.type == INVALID_LAMBDA_RESPONSE:
            return self._invalid_response(event)
        logger.info("Nothing to do for this invocation", extra={"invocation": event.type, "action": event.action_type})
        return response()

    # --- NEW_INBOUND_CALL -----------------------------------------------------------------------

    def _new_inbound_call(self, event: SmaEvent, deadline: float) -> dict[str, Any]:
        caller = event.a_leg
        if caller is None or caller.call_id is None or event.transaction_id is None:
            logger.error("NEW_INBOUND_CALL without a caller leg or a TransactionId")
            return self._release(caller, "malformed_event")
        return self._bridge(event, caller, attempt=1, deadline=deadline, regions=self._order)

    def _bridge(
        self, event: SmaEvent, caller: Participant, *, attempt: int, deadline: float, regions: Sequence[MillisRegion]
    ) -> dict[str, Any]:
        """Find or make a Millis call for this phone call and answer CallAndBridge, or release the caller."""
        tx = event.transaction_id or ""
        key = transaction_key(tx, attempt)
        mark = self._own(key, deadline)
        if mark is not None and mark.state is TransactionState.DONE:
            logger.info("Retried invocation: reusing the first answer", extra={"millis_call_id": mark.millis_call_id})
            count_call_outcome("retried")
            return self._answer_again(event, caller, mark, attempt)
        if mark is not None and mark.state is TransactionState.FAILED:
            return self._release(caller, mark.reason or "failed", count=False)
        if mark is not None and mark.state is TransactionState.PENDING:
            return self._release(caller, "retry_in_progress")
        lock = key if mark is not None else None
        # DynamoDB just failed (after its retries): every further call would spend the caller's time too.
        # No claim; register, answer, and let the record ride in TransactionAttributes to a later event.
        store_up = mark is not None

        record = self._claim(caller, tx, lock) if attempt == 1 and store_up else None
        if record is None:
            try:
                record = self._register(caller, tx, attempt=attempt, deadline=deadline, regions=regions)
            except BridgeError as exc:
                self._fail_transaction(lock, exc.code)
                return self._release(caller, exc.code)
            try:
                self._route(record)
            except Unroutable as exc:
                failed = replace(record, status=CallStatus.FAILED, reason=exc.reason, ended_at=record.created_at)
                if store_up:
                    self._commit(failed, lock)
                    self._fail_transaction(lock, exc.reason)
                logger.error(
                    "The Millis SIP URI cannot go through the Voice Connector",
                    extra={"millis_call_id": record.call_id, "reason": exc.reason, "sip_uri": record.sip_uri},
                )
                return self._release(caller, exc.reason)
            if store_up:
                self._commit(record, lock)
            else:
                logger.error(
                    "DynamoDB is unavailable: bridging without storing; a later event writes the record",
                    extra={"millis_call_id": record.call_id},
                )
        return self._bridge_answer(event, caller, record, attempt)

    def _own(self, key: str, deadline: float) -> TransactionMark | None:
        """Take the transaction, or wait (bounded by the deadline) for the invocation that has it."""
        while True:
            now = self._clock()
            lease = max(deadline - self._monotonic(), 0.0)
            try:
                mark = self._store.begin_transaction(
                    key, now=now, lease_seconds=lease, expires_at=now + self._ttl + timedelta(days=1)
                )
            except StoreUnavailable as exc:
                logger.warning("Cannot record the Chime transaction; going on without it", extra={"error": str(exc)})
                return None
            if mark.state is not TransactionState.PENDING:
                return mark
            if deadline - self._monotonic() < STORE_RESERVE_SECONDS + POLL_SECONDS:
                return mark  # the other invocation still has it and its lease is valid
            self._sleep(POLL_SECONDS)

    def _claim(self, caller: Participant, tx: str, lock: str | None) -> CallRecord | None:
        """Atomically take the newest pending HTTP registration for the caller's number, else the dialed one."""
        now = self._clock()
        keys = [k for k in dict.fromkeys((caller.from_, caller.to)) if k and _TOKEN.match(k)]
        for lookup_key in keys:
            try:
                candidates = self._store.pending_for(lookup_key, now)
            except StoreUnavailable as exc:
                logger.warning("Cannot look for pending registrations", extra={"error": str(exc)})
                return None
            for candidate in candidates:
                try:
                    self._route(candidate)
                except Unroutable as exc:
                    logger.warning(
                        "A pending registration cannot go through a Voice Connector; not claiming it",
                        extra={"millis_call_id": candidate.call_id, "reason": exc.reason},
                    )
                    continue
                claimed = replace(
                    candidate,
                    status=CallStatus.CLAIMED,
                    transaction_id=tx,
                    caller_number=caller.from_,
                    dialed_number=caller.to,
                )
                try:
                    won = self._store.commit_inbound(claimed, transaction_key=lock, claim=True, now=now)
                except StoreUnavailable as exc:
                    logger.warning("Cannot claim a pending registration", extra={"error": str(exc)})
                    return None
                if won:
                    logger.info("Claimed a pending registration", extra={"millis_call_id": claimed.call_id})
                    count_call_outcome("claimed")
                    return claimed
        return None

    def _register(
        self, caller: Participant, tx: str, *, attempt: int, deadline: float, regions: Sequence[MillisRegion]
    ) -> CallRecord:
        if self._default_agent_id is None:
            raise _Refused("no_agent", "DEFAULT_AGENT_ID is not set: no agent for calls without a registration")
        usable = [region for region in regions if region in self._chime.routes]
        if not usable:
            raise _Refused("no_voice_connector", "no Millis region has a Voice Connector configured")
        metadata = {
            "caller_number": caller.from_,
            "dialed_number": caller.to,
            "chime_transaction_id": tx,
            "chime_call_id": caller.call_id,
        }
        payload: dict[str, Any] = {
            "agent_id": self._default_agent_id,
            "metadata": {k: v for k, v in metadata.items() if v},
        }
        if self._webhook is not None:
            payload = self._webhook.attach(payload)
        budget = deadline - self._monotonic() - STORE_RESERVE_SECONDS
        try:
            registration = self._gateway.register(payload, budget=budget, regions=usable)
        except MillisError as exc:
            logger.error(
                "Millis could not register the phone call",
                extra={
                    "error": exc.code,
                    "attempts": [f"{a.region}:{a.outcome}:{a.elapsed_ms}ms" for a in exc.attempts],
                },
            )
            raise
        count_registration(
            registration.region.value,
            failed_over=registration.failed_over,
            latency_ms=registration.attempts[-1].elapsed_ms,
        )
        now = self._clock()
        return CallRecord(
            call_id=registration.call_id,
            sip_uri=registration.sip_uri,
            millis_region=registration.region.value,
            status=CallStatus.CLAIMED,
            created_at=now,
            expires_at=(now + self._ttl).replace(microsecond=0),
            # No lookup_key: carrier lookups find only registrations made over HTTP, never a phone call's.
            agent_id=self._default_agent_id,
            source=CallSource.CHIME,
            transaction_id=tx,
            caller_number=caller.from_,
            dialed_number=caller.to,
        )

    def _commit(self, record: CallRecord, lock: str | None) -> None:
        try:
            self._store.commit_inbound(record, transaction_key=lock, claim=False, now=self._clock())
        except (StoreUnavailable, BridgeError) as exc:
            # The call goes on: the record rides in TransactionAttributes and a later event writes it.
            logger.error(
                "Could not store the phone call's record; bridging anyway",
                extra={"millis_call_id": record.call_id, "error": str(exc)},
            )

    def _fail_transaction(self, lock: str | None, reason: str) -> None:
        if lock is None:
            return
        try:
            self._store.fail_transaction(lock, reason)
        except StoreUnavailable as exc:
            logger.warning("Could not mark the Chime transaction failed", extra={"error": str(exc)})

    def _route(self, record: CallRecord) -> tuple[VoiceRoute, str]:
        try:
            route = self._chime.routes.get(MillisRegion(record.millis_region))
        except ValueError:
            route = None
        if route is None:
            raise Unroutable("no_voice_connector")
        try:
            uri = parse_sip_uri(record.sip_uri)
        except InvalidSipUri:
            raise Unroutable("sip_uri_invalid") from None
        if uri.host.rstrip(".") != route.sip_host:
            raise Unroutable("sip_host_mismatch")
        if not uri.user or not VOICE_CONNECTOR_USER.match(uri.user):
            raise Unroutable("sip_user_not_routable")
        return route, uri.user

    def _answer_again(
        self, event: SmaEvent, caller: Participant, mark: TransactionMark, attempt: int
    ) -> dict[str, Any]:
        try:
            record = self._store.get(mark.millis_call_id) if mark.millis_call_id else None
        except StoreUnavailable:
            record = None
        if record is None:
            return self._release(caller, "retry_without_record")
        try:
            return self._bridge_answer(event, caller, record, attempt)
        except Unroutable as exc:  # the first invocation found it unroutable and is recording that
            return self._release(caller, exc.reason, count=False)

    def _bridge_answer(self, event: SmaEvent, caller: Participant, record: CallRecord, attempt: int) -> dict[str, Any]:
        route, user = self._route(record)
        caller_id = next((n for n in (caller.from_, caller.to) if n and E164.match(n)), caller.from_ or caller.to)
        action = call_and_bridge(
            caller_id=caller_id or "",
            voice_connector_arn=route.voice_connector_arn,
            uri_user=user,
            timeout_seconds=self._chime.bridge_timeout_seconds,
            sip_headers={"X-Millis-Call-Id": record.call_id, "X-Chime-Transaction-Id": event.transaction_id or ""},
        )
        count_call_outcome("bridging")
        logger.info(
            "Bridging the phone call to Millis",
            extra={
                "millis_call_id": record.call_id,
                "millis_region": record.millis_region,
                "source": str(record.source),
                "attempt": attempt,
            },
        )
        return response([action], attributes(record, attempt))

    # --- later events --------------------------------------------------------------------------

    def _action_successful(self, event: SmaEvent) -> dict[str, Any]:
        if event.action_type != CALL_AND_BRIDGE:
            return response()
        snapshot = self._snapshot(event)
        if snapshot is None:
            logger.warning("CallAndBridge succeeded for a call this application has no record of")
            return response()
        now = self._clock()
        b_leg = event.b_leg
        bridged = replace(
            snapshot, bridged_at=now, leg_b_call_id=b_leg.call_id if b_leg else None, expires_at=self._expiry(now)
        )
        self._transition(bridged, CallStatus.BRIDGED, (CallStatus.CLAIMED,), now)
        count_call_outcome("bridged")
        logger.info("Phone call bridged to Millis", extra={"millis_call_id": snapshot.call_id})
        attempt = _int(event.attributes.get(A_ATTEMPT), 1)
        return response([], {**attributes(snapshot, attempt), A_BRIDGED: str(_epoch_ms(now))})

    def _action_failed(self, event: SmaEvent, deadline: float) -> dict[str, Any]:
        caller = event.a_leg
        if event.action_type != CALL_AND_BRIDGE:
            logger.warning("An action failed", extra={"action": event.action_type, "error_type": event.error_type})
            if event.action_type == "Hangup" or caller is None or caller.disconnected:
                return response()
            return response([hangup(caller.call_id, LEG_A, HANGUP_UNAVAILABLE)])
        reason = f"bridge_failed:{event.error_type or 'unknown'}"
        snapshot = self._snapshot(event)
        logger.error(
            "CallAndBridge failed",
            extra={
                "error_type": event.error_type,
                "error_message": event.error_message,
                "millis_call_id": snapshot and snapshot.call_id,
            },
        )
        now = self._clock()
        if snapshot is not None:
            failed = replace(snapshot, reason=reason, ended_at=now, expires_at=self._expiry(now))
            self._transition(failed, CallStatus.FAILED, (CallStatus.CLAIMED,), now)
        attempt = _int(event.attributes.get(A_ATTEMPT), 1)
        if caller is not None and caller.call_id and not caller.disconnected and snapshot is not None:
            others = [r for r in self._order if r.value != snapshot.millis_region and r in self._chime.routes]
            retry = attempt == 1 and snapshot.source == CallSource.CHIME and others
            if retry and deadline - self._monotonic() > STORE_RESERVE_SECONDS + MIN_ATTEMPT_SECONDS:
                count_call_failure(reason)
                logger.info("Trying the other Millis region", extra={"regions": [r.value for r in others]})
                return self._bridge(event, caller, attempt=attempt + 1, deadline=deadline, regions=others)
        return self._release(caller, reason)

    def _hangup(self, event: SmaEvent) -> dict[str, Any]:
        gone = event.acted_on()
        remaining = still_up_besides(event, gone)
        actions = [hangup(p.call_id, p.tag, HANGUP_NORMAL) for p in remaining]
        snapshot = self._snapshot(event)
        if snapshot is not None:
            now = self._clock()
            bridged_ms = _int(event.attributes.get(A_BRIDGED), 0)
            who = {LEG_A: "caller", LEG_B: "agent"}.get(gone.tag or "", "unknown") if gone else "unknown"
            if bridged_ms:
                duration = max(0, round((_epoch_ms(now) - bridged_ms) / 1000))
                reason = f"{who}_hung_up"
            else:
                duration, reason = 0, f"{who}_hung_up_before_bridge"
            ended = replace(
                snapshot, ended_at=now, duration_seconds=duration, reason=reason, expires_at=self._expiry(now)
            )
            if self._transition(ended, CallStatus.ENDED, (CallStatus.CLAIMED, CallStatus.BRIDGED), now):
                count_call_outcome("ended")
        logger.info(
            "Hang-up",
            extra={"leg": gone.tag if gone else None, "hanging_up": [p.tag for p in remaining]},
        )
        return response(actions)

    def _invalid_response(self, event: SmaEvent) -> dict[str, Any]:
        logger.error(
            "Chime refused this application's answer",
            extra={"error_type": event.error_type, "error_message": event.error_message, "sequence": event.sequence},
        )
        reason = f"invalid_lambda_response:{event.error_type or 'unknown'}"
        count_call_failure(reason)
        snapshot = self._snapshot(event)
        if snapshot is not None:
            now = self._clock()
            failed = replace(snapshot, reason=reason, ended_at=now, expires_at=self._expiry(now))
            self._transition(failed, CallStatus.FAILED, (CallStatus.CLAIMED, CallStatus.BRIDGED), now)
        return response(hang_up_everyone(event, HANGUP_UNAVAILABLE))

    # --- helpers -------------------------------------------------------------------------------

    def _release(self, caller: Participant | None, reason: str, *, count: bool = True) -> dict[str, Any]:
        """Let the caller go: the failure message when one is set, then a hang-up."""
        if count:
            count_call_failure(reason)
        logger.warning("Releasing the caller without an agent", extra={"reason": reason})
        call_id = caller.call_id if caller else None
        actions: list[Action]
        if call_id and self._chime.failure_message:
            actions = [
                speak(
                    call_id,
                    self._chime.failure_message,
                    voice=self._chime.failure_voice,
                    language=self._chime.failure_language,
                    engine=self._chime.failure_engine,
                ),
                hangup(call_id, LEG_A, HANGUP_NORMAL),
            ]
        else:
            actions = [hangup(call_id, LEG_A, HANGUP_UNAVAILABLE)]
        return response(actions, {A_FAILURE: reason[:256]})

    def _snapshot(self, event: SmaEvent) -> CallRecord | None:
        """The call as TransactionAttributes carry it (None when they carry no call)."""
        attrs = event.attributes
        try:
            created = datetime.strptime(attrs[A_CREATED], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            record = CallRecord(
                call_id=attrs[A_CALL_ID],
                sip_uri=attrs[A_URI],
                millis_region=attrs[A_REGION],
                status=CallStatus.CLAIMED,
                created_at=created,
                expires_at=datetime.fromtimestamp(int(attrs[A_EXPIRES]), tz=UTC),
                lookup_key=attrs.get(A_LOOKUP),
                agent_id=attrs.get(A_AGENT),
                source=CallSource(attrs.get(A_SOURCE, CallSource.CHIME)),
                transaction_id=event.transaction_id,
            )
        except (KeyError, ValueError, OverflowError):
            return None
        caller = event.a_leg
        if caller is not None:
            record = replace(record, caller_number=caller.from_, dialed_number=caller.to)
        return record

    def _transition(
        self, snapshot: CallRecord, to: CallStatus, allowed_from: tuple[CallStatus, ...], now: datetime
    ) -> bool:
        try:
            moved = self._store.transition(snapshot, to, allowed_from=allowed_from, now=now)
        except StoreUnavailable as exc:
            logger.error(
                "Could not record the call's new status",
                extra={"millis_call_id": snapshot.call_id, "status": to.value, "error": str(exc)},
            )
            return False
        if not moved:
            logger.info(
                "Status not changed: the call is already past it",
                extra={"millis_call_id": snapshot.call_id, "status": to.value},
            )
        return moved

    def _expiry(self, now: datetime) -> datetime:
        return (now + self._ttl).replace(microsecond=0)


class _Refused(BridgeError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def attributes(record: CallRecord, attempt: int) -> dict[str, str]:
    values = {
        A_CALL_ID: record.call_id,
        A_REGION: record.millis_region,
        A_URI: record.sip_uri,
        A_SOURCE: str(record.source),
        A_CREATED: iso(record.created_at),
        A_EXPIRES: str(int(record.expires_at.timestamp())),
        A_ATTEMPT: str(attempt),
        A_LOOKUP: record.lookup_key,
        A_AGENT: record.agent_id,
    }
    return {k: v for k, v in values.items() if v is not None}


def hang_up_everyone(event: SmaEvent, code: str) -> list[Action]:
    legs = [p for p in event.participants if p.call_id and not p.disconnected]
    if not legs:
        return [hangup(None, LEG_A, code)]
    return [hangup(p.call_id, p.tag, code) for p in legs]


def fallback_response(event: SmaEvent) -> dict[str, Any]:
    """The answer when the application itself cannot run (configuration, a bug): never leave a leg up
    that nobody will hang up, and never tear down a call that is working."""
    if event.type == HANGUP:
        return response([hangup(p.call_id, p.tag) for p in still_up_besides(event, event.acted_on())])
    if event.type in (NEW_INBOUND_CALL, INVALID_LAMBDA_RESPONSE):
        return response(hang_up_everyone(event, HANGUP_UNAVAILABLE))
    if event.type == ACTION_FAILED and event.action_type != "Hangup":
        caller = event.a_leg
        return response([hangup(caller.call_id if caller else None, LEG_A, HANGUP_UNAVAILABLE)])
    return response()


def _int(value: str | None, default: int) -> int:
    number = whole_number(value)
    return default if number is None else number


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)

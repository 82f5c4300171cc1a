"""The SIP media application: a phone call arriving through Amazon Chime is handed to the core's call router
and bridged to the Millis agent through the Voice Connector of the Millis region (docs/chime.md).

One method per invocation type:

- NEW_INBOUND_CALL: ask the router where the call goes; answer CallAndBridge through that region's Voice
  Connector (Uri = the SIP URI's user part), SpeakAndGetDigits when the caller must key in a PIN, or release
  the caller (the failure message, then a hang-up).
- ACTION_SUCCESSFUL (SpeakAndGetDigits): the digits go back to the router, which answers as above.
- ACTION_SUCCESSFUL (CallAndBridge): the call is bridged.
- ACTION_FAILED (SpeakAndGetDigits): no PIN came; the router goes on without the registration.
- ACTION_FAILED (CallAndBridge): the router's failover (the other region, once), else release the caller.
- HANGUP: hang up the other leg (Chime does not) and close the record.
- INVALID_LAMBDA_RESPONSE: log, count, hang up.
- CALL_UPDATE_REQUESTED with ``millis_action=transfer``, and every later invocation of a call being transferred
  (its TransactionAttributes carry ``transfer``): edges/chime/transfer.py, for inbound and outbound calls alike.
- the invocations of a call the stack placed (NEW_OUTBOUND_CALL, RINGING, CALL_ANSWERED, and every later one
  its TransactionAttributes mark outbound): edges/chime/outbound.py.
- anything else: an empty answer.

What later invocations need travels in TransactionAttributes (``attributes``), so a call never depends on a
DynamoDB write having succeeded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from millis_sip.config import ChimeSettings, VoiceRoute
from millis_sip.core.calls import E164, CallRecord, CallStatus
from millis_sip.core.errors import Unroutable
from millis_sip.core.lifecycle import PhoneCalls
from millis_sip.core.outbound import OutboundAnswers
from millis_sip.core.phone import canonical_number
from millis_sip.core.ports import Metrics
from millis_sip.core.regions import MillisRegion
from millis_sip.core.router import CallRouter, Challenge, Decision, InboundCall, Refused
from millis_sip.core.sip import SipUri, bridge_headers
from millis_sip.core.transfer import TransferReports
from millis_sip.edges.chime import attributes
from millis_sip.edges.chime.actions import (
    HANGUP_NORMAL,
    HANGUP_UNAVAILABLE,
    VOICE_CONNECTOR_USER,
    call_and_bridge,
    failure_message,
    hang_up_everyone,
    hangup,
    response,
    speak_and_get_digits,
)
from millis_sip.edges.chime.events import (
    ACTION_FAILED,
    ACTION_SUCCESSFUL,
    CALL_AND_BRIDGE,
    HANGUP,
    INVALID_LAMBDA_RESPONSE,
    LEG_A,
    NEW_INBOUND_CALL,
    SPEAK_AND_GET_DIGITS,
    Participant,
    SmaEvent,
    still_up_besides,
)
from millis_sip.edges.chime.outbound import ChimeOutbound, is_outbound
from millis_sip.edges.chime.transfer import ChimeTransfers, who_hung_up
from millis_sip.messages import Messages
from millis_sip.observability import logger

CARRIER = "chime"


@dataclass(frozen=True, slots=True)
class Bridge:
    """Where CallAndBridge sends a call: a Voice Connector, and the user part of the SIP URI."""

    route: VoiceRoute
    user: str


class VoiceConnectors:
    """The router's placement for Chime: a Millis region is reachable only through its Voice Connector,
    whose origination route supplies the host; CallAndBridge sends only the SIP URI's user part."""

    unreachable = "no_voice_connector"

    def __init__(self, routes: Mapping[MillisRegion, VoiceRoute]) -> None:
        self._routes = routes

    def reachable(self, region: MillisRegion) -> bool:
        return region in self._routes

    def place(self, record: CallRecord) -> Bridge:
        try:
            route = self._routes.get(MillisRegion(record.millis_region))
        except ValueError:
            route = None
        if route is None:
            raise Unroutable("no_voice_connector")
        uri: SipUri = record.sip_uri
        if uri.host.rstrip(".") != route.sip_host:
            raise Unroutable("sip_host_mismatch")
        if not uri.user or not VOICE_CONNECTOR_USER.match(uri.user):
            raise Unroutable("sip_user_not_routable")
        return Bridge(route, uri.user)


class SipMediaApp:
    def __init__(
        self,
        router: CallRouter,
        calls: PhoneCalls,
        chime: ChimeSettings,
        *,
        metrics: Metrics,
        outbound: OutboundAnswers | None = None,
        transfers: TransferReports | None = None,
    ) -> None:
        self._router = router
        self._calls = calls
        self._chime = chime
        self._placement = VoiceConnectors(chime.routes)
        self._metrics = metrics
        # The calls the stack places through this application (CreateSipMediaApplicationCall): edges/chime/outbound.
        self._outbound = ChimeOutbound(outbound, self._placement, chime, metrics=metrics) if outbound else None
        # Transfers of its calls (UpdateSipMediaApplicationCall, then CALL_UPDATE_REQUESTED): edges/chime/transfer.
        self._transfers = ChimeTransfers(transfers, chime) if transfers is not None else None

    def handle(self, event: SmaEvent, *, deadline: float) -> dict[str, Any]:
        """Answer one invocation. ``deadline`` is on the clock's monotonic time: the answer is ready by then."""
        if self._transfers is not None:
            moved = self._transfers.handle(event, deadline=deadline)
            if moved is not None:
                return moved
        if is_outbound(event):
            if self._outbound is None:
                logger.warning("An outbound call's invocation, and outbound calls are not set up here")
                return response(hang_up_everyone(event, HANGUP_NORMAL))
            return self._outbound.handle(event, deadline=deadline)
        if event.type == NEW_INBOUND_CALL:
            return self._new_inbound_call(event, deadline)
        if event.type == ACTION_SUCCESSFUL:
            return self._action_successful(event, deadline)
        if event.type == ACTION_FAILED:
            return self._action_failed(event, deadline)
        if event.type == HANGUP:
            return self._hangup(event, deadline)
        if event.type == INVALID_LAMBDA_RESPONSE:
            return self._invalid_response(event, deadline)
        logger.info("Nothing to do for this invocation", extra={"invocation": event.type, "action": event.action_type})
        return response()

    # --- NEW_INBOUND_CALL -----------------------------------------------------------------------------

    def _new_inbound_call(self, event: SmaEvent, deadline: float) -> dict[str, Any]:
        caller = event.a_leg
        if caller is None or caller.call_id is None or event.transaction_id is None:
            logger.error("NEW_INBOUND_CALL without a caller leg or a TransactionId")
            return self._release(caller, "malformed_event")
        routed = self._router.route(_inbound(event, caller), deadline=deadline, placement=self._placement)
        return self._answer(event, caller, routed, attempt=1)

    def _pin_entered(self, event: SmaEvent, deadline: float, *, digits: str) -> dict[str, Any]:
        """The caller keyed in a PIN (or none: ``digits`` empty): the router decides again."""
        caller = event.a_leg
        if caller is None or caller.call_id is None or event.transaction_id is None or caller.disconnected:
            return response()
        call = replace(_inbound(event, caller), pin=digits)
        return self._answer(
            event, caller, self._router.route(call, deadline=deadline, placement=self._placement), attempt=1
        )

    def _answer(
        self, event: SmaEvent, caller: Participant, routed: Decision[Bridge], *, attempt: int
    ) -> dict[str, Any]:
        if isinstance(routed, Refused):
            return self._release(caller, routed.reason, count=False)
        if isinstance(routed, Challenge):
            return self._ask_for_pin(caller, routed)
        record, bridge = routed.record, routed.placement
        caller_id = next((n for n in (caller.from_, caller.to) if n and E164.match(n)), caller.from_ or caller.to)
        action = call_and_bridge(
            caller_id=caller_id or "",
            voice_connector_arn=bridge.route.voice_connector_arn,
            uri_user=bridge.user,
            timeout_seconds=self._chime.bridge_timeout_seconds,
            sip_headers=bridge_headers(record.call_id, CARRIER, event.transaction_id or ""),
            ringback=self._chime.ringback,
        )
        self._metrics.inbound("bridging")
        logger.info(
            "Bridging the phone call to Millis",
            extra={
                "millis_call_id": record.call_id,
                "millis_region": record.millis_region,
                "source": str(record.source),
                "attempt": attempt,
                "how": routed.how,
            },
        )
        return response([action], attributes.encode(record, attempt))

    # --- later events ---------------------------------------------------------------------------------

    def _action_successful(self, event: SmaEvent, deadline: float) -> dict[str, Any]:
        if event.action_type == SPEAK_AND_GET_DIGITS:
            return self._pin_entered(event, deadline, digits=(event.received_digits or "").rstrip("#"))
        if event.action_type != CALL_AND_BRIDGE:
            return response()
        snapshot = attributes.decode(event)
        if snapshot is None:
            logger.warning("CallAndBridge succeeded for a call this application has no record of")
            return response()
        b_leg = event.b_leg
        bridged_at = self._calls.bridged(snapshot, leg_id=b_leg.call_id if b_leg else None, deadline=deadline)
        logger.info("Phone call bridged to Millis", extra={"millis_call_id": snapshot.call_id})
        return response([], attributes.encode(snapshot, attributes.attempt(event.attributes), bridged_at=bridged_at))

    def _action_failed(self, event: SmaEvent, deadline: float) -> dict[str, Any]:
        caller = event.a_leg
        if event.action_type == SPEAK_AND_GET_DIGITS:
            return self._pin_entered(event, deadline, digits="")
        if event.action_type != CALL_AND_BRIDGE:
            logger.warning("An action failed", extra={"action": event.action_type, "error_type": event.error_type})
            if event.action_type == "Hangup" or caller is None or caller.disconnected:
                return response()
            return response([hangup(caller.call_id, LEG_A, HANGUP_UNAVAILABLE)])
        reason = f"bridge_failed:{event.error_type or 'unknown'}"
        snapshot = attributes.decode(event)
        logger.error(
            "CallAndBridge failed",
            extra={
                "error_type": event.error_type,
                "error_message": event.error_message,
                "millis_call_id": snapshot and snapshot.call_id,
            },
        )
        if snapshot is not None:  # within the store's budget: the other region must still fit in the answer time
            self._calls.failed(snapshot, reason=reason, deadline=deadline)
        if caller is not None and caller.call_id and not caller.disconnected and snapshot is not None:
            attempt = attributes.attempt(event.attributes)
            retried = self._router.failover(
                _inbound(event, caller), snapshot, attempt=attempt, deadline=deadline, placement=self._placement
            )
            if retried is not None:
                self._metrics.inbound_failure(reason)
                return self._answer(event, caller, retried, attempt=attempt + 1)
        return self._release(caller, reason)

    def _hangup(self, event: SmaEvent, deadline: float) -> dict[str, Any]:
        gone = event.acted_on()
        remaining = still_up_besides(event, gone)
        actions = [hangup(p.call_id, p.tag, HANGUP_NORMAL) for p in remaining]
        snapshot = attributes.decode(event)
        if snapshot is not None:
            who = who_hung_up(event, gone, caller="caller", agent="agent")
            self._calls.ended(snapshot, who=who, bridged_at=attributes.bridged_at(event.attributes), deadline=deadline)
        logger.info("Hang-up", extra={"leg": gone.tag if gone else None, "hanging_up": [p.tag for p in remaining]})
        return response(actions)

    def _invalid_response(self, event: SmaEvent, deadline: float) -> dict[str, Any]:
        logger.error(
            "Chime refused this application's answer",
            extra={"error_type": event.error_type, "error_message": event.error_message, "sequence": event.sequence},
        )
        reason = f"invalid_lambda_response:{event.error_type or 'unknown'}"
        self._metrics.inbound_failure(reason)
        snapshot = attributes.decode(event)
        if snapshot is not None:
            allowed = (CallStatus.CLAIMED, CallStatus.BRIDGED)
            self._calls.failed(snapshot, reason=reason, allowed_from=allowed, deadline=deadline)
        return response(hang_up_everyone(event, HANGUP_UNAVAILABLE))

    # --- helpers --------------------------------------------------------------------------------------

    def _ask_for_pin(self, caller: Participant, challenge: Challenge) -> dict[str, Any]:
        messages = self._chime.messages
        prompt = f"{messages.pin_retry} {messages.pin_prompt}" if challenge.retry else messages.pin_prompt
        logger.info("Asking the caller for the registration's PIN", extra={"retry": challenge.retry})
        action = speak_and_get_digits(
            caller.call_id or "",
            prompt,
            messages.pin_retry,
            digits=challenge.digits,
            voice=messages.voice,
            language=messages.language,
            engine=messages.engine,
        )
        return response([action])

    def _release(self, caller: Participant | None, reason: str, *, count: bool = True) -> dict[str, Any]:
        """Let the caller go: the failure message when one is set, then a hang-up."""
        if count:
            self._metrics.inbound_failure(reason)
        logger.warning("Releasing the caller without an agent", extra={"reason": reason})
        call_id = caller.call_id if caller else None
        if call_id and self._chime.messages.failure:
            actions = failure_message(call_id, self._chime.messages)
        else:
            actions = [hangup(call_id, LEG_A, HANGUP_UNAVAILABLE)]
        return response(actions, attributes.failure(reason))


def _inbound(event: SmaEvent, caller: Participant) -> InboundCall:
    """Chime reports no caller attestation; it can ask the caller for a PIN (SpeakAndGetDigits). Its numbers are
    E.164 already; a withheld caller ID or a SIP caller becomes no number, like every edge's."""
    tx = event.transaction_id or ""
    context = {"chime_call_id": caller.call_id} if caller.call_id else {}
    return InboundCall(
        CARRIER,
        tx,
        canonical_number(caller.from_),
        canonical_number(caller.to),
        can_challenge=True,
        context=context,
        sip_headers=caller.sip_headers,
    )


def fallback_response(event: SmaEvent, messages: Messages | None = None) -> dict[str, Any]:
    """The answer when the application itself cannot run (configuration, a bug): never leave a leg up
    that nobody will hang up, never tear down a call that is working, and a new caller hears the failure
    message (``messages``; the defaults when the configuration itself is what failed)."""
    if event.type == HANGUP:
        return response([hangup(p.call_id, p.tag) for p in still_up_besides(event, event.acted_on())])
    if event.type == NEW_INBOUND_CALL:
        messages = messages or Messages.defaults()
        caller = event.a_leg
        if caller is not None and caller.call_id and messages.failure:
            return response(failure_message(caller.call_id, messages))
        return response(hang_up_everyone(event, HANGUP_UNAVAILABLE))
    if event.type == INVALID_LAMBDA_RESPONSE:
        return response(hang_up_everyone(event, HANGUP_UNAVAILABLE))
    if event.type == ACTION_FAILED and event.action_type != "Hangup":
        caller = event.a_leg
        return response([hangup(caller.call_id if caller else None, LEG_A, HANGUP_UNAVAILABLE)])
    return response()

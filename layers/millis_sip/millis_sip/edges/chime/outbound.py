"""Outbound calls at the SIP media application (docs/outbound.md, "Chime"): the stack placed the call with
``CreateSipMediaApplicationCall`` (adapters/call_control/chime.py), its ``ArgumentsMap`` naming the record.

- NEW_OUTBOUND_CALL: the record named by ``ActionData.Parameters.Arguments`` is found; its id goes into the
  TransactionAttributes, which every later invocation of the call carries (none: the call is hung up).
- RINGING: the call moves ``ringing``.
- CALL_ANSWERED: the core decides (``OutboundAnswers.answered``): CallAndBridge to the Millis SIP URI through the
  Voice Connector of the registration's region, as an inbound call is bridged; or a hang-up.
- ACTION_SUCCESSFUL (CallAndBridge): ``bridged``. ACTION_FAILED (CallAndBridge): ``failed``; the person hears
  the failure message.
- HANGUP: the other leg is hung up; an answered call ends with its duration, one never answered ends
  ``no_answer`` (Chime does not say more of a call that was not answered).
- CALL_UPDATE_REQUESTED with ``millis_action=cancel`` (``DELETE /calls/{call_id}``): hang the call up.

Chime has no answering-machine detection: ``machine_detection`` other than ``off`` is refused when the call is
placed (``core.outbound``), so every answer here is bridged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from millis_sip.config import ChimeSettings
from millis_sip.core.calls import CallRecord, CallStatus
from millis_sip.core.errors import Unroutable
from millis_sip.core.outbound import Bridge as BridgeDecision
from millis_sip.core.outbound import OutboundAnswers, OutboundStatus
from millis_sip.core.ports import Metrics
from millis_sip.core.sip import bridge_headers
from millis_sip.edges.chime.actions import (
    HANGUP_NORMAL,
    HANGUP_UNAVAILABLE,
    call_and_bridge,
    failure_message,
    hang_up_everyone,
    hangup,
    response,
)
from millis_sip.edges.chime.events import SmaEvent, still_up_besides
from millis_sip.edges.chime.transfer import who_hung_up
from millis_sip.observability import logger

CARRIER = "chime"
CALL_ARGUMENT = "millis_call_id"  # adapters/call_control/chime.py's ArgumentsMap key (no import: not loaded here)
ACTION_ARGUMENT, CANCEL = "millis_action", "cancel"
DIRECTION, OUTBOUND = "direction", "outbound"  # the TransactionAttributes that mark a call the stack placed
BRIDGED_AT = "bridged_at"

NEW_OUTBOUND_CALL = "NEW_OUTBOUND_CALL"
RINGING = "RINGING"
CALL_ANSWERED = "CALL_ANSWERED"
CALL_UPDATE_REQUESTED = "CALL_UPDATE_REQUESTED"
OUTBOUND_ONLY = frozenset({NEW_OUTBOUND_CALL, RINGING, CALL_ANSWERED})


def is_outbound(event: SmaEvent) -> bool:
    """An invocation about a call the stack placed."""
    return event.type in OUTBOUND_ONLY or event.attributes.get(DIRECTION) == OUTBOUND


class ChimeOutbound:
    def __init__(self, answers: OutboundAnswers, placement: Any, chime: ChimeSettings, *, metrics: Metrics) -> None:
        self._answers = answers
        self._placement = placement  # edges.chime.app.VoiceConnectors
        self._chime = chime
        self._metrics = metrics

    def handle(self, event: SmaEvent, *, deadline: float) -> dict[str, Any]:
        if event.type == NEW_OUTBOUND_CALL:
            return self._new_call(event, deadline)
        record = self._record(event, deadline)
        if record is None:
            logger.warning("An outbound call's invocation without its record", extra={"invocation": event.type})
            return response(hang_up_everyone(event, HANGUP_NORMAL))
        if event.type == RINGING:
            self._answers.reported(
                record, OutboundStatus.RINGING, carrier_call_id=event.transaction_id, deadline=deadline
            )
            return response([], event.attributes)
        if event.type == CALL_ANSWERED:
            return self._answered(event, record, deadline)
        if event.type == CALL_UPDATE_REQUESTED:
            if _arguments(event).get(ACTION_ARGUMENT) == CANCEL:
                logger.info("Hanging up an outbound call on request", extra={"millis_call_id": record.call_id})
                return response(hang_up_everyone(event, HANGUP_NORMAL), event.attributes)
            return response([], event.attributes)
        if event.type == "ACTION_SUCCESSFUL" and event.action_type == "CallAndBridge":
            self._answers.dialed(record, connected=True, duration_seconds=None, status="bridged", deadline=deadline)
            now = self._answers.clock.now()
            return response([], {**event.attributes, BRIDGED_AT: str(int(now.timestamp() * 1000))})
        if event.type == "ACTION_FAILED" and event.action_type == "CallAndBridge":
            word = (event.error_type or "failed")[:64]
            logger.error("CallAndBridge failed for an outbound call", extra={"error_type": event.error_type})
            self._answers.dialed(record, connected=False, duration_seconds=0, status=word, deadline=deadline)
            return self._release(event)
        if event.type == "HANGUP":
            return self._hangup(event, record, deadline)
        return response([], event.attributes)

    # --- the events -----------------------------------------------------------------------------------

    def _new_call(self, event: SmaEvent, deadline: float) -> dict[str, Any]:
        call_id = _arguments(event).get(CALL_ARGUMENT) or event.attributes.get(CALL_ARGUMENT)
        record = self._answers.find(call_id, CARRIER, deadline=deadline) if call_id else None
        if record is None:
            logger.warning("NEW_OUTBOUND_CALL for no outbound call of this stack: hanging up")
            return response(hang_up_everyone(event, HANGUP_NORMAL))
        return response([], {CALL_ARGUMENT: record.call_id, DIRECTION: OUTBOUND})

    def _answered(self, event: SmaEvent, record: CallRecord, deadline: float) -> dict[str, Any]:
        decision = self._answers.answered(
            record, carrier_call_id=event.transaction_id, answered_by=None, deadline=deadline
        )
        if not isinstance(decision, BridgeDecision):
            return self._release(event) if decision.speak else response(hang_up_everyone(event, HANGUP_NORMAL))
        try:
            bridge = self._placement.place(decision.record)
        except Unroutable as exc:
            logger.error("The outbound call cannot reach Millis", extra={"reason": exc.reason})
            self._answers.dialed(record, connected=False, duration_seconds=0, status=exc.reason, deadline=deadline)
            return self._release(event)
        person = event.a_leg
        action = call_and_bridge(
            caller_id=record.caller_number or (person.from_ if person else "") or "",
            voice_connector_arn=bridge.route.voice_connector_arn,
            uri_user=bridge.user,
            timeout_seconds=self._chime.bridge_timeout_seconds,
            sip_headers=bridge_headers(record.call_id, CARRIER, event.transaction_id or ""),
            ringback=None,  # the person answered and is waiting for the agent: no ringback on their side
        )
        self._metrics.inbound("bridging")
        logger.info("Bridging the outbound call to Millis", extra={"millis_call_id": record.call_id})
        return response([action], event.attributes)

    def _hangup(self, event: SmaEvent, record: CallRecord, deadline: float) -> dict[str, Any]:
        gone = event.acted_on()
        actions = [hangup(p.call_id, p.tag, HANGUP_NORMAL) for p in still_up_besides(event, gone)]
        if record.status in (CallStatus.ANSWERED, CallStatus.BRIDGED):
            bridged = _bridged_at(event) or record.bridged_at or record.answered_at
            duration = int((self._answers.clock.now() - bridged).total_seconds()) if bridged else 0
            self._answers.reported(
                record,
                OutboundStatus.COMPLETED,
                carrier_call_id=event.transaction_id,
                duration_seconds=max(duration, 0),
                reason=f"hangup_{who_hung_up(event, gone, caller='person', agent='agent')}",
                deadline=deadline,
            )
        else:  # hung up before CALL_ANSWERED: nobody picked up (or the call was canceled, already recorded)
            self._answers.reported(
                record, OutboundStatus.NO_ANSWER, carrier_call_id=event.transaction_id, deadline=deadline
            )
        return response(actions)

    # --- helpers --------------------------------------------------------------------------------------

    def _record(self, event: SmaEvent, deadline: float) -> CallRecord | None:
        call_id = event.attributes.get(CALL_ARGUMENT)
        return self._answers.find(call_id, CARRIER, deadline=deadline) if call_id else None

    def _release(self, event: SmaEvent) -> dict[str, Any]:
        """The failure message to the person, then a hang-up of every leg."""
        person = event.a_leg
        if person is None or not person.call_id or person.disconnected or not self._chime.messages.failure:
            return response(hang_up_everyone(event, HANGUP_UNAVAILABLE), event.attributes)
        return response(failure_message(person.call_id, self._chime.messages), event.attributes)


def _arguments(event: SmaEvent) -> dict[str, str]:
    raw = event.action_parameters.get("Arguments")
    if not isinstance(raw, dict):
        return {}
    return {str(k)[:128]: v[:256] for k, v in raw.items() if isinstance(v, str)}


def _bridged_at(event: SmaEvent) -> datetime | None:
    raw = event.attributes.get(BRIDGED_AT, "")
    if not raw.isdigit():
        return None
    try:
        return datetime.fromtimestamp(int(raw) / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None

"""Transfers at the SIP media application (docs/transfers.md, "What happens at Chime"): ``POST /calls/{call_id}/
transfer`` asked ``UpdateSipMediaApplicationCall`` (adapters/call_control/chime.py) with ``millis_action=transfer``,
the target and the caller ID, and Chime invokes the application with CALL_UPDATE_REQUESTED. For a call the stack
answered or placed alike:

- CALL_UPDATE_REQUESTED (transfer): the Millis leg (LEG-B) is hung up, the caller hears the announcement (the
  record's ``transfer_announce``), and a ``CallAndBridge`` to the target's number (a PSTN endpoint, with the
  caller ID of your number the call is at) takes the caller to the person. The TransactionAttributes say a
  transfer is under way, and which leg was the agent's.
- ACTION_SUCCESSFUL (that CallAndBridge): the transfer is ``connected``. ACTION_FAILED (nobody answered, or Chime
  refused the target): ``failed``; the caller hears the failure message and the call ends (the agent's leg is
  gone: there is no one to go back to).
- HANGUP of the agent's old leg while the transfer is under way: nothing to do (this application hung it up).
  HANGUP of the caller while the target rings: the transfer is ``failed``, and the call's own hang-up follows.

Anything else is the call's own handling (edges/chime/app.py, outbound.py): ``handle`` answers None for it.
Chime bridges the person as they answer, with no step in between for a whisper, and reaches a SIP address only
through a Voice Connector's origination: the API refuses warm transfers and SIP targets for Chime calls before
anything is sent (``ChimeCalls.whispers``, ``.sip_targets``)."""

from __future__ import annotations

from typing import Any

from millis_sip.core.calls import E164
from millis_sip.core.transfer import TransferReports, TransferStatus
from millis_sip.edges.chime.actions import (
    HANGUP_NORMAL,
    HANGUP_UNAVAILABLE,
    failure_message,
    hang_up_everyone,
    hangup,
    response,
    speak,
)
from millis_sip.edges.chime.events import LEG_A, LEG_B, SmaEvent
from millis_sip.messages import Messages
from millis_sip.observability import logger

CARRIER = "chime"
CALL_ARGUMENT = "millis_call_id"  # every call's TransactionAttributes name its record so (app.py, outbound.py)
ACTION_ARGUMENT, TRANSFER = "millis_action", "transfer"  # UpdateSipMediaApplicationCall's Arguments
TARGET_ARGUMENT, CALLER_ID_ARGUMENT = "transfer_to", "caller_id"
# The TransactionAttribute of a transfer: "in_progress:<the agent's leg's CallId>", then "connected" or "failed".
# A call's attributes hold at most 10 keys: the record's optional agent_id and lookup_key make room (the stored
# record keeps them; the call's later writes only fill in what is missing).
STATE = "transfer"
MAKE_ROOM = ("agent_id", "lookup_key")
IN_PROGRESS = TransferStatus.IN_PROGRESS.value
TRANSFER_RING_SECONDS = 30


def _arguments(event: SmaEvent) -> dict[str, str]:
    raw = event.action_parameters.get("Arguments")
    if not isinstance(raw, dict):
        return {}
    return {str(k)[:128]: v[:256] for k, v in raw.items() if isinstance(v, str)}


class ChimeTransfers:
    def __init__(self, reports: TransferReports, messages: Messages) -> None:
        self._reports = reports
        self._messages = messages

    def handle(self, event: SmaEvent, *, deadline: float) -> dict[str, Any] | None:
        """The answer to a transfer's invocation; None: not a transfer's (the call's own handling answers)."""
        if event.type == "CALL_UPDATE_REQUESTED" and _arguments(event).get(ACTION_ARGUMENT) == TRANSFER:
            return self._start(event, deadline)
        state, _, agent_leg = event.attributes.get(STATE, "").partition(":")
        if state != IN_PROGRESS:
            return None
        if event.action_type == "CallAndBridge" and event.type in ("ACTION_SUCCESSFUL", "ACTION_FAILED"):
            return self._bridged(event, connected=event.type == "ACTION_SUCCESSFUL", deadline=deadline)
        if event.type == "HANGUP":
            gone = event.acted_on()
            if gone is not None and gone.call_id and gone.call_id == agent_leg:
                return response([], event.attributes)  # the agent's leg, hung up by this application
            if gone is not None and gone.tag == LEG_A:  # the caller left while the target rang
                self._close(event, connected=False, deadline=deadline)
                return None
        return response([], event.attributes) if event.type != "HANGUP" else None

    def _start(self, event: SmaEvent, deadline: float) -> dict[str, Any]:
        arguments = _arguments(event)
        call_id = event.attributes.get(CALL_ARGUMENT, "")
        record = self._reports.find(call_id, CARRIER, deadline=deadline) if call_id else None
        caller, agent = event.a_leg, event.b_leg
        target, caller_id = arguments.get(TARGET_ARGUMENT, ""), arguments.get(CALLER_ID_ARGUMENT, "")
        if (
            record is None
            or record.transfer_status != IN_PROGRESS
            or record.transfer_to != target
            or caller is None
            or not caller.call_id
            or caller.disconnected
        ):
            logger.warning("A transfer request for no transfer under way, or no caller: ignored")
            return response([], event.attributes)
        if not E164.match(target) or not E164.match(caller_id or ""):
            caller_id = next((n for n in (caller.to, caller.from_) if n and E164.match(n)), "")
        actions = []
        if agent is not None and agent.call_id and not agent.disconnected:
            actions.append(hangup(agent.call_id, LEG_B, HANGUP_NORMAL))
        if record.transfer_announce:
            messages = self._messages
            actions.append(
                speak(
                    caller.call_id,
                    record.transfer_announce,
                    voice=messages.voice,
                    language=messages.language,
                    engine=messages.engine,
                )
            )
        actions.append(
            {
                "Type": "CallAndBridge",
                "Parameters": {
                    "CallTimeoutSeconds": TRANSFER_RING_SECONDS,
                    "CallerIdNumber": caller_id,
                    "Endpoints": [{"BridgeEndpointType": "PSTN", "Uri": target}],
                },
            }
        )
        attributes = {k: v for k, v in event.attributes.items() if k not in MAKE_ROOM}
        attributes[STATE] = f"{IN_PROGRESS}:{agent.call_id if agent is not None and agent.call_id else ''}"
        logger.info("Transferring the Chime call", extra={"call_id": record.call_id})
        return response(actions, attributes)

    def _bridged(self, event: SmaEvent, *, connected: bool, deadline: float) -> dict[str, Any]:
        self._close(event, connected=connected, deadline=deadline)
        attributes = {**event.attributes, STATE: "connected" if connected else "failed"}
        if connected:
            return response([], attributes)
        logger.warning("The transfer's target did not answer", extra={"error_type": event.error_type})
        caller = event.a_leg
        if caller is None or not caller.call_id or caller.disconnected or not self._messages.failure:
            return response(hang_up_everyone(event, HANGUP_UNAVAILABLE), attributes)
        return response(failure_message(caller.call_id, self._messages), attributes)

    def _close(self, event: SmaEvent, *, connected: bool, deadline: float) -> None:
        call_id = event.attributes.get(CALL_ARGUMENT, "")
        record = self._reports.find(call_id, CARRIER, deadline=deadline) if call_id else None
        if record is not None:
            self._reports.ended(record, connected=connected, deadline=deadline)

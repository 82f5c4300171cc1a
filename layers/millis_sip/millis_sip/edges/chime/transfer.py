"""Transfers at the SIP media application (docs/transfers.md, "What happens at Chime"), for the calls it answered
and the calls the stack placed alike.

``POST /calls/{call_id}/transfer`` calls ``UpdateSipMediaApplicationCall`` (adapters/call_control/chime.py); Chime
then invokes the application with ``CALL_UPDATE_REQUESTED``, its ``Arguments`` naming the call and the target.
As AWS's take-back-and-transfer sample does it, in two steps (a call has one bridged leg at a time):

1. CALL_UPDATE_REQUESTED (``millis_action=transfer``): hang up the Millis leg (LEG-B). The transfer's state goes
   into the TransactionAttributes (``transfer``), which every later invocation of the call carries.
2. The Millis leg is gone (ACTION_SUCCESSFUL or ACTION_FAILED of that Hangup, or its HANGUP, whichever comes
   first): ``Speak`` the announcement to the caller, then ``CallAndBridge`` the caller to the target (PSTN).
3. ACTION_SUCCESSFUL of that CallAndBridge: the record's transfer reads ``connected``; ACTION_FAILED: ``failed``,
   and the caller hears the failure message, then the call ends (the agent's session is over: there is no one to
   go back to). A caller who hangs up before the person answers: ``failed`` too.

The HANGUP that ends the call after a transfer is the application's usual one (the other leg is hung up, the
record closed); ``who_hung_up`` names the person the caller was transferred to as ``transfer_target``, never the
agent. Chime's CallAndBridge cannot whisper to the new leg before it bridges, nor reach a SIP URI but through a
Voice Connector: the API refuses warm transfers and SIP targets of Chime calls before anything is sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from millis_sip.config import ChimeSettings
from millis_sip.core.calls import E164
from millis_sip.core.transfer import TransferReports
from millis_sip.edges.chime.actions import (
    HANGUP_NORMAL,
    MAX_ATTRIBUTES,
    Action,
    failure_message,
    hang_up_everyone,
    hangup,
    response,
    speak,
)
from millis_sip.edges.chime.events import (
    ACTION_FAILED,
    ACTION_SUCCESSFUL,
    CALL_AND_BRIDGE,
    HANGUP,
    LEG_A,
    LEG_B,
    Participant,
    SmaEvent,
)
from millis_sip.observability import logger

CARRIER = "chime"
CALL_UPDATE_REQUESTED = "CALL_UPDATE_REQUESTED"
# UpdateSipMediaApplicationCall's Arguments, as adapters/call_control/chime.py sends them (no import: the
# SIP media application's function does not load the call-control clients)
ACTION_ARGUMENT, TRANSFER = "millis_action", "transfer"
CALL_ARGUMENT, TO_ARGUMENT = "millis_call_id", "transfer_to"
ANNOUNCE_ARGUMENT, CALLER_ID_ARGUMENT = "announce", "caller_id"
STATE = "transfer"  # the TransactionAttributes key holding the transfer (JSON)
# What a transfer may drop to fit its state within Chime's 10 TransactionAttributes (none is read after the bridge)
SPARE = ("attempt", "lookup_key", "agent_id")
HANGING_UP, BRIDGING, BRIDGED, FAILED = "hanging_up", "bridging", "bridged", "failed"
RING_SECONDS = 30  # CallTimeoutSeconds of the transfer leg, as the other carriers' transfers ring
MAX_ANNOUNCE = 500
TRANSFER_TARGET = "transfer_target"  # who hung up, when it is the person the caller was transferred to


def call_and_bridge_pstn(*, caller_id: str, number: str, timeout_seconds: int = RING_SECONDS) -> Action:
    return {
        "Type": "CallAndBridge",
        "Parameters": {
            "CallTimeoutSeconds": timeout_seconds,
            "CallerIdNumber": caller_id,
            "Endpoints": [{"BridgeEndpointType": "PSTN", "Uri": number}],
        },
    }


def state(event: SmaEvent) -> dict[str, str] | None:
    """The call's transfer as its TransactionAttributes carry it (None: no transfer)."""
    raw = event.attributes.get(STATE)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def who_hung_up(event: SmaEvent, gone: Participant | None, *, caller: str, agent: str) -> str:
    """The side a HANGUP reports gone: ``caller`` (LEG-A), ``agent`` (LEG-B), or the transfer's target (LEG-B once
    the caller was bridged to the person)."""
    if gone is None:
        return "unknown"
    if gone.tag == LEG_A:
        return caller
    transfer = state(event)
    if (
        transfer is not None
        and transfer.get("step") in (BRIDGING, BRIDGED)
        and not _names_leg(event, transfer.get("leg"))
    ):
        return TRANSFER_TARGET
    return agent if gone.tag == LEG_B else "unknown"


class ChimeTransfers:
    """The transfer's invocations; ``handle`` answers None for every other one (the application's own)."""

    def __init__(self, reports: TransferReports, chime: ChimeSettings) -> None:
        self._reports = reports
        self._chime = chime

    def handle(self, event: SmaEvent, *, deadline: float) -> dict[str, Any] | None:
        if event.type == CALL_UPDATE_REQUESTED:
            arguments = _arguments(event)
            if arguments.get(ACTION_ARGUMENT) != TRANSFER:
                return None  # a cancel (edges/chime/outbound.py), or not the stack's
            return self._requested(event, arguments, deadline)
        transfer = state(event)
        if transfer is None:
            return None
        step = transfer.get("step")
        if step == HANGING_UP and self._millis_leg_gone(event, transfer):
            return self._bridge(event, transfer)
        if step == BRIDGING and event.action_type == CALL_AND_BRIDGE and event.type == ACTION_SUCCESSFUL:
            self._ended(event, transfer, connected=True, deadline=deadline)
            return response([], _with(event.attributes, {**transfer, "step": BRIDGED}))
        if step == BRIDGING and event.action_type == CALL_AND_BRIDGE and event.type == ACTION_FAILED:
            logger.warning("The transfer's target did not answer", extra={"error_type": event.error_type})
            self._ended(event, transfer, connected=False, deadline=deadline)
            return self._release(event, {**transfer, "step": FAILED})
        if step == BRIDGING and event.type == ACTION_FAILED and event.action_type == "Speak":
            # the announcement could not be spoken: the caller is put through all the same
            return self._bridge(event, {**transfer, ANNOUNCE_ARGUMENT: ""})
        if event.type == HANGUP:
            if _names_leg(event, transfer.get("leg")):
                return response([], event.attributes)  # the Millis leg the transfer hung up: nothing more to do
            if step in (HANGING_UP, BRIDGING):  # the caller left before the person answered
                self._ended(event, transfer, connected=False, deadline=deadline)
        return None

    # --- the steps ------------------------------------------------------------------------------------

    def _requested(self, event: SmaEvent, arguments: Mapping[str, str], deadline: float) -> dict[str, Any]:
        call_id = arguments.get(CALL_ARGUMENT, "")
        caller, to = event.a_leg, arguments.get(TO_ARGUMENT, "")
        if not call_id or event.attributes.get(CALL_ARGUMENT) != call_id:
            logger.warning("A transfer asked for a call this transaction does not carry: ignored")
            return response([])
        # Only ApiFunction (IAM) can ask, after writing the transfer: a record that cannot be read now does not
        # stop the transfer it accepted (the bridge's result is recorded when the store answers again).
        if caller is None or not caller.call_id or caller.disconnected or not E164.match(to):
            logger.warning("A transfer the call cannot take (no caller, or not a number)")
            self._ended(event, {}, connected=False, deadline=deadline)
            return response([])
        if state(event) is not None:
            logger.warning("A second transfer of the same call: ignored", extra={"millis_call_id": call_id})
            return response([])
        transfer = {
            "step": HANGING_UP,
            "to": to,
            ANNOUNCE_ARGUMENT: arguments.get(ANNOUNCE_ARGUMENT, "")[:MAX_ANNOUNCE],
            CALLER_ID_ARGUMENT: arguments.get(CALLER_ID_ARGUMENT, ""),
        }
        millis = event.b_leg
        logger.info("Transferring the call: hanging up the Millis leg", extra={"millis_call_id": call_id})
        if millis is None or not millis.call_id or millis.disconnected:
            return self._bridge(event, transfer)
        transfer["leg"] = millis.call_id
        return response([hangup(millis.call_id, LEG_B, HANGUP_NORMAL)], _with(event.attributes, transfer))

    def _bridge(self, event: SmaEvent, transfer: dict[str, str]) -> dict[str, Any]:
        caller = event.a_leg
        if caller is None or not caller.call_id or caller.disconnected:
            attrs = _with(event.attributes, {**transfer, "step": FAILED})
            return response(hang_up_everyone(event, HANGUP_NORMAL), attrs)
        caller_id = next(
            (n for n in (transfer.get(CALLER_ID_ARGUMENT), caller.from_, caller.to) if n and E164.match(n)), ""
        )
        actions: list[Action] = []
        announce = transfer.get(ANNOUNCE_ARGUMENT)
        voice = self._chime.messages
        if announce:
            actions.append(
                speak(caller.call_id, announce, voice=voice.voice, language=voice.language, engine=voice.engine)
            )
        actions.append(call_and_bridge_pstn(caller_id=caller_id, number=transfer.get("to", "")))
        logger.info("Transferring the call: bridging the caller to the target")
        return response(actions, _with(event.attributes, {**transfer, "step": BRIDGING}))

    def _release(self, event: SmaEvent, transfer: dict[str, str]) -> dict[str, Any]:
        caller = event.a_leg
        attrs = _with(event.attributes, transfer)
        if caller is None or not caller.call_id or caller.disconnected or not self._chime.messages.failure:
            return response(hang_up_everyone(event, HANGUP_NORMAL), attrs)
        return response(failure_message(caller.call_id, self._chime.messages), attrs)

    # --- helpers --------------------------------------------------------------------------------------

    def _millis_leg_gone(self, event: SmaEvent, transfer: Mapping[str, str]) -> bool:
        """The Hangup of the Millis leg is done (its ACTION_SUCCESSFUL or ACTION_FAILED), or Chime reports the leg
        gone (HANGUP)."""
        if event.type in (ACTION_SUCCESSFUL, ACTION_FAILED) and event.action_type == "Hangup":
            return True
        return event.type == HANGUP and _names_leg(event, transfer.get("leg"))

    def _ended(self, event: SmaEvent, transfer: Mapping[str, str], *, connected: bool, deadline: float) -> None:
        call_id = event.attributes.get(CALL_ARGUMENT)
        record = self._reports.find(call_id, CARRIER, deadline=deadline) if call_id else None
        if record is None:
            logger.warning("A transfer's result for a call without a record", extra={"connected": connected})
            return
        self._reports.ended(record, connected=connected, deadline=deadline)


def _names_leg(event: SmaEvent, leg: str | None) -> bool:
    """The invocation is about the call leg ``leg``: its ``ActionData.Parameters`` name it by CallId (read first:
    once the caller is bridged to the person, the tag LEG-B names the person's leg, not the Millis leg)."""
    if not leg:
        return False
    named = event.action_parameters.get("CallId")
    if isinstance(named, str) and named:
        return named == leg
    gone = event.acted_on()
    return gone is not None and gone.call_id == leg


def _arguments(event: SmaEvent) -> dict[str, str]:
    raw = event.action_parameters.get("Arguments")
    if not isinstance(raw, dict):
        return {}
    return {str(k)[:128]: v[:1024] for k, v in raw.items() if isinstance(v, str)}


def _with(attrs: Mapping[str, str], transfer: Mapping[str, str]) -> dict[str, str]:
    """The call's TransactionAttributes with its transfer, within Chime's 10 (dropping what is no longer read)."""
    values = {k: v for k, v in attrs.items() if k != STATE}
    for key in SPARE:
        if len(values) < MAX_ATTRIBUTES:
            break
        values.pop(key, None)
    if len(values) >= MAX_ATTRIBUTES:
        values = dict(list(values.items())[: MAX_ATTRIBUTES - 1])
    values[STATE] = json.dumps(dict(transfer), separators=(",", ":"))
    return values

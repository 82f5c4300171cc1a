"""Amazon Chime SDK SIP media application invocations, read defensively.

Both documented shapes are accepted (``Status`` present or absent, ``Sequence`` above 1; the application id,
``SipMediaApplicationId`` or ``SipApplicationId``, is not needed). Error fields are read at the top level
and in ``ActionData``.
Participant tags are compared case-insensitively (a documented example uses ``Leg-A``). Parsing never
raises: a field of the wrong type reads as absent, so an event from a future API version, an abridged
sample or plain garbage still yields an ``SmaEvent`` the handler can answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

LEG_A = "LEG-A"
LEG_B = "LEG-B"
MAX_TEXT = 1024  # no field Chime sends is longer; anything longer is cut, not trusted

NEW_INBOUND_CALL = "NEW_INBOUND_CALL"
ACTION_SUCCESSFUL = "ACTION_SUCCESSFUL"
ACTION_FAILED = "ACTION_FAILED"
HANGUP = "HANGUP"
INVALID_LAMBDA_RESPONSE = "INVALID_LAMBDA_RESPONSE"
CALL_AND_BRIDGE = "CallAndBridge"
SPEAK_AND_GET_DIGITS = "SpeakAndGetDigits"

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _text(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value[:MAX_TEXT]
    return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else _EMPTY


def _tag(value: object) -> str | None:
    text = _text(value)
    return text.upper() if text else None


def _digits(value: object) -> str | None:
    """Keyed-in digits (0-9, *, #), at most 32; anything else reads as none."""
    if isinstance(value, str) and len(value) <= 32 and all(c in "0123456789*#" for c in value):
        return value
    return None


def _headers(value: object) -> Mapping[str, str]:
    """A participant's SipHeaders: text values only, at most 20 (the core keeps the valid X- ones)."""
    found = [(str(k)[:64], v[:MAX_TEXT]) for k, v in _mapping(value).items() if isinstance(v, str)]
    return dict(found[:20])


def whole_number(value: object) -> int | None:
    """An int, or a string of ASCII digits ("²".isdigit() is True, and int("²") raises), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = value.strip() if isinstance(value, str) else ""
    if text.isascii() and text.isdigit():
        return int(text)
    return None


@dataclass(frozen=True, slots=True)
class Participant:
    call_id: str | None
    tag: str | None  # upper-cased: LEG-A, LEG-B
    to: str | None
    from_: str | None
    direction: str | None
    status: str | None
    sip_headers: Mapping[str, str] = field(default_factory=dict)  # what the caller's INVITE carried

    @property
    def disconnected(self) -> bool:
        return (self.status or "").casefold() == "disconnected"

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Participant:
        return cls(
            call_id=_text(raw.get("CallId")),
            tag=_tag(raw.get("ParticipantTag")),
            to=_text(raw.get("To")),
            from_=_text(raw.get("From")),
            direction=_text(raw.get("Direction")),
            sip_headers={
                str(k)[:64]: v[:MAX_TEXT]
                for k, v in list(_mapping(raw.get("SipHeaders")).items())[:20]
                if isinstance(v, str)
            },
            status=_text(raw.get("Status")),
        )


@dataclass(frozen=True, slots=True)
class SmaEvent:
    type: str
    sequence: int | None = None
    transaction_id: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    participants: tuple[Participant, ...] = ()
    action_type: str | None = None
    action_parameters: Mapping[str, Any] = field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None
    received_digits: str | None = None  # what the caller keyed in (SpeakAndGetDigits)

    @classmethod
    def parse(cls, raw: object) -> SmaEvent:
        event = _mapping(raw)
        details = _mapping(event.get("CallDetails"))
        action = _mapping(event.get("ActionData"))
        participants = event_participants(details.get("Participants"))
        attributes = {
            str(k)[:MAX_TEXT]: v[:MAX_TEXT]
            for k, v in _mapping(details.get("TransactionAttributes")).items()
            if isinstance(v, str)
        }
        return cls(
            type=_text(event.get("InvocationEventType")) or "UNKNOWN",
            sequence=whole_number(event.get("Sequence")),
            transaction_id=_text(details.get("TransactionId")),
            attributes=attributes,
            participants=participants,
            action_type=_text(action.get("Type")),
            action_parameters=_mapping(action.get("Parameters")),
            error_type=_text(action.get("ErrorType")) or _text(event.get("ErrorType")) or _text(action.get("Error")),
            error_message=_text(action.get("ErrorMessage")) or _text(event.get("ErrorMessage")),
            received_digits=_digits(action.get("ReceivedDigits")),
        )

    def leg(self, tag: str) -> Participant | None:
        return next((p for p in self.participants if p.tag == tag), None)

    @property
    def a_leg(self) -> Participant | None:
        """The caller: the LEG-A participant, else the inbound one, else the only one there is."""
        leg = self.leg(LEG_A)
        if leg is None:
            leg = next((p for p in self.participants if (p.direction or "").casefold() == "inbound"), None)
        if leg is None and len(self.participants) == 1:
            leg = self.participants[0]
        return leg

    @property
    def b_leg(self) -> Participant | None:
        return self.leg(LEG_B)

    def acted_on(self) -> Participant | None:
        """The participant ``ActionData.Parameters`` names, by tag first, then by call id."""
        tag = _tag(self.action_parameters.get("ParticipantTag"))
        if tag:
            leg = self.leg(tag)
            if leg is not None:
                return leg
        call_id = _text(self.action_parameters.get("CallId"))
        if call_id:
            return next((p for p in self.participants if p.call_id == call_id), None)
        return None


def event_participants(raw: object) -> tuple[Participant, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(Participant.parse(p) for p in raw[:10] if isinstance(p, dict))


def still_up_besides(event: SmaEvent, gone: Participant | None) -> list[Participant]:
    """The legs other than ``gone`` that Chime has not reported disconnected (and that can be named)."""
    return [p for p in event.participants if p is not gone and p.call_id and not p.disconnected]

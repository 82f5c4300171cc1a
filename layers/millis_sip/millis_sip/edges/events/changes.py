"""What changed in a call, read from one DynamoDB stream record of the calls table (NEW_AND_OLD_IMAGES), as the
events of docs/events.md: one event per change of state that was stored, none for the table's other items
(transaction markers, hourly counters) or for a write that changed nothing an event reports (a PIN attempt
counted, a carrier's call id noted)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from millis_sip.adapters.dynamodb.codec import from_item, is_call
from millis_sip.core.calls import CallRecord, CallSource, CallStatus
from millis_sip.core.clock import iso

SOURCE = "millis-sip-bridge"  # every event's source
VERSION = "1"  # the detail's version: a change that breaks a reader gets a new one

# The detail-type of a call moving to each status (the record's ``status``).
STATUS_EVENTS: dict[CallStatus, str] = {
    CallStatus.REGISTERED: "Call Registered",
    CallStatus.QUEUED: "Call Queued",
    CallStatus.CLAIMED: "Call Claimed",
    CallStatus.RINGING: "Call Ringing",
    CallStatus.ANSWERED: "Call Answered",
    CallStatus.BRIDGED: "Call Bridged",
    CallStatus.ENDED: "Call Ended",
    CallStatus.FAILED: "Call Failed",
    CallStatus.NO_ANSWER: "Call Not Answered",
    CallStatus.BUSY: "Call Busy",
    CallStatus.CANCELED: "Call Canceled",
    CallStatus.MACHINE: "Call Machine Detected",
}
REFUSED = "Call Refused"  # a call first stored as failed: refused before it ever went on (the reason says why)
# A transfer's progress (the record's transfer_status).
TRANSFER_EVENTS = {
    "in_progress": "Call Transfer Started",
    "connected": "Call Transferred",
    "failed": "Call Transfer Failed",
}
SESSION_REPORTED = "Call Session Reported"  # Millis' session report (millis_call_status and the rest) stored
DETAIL_TYPES = (*STATUS_EVENTS.values(), REFUSED, *TRANSFER_EVENTS.values(), SESSION_REPORTED)


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One event: its detail-type, when the change was stored, and its detail (JSON-ready)."""

    detail_type: str
    time: datetime
    detail: dict[str, Any]


def _image(change: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    image = change.get("dynamodb", {}).get(name)
    return dict(image) if image else None


def _stored_at(change: Mapping[str, Any]) -> datetime:
    """When DynamoDB stored the change (the record's ApproximateCreationDateTime: epoch seconds in a Lambda
    event, a datetime from the Streams API)."""
    moment = change.get("dynamodb", {}).get("ApproximateCreationDateTime")
    if isinstance(moment, datetime):
        return moment.astimezone(UTC)
    if isinstance(moment, int | float):
        return datetime.fromtimestamp(moment, tz=UTC)
    return datetime.now(tz=UTC)


def _when(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


class CallChanges:
    """Stream records to events. ``number``: how a phone number appears in an event (masked by default:
    docs/events.md, "Phone numbers")."""

    def __init__(self, number: Callable[[str], str]) -> None:
        self._number = number

    def events(self, change: Mapping[str, Any]) -> list[CallEvent]:
        """The events of one stream record, in the order they happened; none for anything but a call's insert or
        modification."""
        if change.get("eventName") not in ("INSERT", "MODIFY"):
            return []  # a removal is the TTL (or a SIP server's marker) going: no state of the call changes
        new_item = _image(change, "NewImage")
        if new_item is None or not is_call(new_item):
            return []
        old_item = _image(change, "OldImage")
        new = from_item(new_item)
        old = from_item(old_item) if old_item is not None and is_call(old_item) else None
        event_id = str(change.get("eventID", ""))
        found = self._changes(old, new, _stored_at(change))
        return [
            CallEvent(kind, at, self._detail(new, old, kind, at, f"{event_id}:{index}" if event_id else None))
            for index, (kind, at) in enumerate(found)
        ]

    def _changes(self, old: CallRecord | None, new: CallRecord, stored: datetime) -> list[tuple[str, datetime]]:
        found: list[tuple[str, datetime]] = []
        if old is None or old.status is not new.status:
            if old is None and new.status is CallStatus.FAILED:
                found.append((REFUSED, new.ended_at or new.created_at))
            elif new.status in STATUS_EVENTS:
                at = _status_time(new) or (new.created_at if old is None else stored)
                found.append((STATUS_EVENTS[new.status], at))
        if new.transfer_status in TRANSFER_EVENTS and (old is None or old.transfer_status != new.transfer_status):
            moment = new.transfer_ended_at if new.transfer_status != "in_progress" else new.transfer_requested_at
            found.append((TRANSFER_EVENTS[new.transfer_status], moment or stored))
        reported = new.millis_call_status is not None or new.millis_session_id is not None
        if reported and (old is None or _report(old) != _report(new)):
            found.append((SESSION_REPORTED, stored))
        return found

    def _detail(
        self, new: CallRecord, old: CallRecord | None, kind: str, at: datetime, event_id: str | None
    ) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "version": VERSION,
            "event_id": event_id,
            "occurred_at": iso(at),
            "call_id": new.call_id,
            "direction": new.direction.value,
            "status": new.status.value,
            "previous_status": old.status.value if old is not None else None,
            "source": str(new.source),
            "carrier": new.carrier or (str(new.source) if new.source != CallSource.HTTP else None),
            "agent_id": new.agent_id,
            "millis_region": new.millis_region,
            "reason": new.reason,
            "answered_by": new.answered_by,
            "caller_number": self._masked(new.caller_number),
            "dialed_number": self._masked(new.dialed_number),
            "duration_seconds": new.duration_seconds,
            "created_at": iso(new.created_at),
            "ringing_at": _when(new.ringing_at),
            "answered_at": _when(new.answered_at),
            "bridged_at": _when(new.bridged_at),
            "ended_at": _when(new.ended_at),
        }
        if kind in TRANSFER_EVENTS.values():
            detail["transfer"] = {
                "status": new.transfer_status,
                "mode": new.transfer_mode,
                "by": new.transfer_by,
                "to": self._masked(new.transfer_to),
                "requested_at": _when(new.transfer_requested_at),
                "ended_at": _when(new.transfer_ended_at),
            }
        if kind == SESSION_REPORTED:
            detail["millis"] = {
                "session_id": new.millis_session_id,
                "call_status": new.millis_call_status,
                "duration_seconds": new.millis_duration_seconds,
            }
        return detail

    def _masked(self, number: str | None) -> str | None:
        return self._number(number) if number is not None else None


def _status_time(record: CallRecord) -> datetime | None:
    """When the call reached its status, where the record keeps it (a claim keeps no time of its own)."""
    if record.status in (CallStatus.REGISTERED, CallStatus.QUEUED):
        return record.created_at
    if record.status is CallStatus.CLAIMED:
        return None
    times = {CallStatus.RINGING: record.ringing_at, CallStatus.ANSWERED: record.answered_at}
    times[CallStatus.BRIDGED] = record.bridged_at
    return times.get(record.status, record.ended_at)


def _report(record: CallRecord) -> tuple[str | None, str | None, int | None]:
    return (record.millis_session_id, record.millis_call_status, record.millis_duration_seconds)

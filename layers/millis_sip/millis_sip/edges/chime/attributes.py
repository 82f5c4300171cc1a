"""The call as Chime's TransactionAttributes carry it from one invocation to the next (at most 10 string
pairs): everything needed to write or move the record on a later event, so that a phone call never depends on
a DynamoDB write having succeeded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from millis_sip.core.calls import CallRecord, CallSource, CallStatus
from millis_sip.core.clock import epoch_ms, from_iso, iso
from millis_sip.core.sip import InvalidSipUri, parse_sip_uri
from millis_sip.edges.chime.events import SmaEvent, whole_number

CALL_ID, REGION, URI, SOURCE = "millis_call_id", "millis_region", "sip_uri", "source"
CREATED, EXPIRES, ATTEMPT, LOOKUP, AGENT = "created_at", "expires_at", "attempt", "lookup_key", "agent_id"
BRIDGED, FAILURE = "bridged_at", "failure_reason"


def encode(record: CallRecord, attempt: int, *, bridged_at: datetime | None = None) -> dict[str, str]:
    values = {
        CALL_ID: record.call_id,
        REGION: record.millis_region,
        URI: str(record.sip_uri),
        SOURCE: str(record.source),
        CREATED: iso(record.created_at),
        EXPIRES: str(int(record.expires_at.timestamp())),
        ATTEMPT: str(attempt),
        LOOKUP: record.lookup_key,
        AGENT: record.agent_id,
        BRIDGED: str(epoch_ms(bridged_at)) if bridged_at is not None else None,
    }
    return {k: v for k, v in values.items() if v is not None}


def failure(reason: str) -> dict[str, str]:
    """The attributes of a call released without an agent (no call to carry)."""
    return {FAILURE: reason[:256]}


def decode(event: SmaEvent) -> CallRecord | None:
    """The call the event's TransactionAttributes carry (None when they carry no call), as the phone call
    uses it: claimed, by this transaction, between its caller and dialed numbers."""
    attrs = event.attributes
    try:
        record = CallRecord(
            call_id=attrs[CALL_ID],
            sip_uri=parse_sip_uri(attrs[URI]),
            millis_region=attrs[REGION],
            status=CallStatus.CLAIMED,
            created_at=from_iso(attrs[CREATED]),
            expires_at=datetime.fromtimestamp(int(attrs[EXPIRES]), tz=UTC),
            lookup_key=attrs.get(LOOKUP),
            agent_id=attrs.get(AGENT),
            source=CallSource(attrs.get(SOURCE, CallSource.CHIME)),
            transaction_id=event.transaction_id,
        )
    except (KeyError, ValueError, OverflowError, InvalidSipUri):
        return None
    caller = event.a_leg
    if caller is not None:
        record = replace(record, caller_number=caller.from_, dialed_number=caller.to)
    return record


def attempt(attrs: Mapping[str, str]) -> int:
    number = whole_number(attrs.get(ATTEMPT))
    return 1 if number is None else number


def bridged_at(attrs: Mapping[str, str]) -> datetime | None:
    """When the agent answered, as ACTION_SUCCESSFUL recorded it (None: it never did)."""
    ms = whole_number(attrs.get(BRIDGED))
    if not ms:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None

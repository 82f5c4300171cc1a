"""Call records and transaction markers as DynamoDB items (docs/operations.md, "The item")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from millis_sip.core.calls import CallRecord, CallSource, CallStatus
from millis_sip.core.clock import from_iso, iso
from millis_sip.core.ports import TransactionMark, TransactionState
from millis_sip.core.sip import parse_sip_uri

Item = dict[str, Any]

MARKER_KIND = "transaction"  # a phone call's marker shares the table with the calls (see ``is_call``)
_TEXT = (
    "lookup_key",
    "agent_id",
    "transaction_id",
    "caller_number",
    "dialed_number",
    "leg_b_call_id",
    "reason",
    "millis_call_status",
    "millis_session_id",
)
_TIMES = ("bridged_at", "ended_at")
_NUMBERS = ("duration_seconds", "millis_duration_seconds")


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def epoch(moment: datetime) -> dict[str, str]:
    """A time as whole epoch seconds (the TTL attribute's format)."""
    return n(int(moment.timestamp()))


def to_item(record: CallRecord) -> Item:
    item: Item = {
        "call_id": s(record.call_id),
        "sip_uri": s(str(record.sip_uri)),
        "millis_region": s(record.millis_region),
        "status": s(record.status.value),
        "created_at": s(iso(record.created_at)),
        "expires_at": epoch(record.expires_at),
        "source": s(str(record.source)),
    }
    for name in _TEXT:
        value = getattr(record, name)
        if value is not None:
            item[name] = s(value)
    for name in _TIMES:
        moment = getattr(record, name)
        if moment is not None:
            item[name] = s(iso(moment))
    for name in _NUMBERS:
        number = getattr(record, name)
        if number is not None:
            item[name] = n(number)
    return item


def is_call(item: Item) -> bool:
    return "kind" not in item  # markers carry a kind; calls do not


def from_item(item: Item) -> CallRecord:
    def text(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value else None

    def time(name: str) -> datetime | None:
        value = text(name)
        return from_iso(value) if value else None

    def number(name: str) -> int | None:
        value = item.get(name)
        return int(value["N"]) if value else None

    optional: dict[str, Any] = {name: text(name) for name in _TEXT}
    optional.update({name: time(name) for name in _TIMES})
    optional.update({name: number(name) for name in _NUMBERS})
    return CallRecord(
        call_id=item["call_id"]["S"],
        sip_uri=parse_sip_uri(item["sip_uri"]["S"]),
        millis_region=item["millis_region"]["S"],
        status=CallStatus(item["status"]["S"]),
        created_at=from_iso(item["created_at"]["S"]),
        expires_at=datetime.fromtimestamp(int(item["expires_at"]["N"]), tz=UTC),
        source=text("source") or CallSource.HTTP,
        **optional,
    )


def marker_item(key: str, *, lease_until_ms: int, expires_at: datetime) -> Item:
    """A phone call's marker, owned (pending) until ``lease_until_ms``."""
    return {
        "call_id": s(key),
        "kind": s(MARKER_KIND),
        "state": s(TransactionState.PENDING.value),
        "lease_until": n(lease_until_ms),
        "expires_at": epoch(expires_at),
    }


def mark_from_item(item: Item) -> TransactionMark:
    def text(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value and "S" in value else None

    return TransactionMark(
        state=TransactionState(text("state") or TransactionState.PENDING),
        millis_call_id=text("millis_call_id"),
        reason=text("reason"),
    )

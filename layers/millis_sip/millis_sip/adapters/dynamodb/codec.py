"""Call records and transaction markers as DynamoDB items (docs/operations.md, "The item")."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from millis_sip.adapters.dynamodb.clients import Item
from millis_sip.core.calls import CallerVerification, CallRecord, CallSource, CallStatus, Direction
from millis_sip.core.clock import from_iso, iso
from millis_sip.core.numbers import NumberRoute
from millis_sip.core.ports import TransactionMark, TransactionState
from millis_sip.core.sip import parse_sip_uri

MARKER_KIND = "transaction"  # a phone call's marker shares the table with the calls (see ``is_call``)
COUNTER_KIND = "counter"  # so does a number's hourly count of calls
LIST_DAY = "list_day"  # the by-day index's key: the UTC date a call was created, on call items only (GET /calls)
_TEXT = (
    "transfer_to",
    "transfer_mode",
    "transfer_by",
    "transfer_status",
    "transfer_summary",
    "transfer_announce",
    "lookup_key",
    "agent_id",
    "transaction_id",
    "caller_number",
    "dialed_number",
    "leg_b_call_id",
    "reason",
    "millis_call_status",
    "millis_session_id",
    "pin_hash",
    "webhook_hash",
    "carrier",
    "carrier_call_id",
    "machine_detection",
    "answered_by",
)
_TIMES = ("bridged_at", "ended_at", "ringing_at", "answered_at", "transfer_requested_at", "transfer_ended_at")
_NUMBERS = ("duration_seconds", "millis_duration_seconds", "ring_timeout_seconds")
_COUNTERS = ("pin_failures",)  # stored once above zero


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
        "caller_verification": s(record.caller_verification.value),
        LIST_DAY: s(list_day(record.created_at)),
    }
    if record.direction is not Direction.INBOUND:  # an inbound call's items stay as they were
        item["direction"] = s(record.direction.value)
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
    for name in _COUNTERS:
        count = getattr(record, name)
        if count:
            item[name] = n(count)
    return item


def list_day(moment: datetime) -> str:
    """The by-day index's partition of a call created at ``moment``: its UTC date, ``2026-12-04``."""
    return moment.astimezone(UTC).date().isoformat()


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
    optional.update({name: number(name) or 0 for name in _COUNTERS})
    # Registrations stored before callers had to be verified read as the safe default.
    optional["caller_verification"] = CallerVerification(text("caller_verification") or CallerVerification.ATTESTATION)
    return CallRecord(
        call_id=item["call_id"]["S"],
        sip_uri=parse_sip_uri(item["sip_uri"]["S"]),
        millis_region=item["millis_region"]["S"],
        status=CallStatus(item["status"]["S"]),
        created_at=from_iso(item["created_at"]["S"]),
        expires_at=datetime.fromtimestamp(int(item["expires_at"]["N"]), tz=UTC),
        source=text("source") or CallSource.HTTP,
        direction=Direction(text("direction") or Direction.INBOUND),
        **optional,
    )


def marker_item(
    key: str, *, owner: str, lease_until_ms: int, expires_at: datetime, fingerprint: str | None = None
) -> Item:
    """A phone call's marker, owned (pending) by ``owner`` until ``lease_until_ms``."""
    item: Item = {
        "call_id": s(key),
        "kind": s(MARKER_KIND),
        "state": s(TransactionState.PENDING.value),
        "owner": s(owner),
        "lease_until": n(lease_until_ms),
        "expires_at": epoch(expires_at),
    }
    if fingerprint is not None:
        item["fingerprint"] = s(fingerprint)
    return item


def mark_from_item(item: Item) -> TransactionMark:
    def text(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value and "S" in value else None

    tries = item.get("tries")
    return TransactionMark(
        state=TransactionState(text("state") or TransactionState.PENDING),
        millis_call_id=text("millis_call_id"),
        reason=text("reason"),
        tries=int(tries["N"]) if tries else 0,
        fingerprint=text("fingerprint"),
    )


def route_item(route: NumberRoute) -> Item:
    """A number route: the Millis fields as JSON text (agent_config may be deep; DynamoDB maps are not needed)."""
    item: Item = {"number": s(route.number), "metadata": s(json.dumps(dict(route.metadata), separators=(",", ":")))}
    if route.agent_id is not None:
        item["agent_id"] = s(route.agent_id)
    if route.agent_config is not None:
        item["agent_config"] = s(json.dumps(dict(route.agent_config), separators=(",", ":")))
    if route.include_metadata_in_prompt is not None:
        item["include_metadata_in_prompt"] = {"BOOL": route.include_metadata_in_prompt}
    if route.max_calls_per_hour is not None:
        item["max_calls_per_hour"] = n(route.max_calls_per_hour)
    if route.outbound_carriers:
        item["outbound_carriers"] = {"SS": sorted(route.outbound_carriers)}
    if route.max_outbound_calls_per_hour is not None:
        item["max_outbound_calls_per_hour"] = n(route.max_outbound_calls_per_hour)
    if route.transfer_targets:
        item["transfer_targets"] = {"SS": sorted(route.transfer_targets)}
    for name in ("created_at", "updated_at"):
        moment = getattr(route, name)
        if moment is not None:
            item[name] = s(iso(moment))
    return item


def route_from_item(item: Item) -> NumberRoute:
    def text(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value else None

    config, created, updated = text("agent_config"), text("created_at"), text("updated_at")
    prompt, cap = item.get("include_metadata_in_prompt"), item.get("max_calls_per_hour")
    outbound_cap = item.get("max_outbound_calls_per_hour")
    return NumberRoute(
        number=item["number"]["S"],
        agent_id=text("agent_id"),
        agent_config=json.loads(config) if config is not None else None,
        metadata=json.loads(text("metadata") or "{}"),
        include_metadata_in_prompt=prompt["BOOL"] if prompt else None,
        max_calls_per_hour=int(cap["N"]) if cap else None,
        outbound_carriers=tuple(sorted(item.get("outbound_carriers", {}).get("SS", ()))),
        max_outbound_calls_per_hour=int(outbound_cap["N"]) if outbound_cap else None,
        transfer_targets=tuple(sorted(item.get("transfer_targets", {}).get("SS", ()))),
        created_at=from_iso(created) if created else None,
        updated_at=from_iso(updated) if updated else None,
    )

"""In-memory stand-ins for the two ports, for unit tests of logic that does not care about storage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from millis_sip.errors import Attempt, BridgeError, CallAlreadyExists
from millis_sip.millis import MillisRegistration
from millis_sip.records import CallRecord, CallStatus
from millis_sip.regions import MillisRegion
from millis_sip.store import TransactionMark, TransactionState


class FakeGateway:
    def __init__(self, fail_with: BridgeError | None = None, *, host: str = "sip.fake.example") -> None:
        self.fail_with = fail_with
        self.host = host
        self.calls: list[dict[str, Any]] = []
        self.budgets: list[float] = []
        self.regions: list[tuple[MillisRegion, ...] | None] = []

    def register(
        self, payload: Mapping[str, Any], *, budget: float, regions: Sequence[MillisRegion] | None = None
    ) -> MillisRegistration:
        self.calls.append(dict(payload))
        self.budgets.append(budget)
        self.regions.append(tuple(regions) if regions else None)
        if self.fail_with is not None:
            raise self.fail_with
        n = len(self.calls)
        region = regions[0] if regions else MillisRegion.US_WEST
        host = self.host.format(region=region.value)
        return MillisRegistration(
            f"fake-{n}", f"sip:call-fake-{n}@{host}", region, (Attempt(region.value, "ok", 12.0),)
        )


class MemoryStore:
    def __init__(self, fail_with: BridgeError | None = None) -> None:
        self.items: dict[str, CallRecord] = {}
        self.fail_with = fail_with
        self.operations = 0

    def _touch(self) -> None:
        self.operations += 1
        if self.fail_with is not None:
            raise self.fail_with

    def put_new(self, record: CallRecord) -> None:
        self._touch()
        if record.call_id in self.items:
            raise CallAlreadyExists(record.call_id)
        self.items[record.call_id] = record

    def get(self, call_id: str) -> CallRecord | None:
        self._touch()
        return self.items.get(call_id)

    def latest_for(self, lookup_key: str, now: datetime) -> CallRecord | None:
        self._touch()
        live = [
            r
            for r in self.items.values()
            if r.lookup_key == lookup_key and r.expires_at > now and r.status is CallStatus.REGISTERED
        ]
        return max(live, key=lambda r: r.created_at, default=None)

    def close_session(
        self, call_id: str, *, status: CallStatus, reason: str, now: datetime, expires_at: datetime, **fields: Any
    ) -> str:
        self._touch()
        stored = self.items.get(call_id)
        if stored is None:
            return "unknown"
        known = {k: v for k, v in fields.items() if v is not None}
        is_open = stored.status in (CallStatus.REGISTERED, CallStatus.CLAIMED, CallStatus.BRIDGED)
        changes: dict[str, Any] = {**known, "ended_at": stored.ended_at or now}
        if is_open:
            changes.update(status=status, expires_at=expires_at, reason=reason)
            if stored.duration_seconds is None and known.get("millis_duration_seconds") is not None:
                changes["duration_seconds"] = known["millis_duration_seconds"]
        self.items[call_id] = replace(stored, **changes)
        return "closed" if is_open else "annotated"


class MemoryInboundStore(MemoryStore):
    """The SIP media application's store in memory: the same conditions as DynamoCallStore, no I/O."""

    def __init__(self, fail_with: BridgeError | None = None) -> None:
        super().__init__(fail_with)
        self.marks: dict[str, TransactionMark] = {}

    def begin_transaction(
        self, key: str, *, now: datetime, lease_seconds: float, expires_at: datetime
    ) -> TransactionMark:
        self._touch()
        mark = self.marks.get(key)
        lease_over = mark is not None and mark.lease_until is not None and mark.lease_until < now
        if mark is None or (mark.state is TransactionState.PENDING and lease_over):
            self.marks[key] = TransactionMark(
                TransactionState.PENDING, lease_until=now + timedelta(seconds=lease_seconds)
            )
            return TransactionMark(TransactionState.ACQUIRED)
        return mark

    def fail_transaction(self, key: str, reason: str) -> None:
        self._touch()
        self.marks[key] = TransactionMark(TransactionState.FAILED, reason=reason)

    def pending_for(self, lookup_key: str, now: datetime) -> list[CallRecord]:
        self._touch()
        found = [
            r
            for r in self.items.values()
            if r.lookup_key == lookup_key and r.expires_at > now and r.status is CallStatus.REGISTERED
        ]
        return sorted(found, key=lambda r: r.created_at, reverse=True)

    def commit_inbound(self, record: CallRecord, *, transaction_key: str | None, claim: bool, now: datetime) -> bool:
        self._touch()
        stored = self.items.get(record.call_id)
        if claim:
            if stored is None or stored.status is not CallStatus.REGISTERED or stored.expires_at <= now:
                return False
        elif stored is not None:
            raise CallAlreadyExists(record.call_id)
        self.items[record.call_id] = record
        if transaction_key is not None:
            self.marks[transaction_key] = TransactionMark(TransactionState.DONE, millis_call_id=record.call_id)
        return True

    def transition(
        self, snapshot: CallRecord, to: CallStatus, *, allowed_from: tuple[CallStatus, ...], now: datetime
    ) -> bool:
        self._touch()
        stored = self.items.get(snapshot.call_id)
        if stored is not None and (
            stored.status not in allowed_from or stored.transaction_id != snapshot.transaction_id
        ):
            return False
        self.items[snapshot.call_id] = replace(snapshot, status=to)
        return True

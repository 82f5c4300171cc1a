"""In-memory implementations of the core's ports, for unit tests of logic that does not care about storage.
``MemoryStore`` is held to the same contract as the DynamoDB adapter by tests/integration/test_store_contract.py,
so it cannot drift from what DynamoDB Local does."""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from millis_sip.core.calls import FIELDS_OF_MOVE, LIVE, MOVES, CallRecord, CallStatus
from millis_sip.core.clock import from_iso, iso
from millis_sip.core.errors import Attempt, BridgeError, CallAlreadyExists, InvalidRequest, LeaseLost
from millis_sip.core.numbers import NumberRoute
from millis_sip.core.phone import canonical_number
from millis_sip.core.ports import (
    CallPage,
    CallQuery,
    MillisRegistration,
    MillisReport,
    SessionOutcome,
    TransactionLock,
    TransactionMark,
    TransactionState,
)
from millis_sip.core.regions import MillisRegion
from millis_sip.core.sip import parse_sip_uri


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
        # What HttpMillisGateway sends must be JSON: httpx serializes with allow_nan=False, and so does this.
        json.dumps(payload, allow_nan=False)
        self.calls.append(dict(payload))
        self.budgets.append(budget)
        self.regions.append(tuple(regions) if regions else None)
        if self.fail_with is not None:
            raise self.fail_with
        n = len(self.calls)
        region = regions[0] if regions else MillisRegion.US_WEST
        host = self.host.format(region=region.value)
        return MillisRegistration(
            f"fake-{n}", parse_sip_uri(f"sip:call-fake-{n}@{host}"), region, (Attempt(region.value, "ok", 12.0),)
        )


@dataclass
class _Marker:
    mark: TransactionMark
    lease_until: datetime | None = None
    owner: str | None = None

    def owned_by(self, lock: TransactionLock) -> bool:
        return self.owner == lock.owner


@dataclass
class MemoryStore:
    """The call store in memory: the same conditions as DynamoCallStore, no I/O. ``fail_with`` makes every
    operation raise (a store that is down); ``operations`` counts them."""

    fail_with: BridgeError | None = None
    items: dict[str, CallRecord] = field(default_factory=dict)
    markers: dict[str, _Marker] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    ringing_slots: dict[str, datetime] = field(default_factory=dict)
    operations: int = 0
    # DynamoDB's conditional writes are atomic; the fake's read-modify-writes hold this lock to be the same.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def _touch(self) -> None:
        self.operations += 1
        if self.fail_with is not None:
            raise self.fail_with

    @property
    def marks(self) -> dict[str, TransactionMark]:
        return {key: marker.mark for key, marker in self.markers.items()}

    def mark(
        self,
        key: str,
        state: TransactionState,
        *,
        lease_until: datetime | None = None,
        millis_call_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Set a phone call's marker as another invocation would have left it."""
        self.markers[key] = _Marker(TransactionMark(state, millis_call_id, reason), lease_until, "another-invocation")

    # --- CallStore ------------------------------------------------------------------------------------

    def put_new(self, record: CallRecord) -> None:
        self._touch()
        if record.call_id in self.items or record.call_id in self.markers:
            raise CallAlreadyExists(record.call_id)
        self.items[record.call_id] = record

    def get(self, call_id: str) -> CallRecord | None:
        self._touch()
        return self.items.get(call_id)

    def latest_for(self, lookup_key: str, now: datetime) -> CallRecord | None:
        self._touch()
        pending = self._pending(lookup_key, now)
        return pending[0] if pending else None

    def close_session(
        self,
        call_id: str,
        *,
        credential_hash: str | None,
        status: CallStatus,
        reason: str,
        now: datetime,
        expires_at: datetime,
        report: MillisReport,
    ) -> SessionOutcome:
        self._touch()
        stored = self.items.get(call_id)
        if stored is None:
            return SessionOutcome.UNKNOWN
        if credential_hash is not None and stored.webhook_hash is None:
            return SessionOutcome.LEGACY
        if credential_hash != stored.webhook_hash:
            return SessionOutcome.FOREIGN
        changes: dict[str, Any] = {"ended_at": stored.ended_at or now}
        # The first report of a session stands: only what the record does not have yet is added.
        if report.call_status is not None and stored.millis_call_status is None:
            changes["millis_call_status"] = report.call_status
        if report.duration_seconds is not None and stored.millis_duration_seconds is None:
            changes["millis_duration_seconds"] = report.duration_seconds
        if report.session_id is not None and stored.millis_session_id is None:
            changes["millis_session_id"] = report.session_id
        is_open = stored.status in LIVE
        if is_open:
            changes.update(status=status, expires_at=expires_at, reason=reason)
            if stored.duration_seconds is None and report.duration_seconds is not None:
                changes["duration_seconds"] = report.duration_seconds
        self.items[call_id] = replace(stored, **changes)
        return SessionOutcome.CLOSED if is_open else SessionOutcome.ANNOTATED

    # --- InboundCallStore -----------------------------------------------------------------------------

    def begin_transaction(
        self,
        key: str,
        *,
        owner: str,
        now: datetime,
        lease_seconds: float,
        expires_at: datetime,
        resume_challenge: bool = False,
        fingerprint: str | None = None,
    ) -> TransactionMark:
        self._touch()
        marker = self.markers.get(key)
        lease_over = marker is not None and marker.lease_until is not None and marker.lease_until < now
        challenged = marker is not None and marker.mark.state is TransactionState.CHALLENGED
        same = marker is not None and marker.mark.fingerprint in (None, fingerprint)
        if (
            marker is None
            or (marker.mark.state is TransactionState.PENDING and lease_over and same)
            or (challenged and resume_challenge and same)
        ):
            self.markers[key] = _Marker(
                TransactionMark(TransactionState.PENDING, fingerprint=fingerprint),
                lease_until=now + timedelta(seconds=lease_seconds),
                owner=owner,
            )
            if challenged and marker is not None:
                return replace(marker.mark, state=TransactionState.ACQUIRED, reason=None)
            return TransactionMark(TransactionState.ACQUIRED)
        return marker.mark

    def fail_transaction(self, lock: TransactionLock, reason: str) -> None:
        self._touch()
        marker = self.markers.get(lock.key)
        if marker is not None and marker.owned_by(lock):
            marker.mark = replace(marker.mark, state=TransactionState.FAILED, reason=reason)

    def release_transaction(self, lock: TransactionLock) -> None:
        self._touch()
        marker = self.markers.get(lock.key)
        if marker is not None and marker.mark.state is TransactionState.PENDING and marker.owned_by(lock):
            del self.markers[lock.key]

    def transaction_mark(self, key: str) -> TransactionMark | None:
        self._touch()
        marker = self.markers.get(key)
        return marker.mark if marker is not None else None

    def challenge_transaction(self, lock: TransactionLock, *, candidate: str, tries: int) -> None:
        self._touch()
        marker = self.markers.get(lock.key)
        if marker is not None and marker.owned_by(lock):
            marker.mark = replace(marker.mark, state=TransactionState.CHALLENGED, millis_call_id=candidate, tries=tries)

    def reserve_pin_attempt(self, call_id: str, *, limit: int) -> int | None:
        self._touch()
        with self._lock:
            stored = self.items.get(call_id)
            if stored is None or stored.status is not CallStatus.REGISTERED or stored.pin_failures >= limit:
                return None
            self.items[call_id] = replace(stored, pin_failures=stored.pin_failures + 1)
            return stored.pin_failures + 1

    def count_call(self, key: str, *, limit: int, expires_at: datetime) -> bool:
        self._touch()
        with self._lock:
            if self.counters.get(key, 0) >= limit:
                return False
            self.counters[key] = self.counters.get(key, 0) + 1
            return True

    def note_carrier_call(self, call_id: str, carrier_call_id: str) -> None:
        self._touch()
        with self._lock:
            stored = self.items.get(call_id)
            if stored is not None and stored.carrier_call_id is None:
                self.items[call_id] = replace(stored, carrier_call_id=carrier_call_id)

    def note_answered_by(self, call_id: str, answered_by: str) -> None:
        self._touch()
        with self._lock:
            stored = self.items.get(call_id)
            if stored is not None:
                self.items[call_id] = replace(stored, answered_by=answered_by)

    def take_ringing_slot(self, call_id: str, *, limit: int, until: datetime, now: datetime) -> bool:
        self._touch()
        with self._lock:
            live = {k: v for k, v in self.ringing_slots.items() if int(v.timestamp()) > int(now.timestamp())}
            if len(live) >= limit:
                return False
            self.ringing_slots = {**live, call_id: until}
            return True

    def free_ringing_slot(self, call_id: str) -> None:
        self._touch()
        with self._lock:
            self.ringing_slots.pop(call_id, None)

    def begin_transfer(self, record: CallRecord, *, live: frozenset[CallStatus]) -> bool:
        self._touch()
        with self._lock:
            stored = self.items.get(record.call_id)
            if stored is None or stored.status not in live or stored.transfer_status == "in_progress":
                return False
            self.items[record.call_id] = replace(
                stored,
                transfer_to=record.transfer_to,
                transfer_mode=record.transfer_mode,
                transfer_by=record.transfer_by,
                transfer_status=record.transfer_status,
                transfer_summary=record.transfer_summary,
                transfer_announce=record.transfer_announce,
                transfer_requested_at=record.transfer_requested_at,
                transfer_ended_at=None,
            )
            return True

    def end_transfer(self, call_id: str, status: str, *, ended_at: datetime) -> bool:
        self._touch()
        with self._lock:
            stored = self.items.get(call_id)
            if stored is None or stored.transfer_status != "in_progress":
                return False
            self.items[call_id] = replace(stored, transfer_status=status, transfer_ended_at=ended_at)
            return True

    def pending_for(self, lookup_key: str, now: datetime) -> list[CallRecord]:
        self._touch()
        return self._pending(lookup_key, now)[:5]

    def commit_inbound(self, record: CallRecord, *, lock: TransactionLock | None, claim: bool, now: datetime) -> bool:
        self._touch()
        stored = self.items.get(record.call_id)
        if claim:
            unclaimed = (
                stored is not None
                and stored.status is CallStatus.REGISTERED
                and stored.expires_at > now
                and stored.transaction_id is None
            )
            again = (
                stored is not None
                and stored.status is CallStatus.CLAIMED
                and stored.transaction_id == record.transaction_id
            )
            if stored is None or not (unclaimed or again):
                return False
            record = replace(
                stored,
                status=CallStatus.CLAIMED,
                transaction_id=record.transaction_id,
                caller_number=record.caller_number or stored.caller_number,
                dialed_number=record.dialed_number or stored.dialed_number,
                carrier=record.carrier or stored.carrier,
                carrier_call_id=record.carrier_call_id or stored.carrier_call_id,
            )
        elif stored is not None:
            raise CallAlreadyExists(record.call_id)
        # As DynamoDB's transaction: the first action whose condition fails is the one reported.
        if lock is not None and not (lock.key in self.markers and self.markers[lock.key].owned_by(lock)):
            raise LeaseLost(lock.key)
        self.items[record.call_id] = record
        if lock is not None:
            marker = self.markers[lock.key]
            marker.mark = replace(marker.mark, state=TransactionState.DONE, millis_call_id=record.call_id)
        return True

    def transition(
        self, snapshot: CallRecord, to: CallStatus, *, allowed_from: tuple[CallStatus, ...], now: datetime
    ) -> bool:
        self._touch()
        assert set(allowed_from) <= set(MOVES[to]), f"{allowed_from} -> {to} is not a move of the state machine"
        stored = self.items.get(snapshot.call_id)
        if stored is None:
            self.items[snapshot.call_id] = replace(snapshot, status=to)
            return True
        if stored.status not in allowed_from or stored.transaction_id != snapshot.transaction_id:
            return False
        moved = replace(snapshot, status=to)
        # As DynamoDB's update: the move's own fields overwrite; every other field keeps what is stored.
        own = {"status", "expires_at", *FIELDS_OF_MOVE.get(to, ())}
        merged = {
            name: getattr(moved, name) if name in own or getattr(stored, name) is None else getattr(stored, name)
            for name in CallRecord.__dataclass_fields__
        }
        self.items[snapshot.call_id] = CallRecord(**merged)
        return True

    def list_calls(self, query: CallQuery) -> CallPage:
        """As DynamoCallStore's: [since, until), newest first, every filter; the cursor is this fake's own."""
        self._touch()
        since, until, after = query.since, query.until, None
        if query.after is not None:
            since, until, after = _fake_cursor(query.after)
        ordered = sorted(
            (r for r in self.items.values() if since <= r.created_at < until and _matches(r, query)),
            key=lambda r: (iso(r.created_at), r.call_id),
            reverse=True,
        )
        if after is not None:
            ordered = [r for r in ordered if (iso(r.created_at), r.call_id) < after]
        chosen = ordered[: query.limit]
        if len(ordered) <= query.limit:
            return CallPage(tuple(chosen), None)
        last = chosen[-1]
        data = {"since": iso(since), "until": iso(until), "at": iso(last.created_at), "id": last.call_id}
        return CallPage(tuple(chosen), base64.urlsafe_b64encode(json.dumps(data).encode()).decode())

    def cancel_registration(self, snapshot: CallRecord, *, now: datetime) -> bool:
        self._touch()
        with self._lock:
            stored = self.items.get(snapshot.call_id)
            if (
                stored is None
                or stored.status is not CallStatus.REGISTERED
                or stored.transaction_id is not None
                or stored.expires_at <= now
            ):
                return False
            self.items[snapshot.call_id] = replace(
                stored,
                status=snapshot.status,
                reason=snapshot.reason,
                ended_at=snapshot.ended_at or now,
                expires_at=snapshot.expires_at,
            )
            return True

    def _pending(self, lookup_key: str, now: datetime) -> list[CallRecord]:
        def indexed(key: str) -> str:  # as StackKeys.lookup_index keys the index: numbers in E.164
            return canonical_number(key) or key

        found = [
            r
            for r in self.items.values()
            if r.lookup_key is not None
            and indexed(r.lookup_key) == indexed(lookup_key)
            and r.expires_at > now
            and r.status is CallStatus.REGISTERED
        ]
        return sorted(found, key=lambda r: r.created_at, reverse=True)


def _matches(record: CallRecord, query: CallQuery) -> bool:
    status = query.status
    if status is CallStatus.EXPIRED:
        if record.status is not CallStatus.REGISTERED or record.expires_at > query.now:
            return False
    elif status is CallStatus.REGISTERED:
        if record.status is not CallStatus.REGISTERED or record.expires_at <= query.now:
            return False
    elif status is not None and record.status is not status:
        return False
    if query.direction is not None and record.direction is not query.direction:
        return False
    if query.carrier is not None and query.carrier not in (record.carrier, record.source):
        return False
    if query.agent_id is not None and record.agent_id != query.agent_id:
        return False
    numbers = (record.caller_number, record.dialed_number, record.lookup_key)
    return query.number is None or query.number in numbers


def _fake_cursor(cursor: str) -> tuple[datetime, datetime, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor))
        return from_iso(data["since"]), from_iso(data["until"]), (str(data["at"]), str(data["id"]))
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidRequest("next is not a cursor this API gave out: pass the next value of the last page.") from None


@dataclass
class MemoryNumberRoutes:
    """Number routes in memory, listed in key order (DynamoDB's scan order is its own)."""

    routes: dict[str, NumberRoute] = field(default_factory=dict)
    fail_with: BridgeError | None = None

    def _touch(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def get(self, number: str) -> NumberRoute | None:
        self._touch()
        return self.routes.get(number)

    def put(self, route: NumberRoute) -> bool:
        self._touch()
        created = route.number not in self.routes
        self.routes[route.number] = route
        return created

    def delete(self, number: str) -> bool:
        self._touch()
        return self.routes.pop(number, None) is not None

    def page(self, *, limit: int, after: str | None) -> tuple[list[NumberRoute], str | None]:
        self._touch()
        numbers = sorted(n for n in self.routes if after is None or n > after)
        chosen = numbers[:limit]
        return [self.routes[n] for n in chosen], (chosen[-1] if len(numbers) > limit else None)

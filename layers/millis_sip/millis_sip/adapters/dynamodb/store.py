"""The call store on DynamoDB: one item per call, plus one marker per phone call (docs/operations.md, "The
item"). It implements the core's ``CallStore`` and ``InboundCallStore`` ports.

Every write is conditional: a new call only if absent, a status only forward (``core.calls.MOVES``). Lookups
by ``lookup_key`` read the ``by-lookup-key`` index newest first and skip registrations that have expired
(TTL deletion lags by up to two days, so expiry is checked on read too). Every botocore error becomes
``StoreUnavailable`` in one place (``clients.send``); a write whose condition did not hold comes back as
``Rejected``. Number routes live in a table of their own (``DynamoNumberRoutes``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from millis_sip.adapters.dynamodb.clients import Item, Rejected, request, send
from millis_sip.adapters.dynamodb.codec import (
    COUNTER_KIND,
    LIST_DAY,
    epoch,
    from_item,
    is_call,
    list_day,
    mark_from_item,
    marker_item,
    n,
    route_from_item,
    route_item,
    s,
    to_item,
)
from millis_sip.core.calls import (
    FIELDS_OF_MOVE,
    LIVE,
    MAX_CALL_TTL_SECONDS,
    TOKEN,
    CallRecord,
    CallStatus,
    Direction,
)
from millis_sip.core.clock import epoch_ms, from_iso, iso
from millis_sip.core.errors import CallAlreadyExists, InvalidRequest, LeaseLost
from millis_sip.core.keys import StackKeys
from millis_sip.core.numbers import NumberRoute
from millis_sip.core.ports import (
    CallPage,
    CallQuery,
    MillisReport,
    SessionOutcome,
    TransactionLock,
    TransactionMark,
    TransactionState,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

LOOKUP_INDEX = "by-lookup-index"
LOOKUP_ATTRIBUTE = "lookup_index"  # the index's key: a keyed hash of lookup_key, only while the call is unused
LOOKUP_PAGE_SIZE = 20
LOOKUP_MAX_PAGES = 3  # 60 unexpired registrations for one key: more is a misuse, and each page is a round trip
CLAIM_CANDIDATES = 5
RINGING_SLOTS_KEY = "outbound-ringing-slots"  # the item that holds the slots of outbound calls ringing at once
SLOTS_KIND = "slots"
RING_SLOT_TRIES = 5
LIST_INDEX = "by-day"  # GET /calls: call items by the UTC date they were created (LIST_DAY), newest first
LIST_MAX_QUERIES = 8  # reads per GET /calls: a page may come back short (with a cursor) rather than read on
LIST_FILTERED_READ = 100  # items read per query when filters may drop most of them


class DynamoCallStore:
    """``keys`` key the lookup index (``keys.lookup_index``): the functions and anything reading their
    registrations must hold the same stack secret."""

    def __init__(self, client: DynamoDBClient, table_name: str, *, keys: StackKeys) -> None:
        self._client = client
        self._table = table_name
        self._keys = keys

    def _send(self, method: str, **kwargs: Any) -> Item | Rejected:
        return send(self._client, method, **kwargs)

    # --- the HTTP API's operations ------------------------------------------------------------------

    def put_new(self, record: CallRecord) -> None:
        item = to_item(record)
        if record.lookup_key is not None and record.status is CallStatus.REGISTERED:
            item[LOOKUP_ATTRIBUTE] = s(self._keys.lookup_index(record.lookup_key))
        answer = self._send(
            "put_item", TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(call_id)"
        )
        if isinstance(answer, Rejected):
            raise CallAlreadyExists(f"A call with id {record.call_id!r} is already stored.")

    def get(self, call_id: str) -> CallRecord | None:
        item = self._get_item(call_id)
        return from_item(item) if item and is_call(item) else None

    def latest_for(self, lookup_key: str, now: datetime) -> CallRecord | None:
        for item in self._newest_first(lookup_key, now):
            return from_item(item)
        return None

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
        values: Item = {":now": s(iso(now))}
        # The first report of a session stands: a later one (a replay, a late error) adds only what is missing.
        sets = ["updated_at = :now", "ended_at = if_not_exists(ended_at, :now)"]
        reported = {
            "millis_call_status": s(report.call_status) if report.call_status is not None else None,
            "millis_duration_seconds": n(report.duration_seconds) if report.duration_seconds is not None else None,
            "millis_session_id": s(report.session_id) if report.session_id is not None else None,
        }
        for name, value in reported.items():
            if value is not None:
                values[f":{name}"] = value
                sets.append(f"{name} = if_not_exists({name}, :{name})")
        if credential_hash is not None:
            authorized = "webhook_hash = :credential"
            values[":credential"] = s(credential_hash)
        else:
            authorized = "attribute_not_exists(webhook_hash)"
        allowed = f"attribute_exists(call_id) AND attribute_not_exists(kind) AND {authorized}"
        closing = {":to": s(status.value), ":reason": s(reason), ":exp": epoch(expires_at)}
        closing.update({f":open{i}": s(st.value) for i, st in enumerate(LIVE)})
        closing_sets = ["#status = :to", "expires_at = :exp", "reason = :reason"]
        if report.duration_seconds is not None:  # a call no phone leg timed: Millis' duration is the duration
            closing_sets.append("duration_seconds = if_not_exists(duration_seconds, :millis_duration_seconds)")
        closed = self._send(
            "update_item",
            TableName=self._table,
            Key={"call_id": s(call_id)},
            UpdateExpression="SET " + ", ".join([*sets, *closing_sets]) + f" REMOVE {LOOKUP_ATTRIBUTE}",
            ConditionExpression=f"{allowed} AND #status IN ({', '.join(f':open{i}' for i in range(len(LIVE)))})",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={**values, **closing},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        if not isinstance(closed, Rejected):
            return SessionOutcome.CLOSED
        stored = closed.item or self._get_item(call_id)  # DynamoDB returns it; a stand-in may not
        if not stored or not is_call(stored):
            return SessionOutcome.UNKNOWN
        held = (stored.get("webhook_hash") or {}).get("S")
        if credential_hash is not None and held is None:
            return SessionOutcome.LEGACY
        if credential_hash is None and held is not None:
            return SessionOutcome.FOREIGN
        if held is not None and credential_hash is not None and not hmac.compare_digest(held, credential_hash):
            return SessionOutcome.FOREIGN
        missing = [name for name, value in reported.items() if value is not None and name not in stored]
        if not missing:  # a replay, or a late report with nothing new: the closed record stays as it is
            return SessionOutcome.ANNOTATED
        annotated = self._send(
            "update_item",
            TableName=self._table,
            Key={"call_id": s(call_id)},
            UpdateExpression="SET " + ", ".join(sets),
            # Only while one of them is still missing: a report racing this one must not rewrite updated_at.
            ConditionExpression=f"{allowed} AND ({' OR '.join(f'attribute_not_exists({m})' for m in missing)})",
            ExpressionAttributeValues=values,
        )
        if isinstance(annotated, Rejected):
            still = self._get_item(call_id)  # another report filled them in, or the item is gone
            return SessionOutcome.ANNOTATED if still and is_call(still) else SessionOutcome.UNKNOWN
        return SessionOutcome.ANNOTATED

    # --- the inbound-call router's operations --------------------------------------------------------

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
        now_ms = epoch_ms(now)
        # Free, or owned by an invocation that ran out of time without finishing (or, resuming, a challenge);
        # taken over only by the same call (its fingerprint), and never from a call the marker knows as another.
        condition = "attribute_not_exists(call_id) OR (#state = :pending AND lease_until < :now AND {same})"
        values: Item = {":pending": s(TransactionState.PENDING.value), ":now": n(now_ms)}
        if resume_challenge:
            condition += " OR (#state = :challenged AND {same})"
            values[":challenged"] = s(TransactionState.CHALLENGED.value)
        if fingerprint is not None:
            same = "(attribute_not_exists(fingerprint) OR fingerprint = :fingerprint)"
            values[":fingerprint"] = s(fingerprint)
        else:
            same = "attribute_not_exists(fingerprint)"
        answer = self._send(
            "put_item",
            TableName=self._table,
            Item=marker_item(
                key,
                owner=owner,
                lease_until_ms=now_ms + int(lease_seconds * 1000),
                expires_at=expires_at,
                fingerprint=fingerprint,
            ),
            ConditionExpression=condition.format(same=same),
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",  # a challenge being resumed says which registration it was for
            ReturnValuesOnConditionCheckFailure="ALL_OLD",  # saves a read
        )
        if not isinstance(answer, Rejected):
            old = mark_from_item(answer["Attributes"]) if answer.get("Attributes") else None
            if old is not None and old.state is TransactionState.CHALLENGED:
                return replace(old, state=TransactionState.ACQUIRED, reason=None)
            return TransactionMark(TransactionState.ACQUIRED)
        item = answer.item or self._get_item(key)
        return mark_from_item(item) if item else TransactionMark(TransactionState.PENDING)

    def fail_transaction(self, lock: TransactionLock, reason: str) -> None:
        self._send(
            "update_item",
            TableName=self._table,
            Key={"call_id": s(lock.key)},
            UpdateExpression="SET #state = :failed, reason = :reason",
            ConditionExpression="#owner = :owner",  # Rejected: a retry took the call over; its answer stands
            ExpressionAttributeNames={"#state": "state", "#owner": "owner"},
            ExpressionAttributeValues={
                ":failed": s(TransactionState.FAILED.value),
                ":reason": s(reason),
                ":owner": s(lock.owner),
            },
        )

    def release_transaction(self, lock: TransactionLock) -> None:
        self._send(
            "delete_item",
            TableName=self._table,
            Key={"call_id": s(lock.key)},
            ConditionExpression="#state = :pending AND #owner = :owner",
            ExpressionAttributeNames={"#state": "state", "#owner": "owner"},
            ExpressionAttributeValues={":pending": s(TransactionState.PENDING.value), ":owner": s(lock.owner)},
        )  # Rejected: it is finished, gone or someone else's, which a release leaves as it is

    def transaction_mark(self, key: str) -> TransactionMark | None:
        item = self._get_item(key)
        return mark_from_item(item) if item and not is_call(item) else None

    def challenge_transaction(self, lock: TransactionLock, *, candidate: str, tries: int) -> None:
        self._send(
            "update_item",
            TableName=self._table,
            Key={"call_id": s(lock.key)},
            UpdateExpression="SET #state = :challenged, millis_call_id = :candidate, tries = :tries",
            ConditionExpression="#owner = :owner",
            ExpressionAttributeNames={"#state": "state", "#owner": "owner"},
            ExpressionAttributeValues={
                ":challenged": s(TransactionState.CHALLENGED.value),
                ":candidate": s(candidate),
                ":tries": n(tries),
                ":owner": s(lock.owner),
            },
        )

    def reserve_pin_attempt(self, call_id: str, *, limit: int) -> int | None:
        answer = self._send(
            "update_item",
            TableName=self._table,
            Key={"call_id": s(call_id)},
            UpdateExpression="ADD pin_failures :one",
            ConditionExpression=(
                "attribute_exists(call_id) AND #status = :registered"
                " AND (attribute_not_exists(pin_failures) OR pin_failures < :limit)"
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":one": n(1),
                ":limit": n(limit),
                ":registered": s(CallStatus.REGISTERED.value),
            },
            ReturnValues="UPDATED_NEW",
        )
        if isinstance(answer, Rejected):
            return None
        return int(answer["Attributes"]["pin_failures"]["N"])

    def count_call(self, key: str, *, limit: int, expires_at: datetime) -> bool:
        answer = self._send(
            "update_item",
            TableName=self._table,
            Key={"call_id": s(key)},
            UpdateExpression="SET kind = :counter, expires_at = :exp ADD calls :one",
            ConditionExpression="attribute_not_exists(calls) OR calls < :limit",
            ExpressionAttributeValues={
                ":counter": s(COUNTER_KIND),
                ":exp": epoch(expires_at),
                ":one": n(1),
                ":limit": n(limit),
            },
        )
        return not isinstance(answer, Rejected)

    def pending_for(self, lookup_key: str, now: datetime) -> list[CallRecord]:
        found: list[CallRecord] = []
        for item in self._newest_first(lookup_key, now):
            found.append(from_item(item))
            if len(found) >= CLAIM_CANDIDATES:
                break
        return found

    def commit_inbound(self, record: CallRecord, *, lock: TransactionLock | None, claim: bool, now: datetime) -> bool:
        if claim:
            first: Item = {"Update": self._claim_update(record, now)}
        else:
            first = {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item(record),
                    "ConditionExpression": "attribute_not_exists(call_id)",
                }
            }
        items: list[Any] = [first]
        if lock is not None:
            items.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"call_id": s(lock.key)},
                        "UpdateExpression": "SET #state = :done, millis_call_id = :id",
                        "ConditionExpression": "#owner = :owner",
                        "ExpressionAttributeNames": {"#state": "state", "#owner": "owner"},
                        "ExpressionAttributeValues": {
                            ":done": s(TransactionState.DONE.value),
                            ":id": s(record.call_id),
                            ":owner": s(lock.owner),
                        },
                    }
                }
            )
        answer = self._send("transact_write_items", TransactItems=items)
        if isinstance(answer, Rejected):
            if answer.index == 1:
                raise LeaseLost(f"Another invocation took phone call {lock.key if lock else ''!r} over.")
            if claim:
                return False
            raise CallAlreadyExists(f"A call with id {record.call_id!r} is already stored.")
        return True

    def _claim_update(self, record: CallRecord, now: datetime) -> Item:
        values: Item = {
            ":claimed": s(CallStatus.CLAIMED.value),
            ":registered": s(CallStatus.REGISTERED.value),
            ":tx": s(record.transaction_id or ""),
            ":now": epoch(now),
            ":updated": s(iso(now)),
        }
        assignments = ["#status = :claimed", "transaction_id = :tx", "updated_at = :updated"]
        for name in ("caller_number", "dialed_number", "carrier", "carrier_call_id"):
            value = getattr(record, name)
            if value is not None:
                assignments.append(f"{name} = :{name}")
                values[f":{name}"] = s(value)
        return {
            "TableName": self._table,
            "Key": {"call_id": s(record.call_id)},
            "UpdateExpression": "SET " + ", ".join(assignments) + f" REMOVE {LOOKUP_ATTRIBUTE}",  # used: unindexed
            # Unclaimed and unexpired, or already claimed by this very phone call (a retried invocation).
            "ConditionExpression": (
                "(#status = :registered AND expires_at > :now AND attribute_not_exists(transaction_id))"
                " OR (#status = :claimed AND transaction_id = :tx)"
            ),
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": values,
        }

    def transition(
        self, snapshot: CallRecord, to: CallStatus, *, allowed_from: tuple[CallStatus, ...], now: datetime
    ) -> bool:
        item = to_item(replace(snapshot, status=to))
        item.pop("call_id")
        changing = {"status", "expires_at", *FIELDS_OF_MOVE.get(to, ())}
        names: dict[str, str] = {"#status": "status", "#tx": "transaction_id"}
        values: Item = {":now_text": s(iso(now)), ":tx": s(snapshot.transaction_id or "")}
        assignments = ["updated_at = :now_text"]
        for i, (name, value) in enumerate(sorted(item.items())):
            ref = {"status": "#status", "transaction_id": "#tx"}.get(name, f"#a{i}")
            names[ref] = name
            values[f":v{i}"] = value
            if name in changing:
                assignments.append(f"{ref} = :v{i}")
            else:  # keep what is stored; fill in what is missing (a record that was never written)
                assignments.append(f"{ref} = if_not_exists({ref}, :v{i})")
        allowed = []
        for j, status in enumerate(allowed_from):
            values[f":from{j}"] = s(status.value)
            allowed.append(f":from{j}")
        answer = self._send(
            "update_item",
            TableName=self._table,
            Key={"call_id": s(snapshot.call_id)},
            UpdateExpression="SET " + ", ".join(assignments) + f" REMOVE {LOOKUP_ATTRIBUTE}",
            ConditionExpression=f"attribute_not_exists(call_id) OR (#status IN ({', '.join(allowed)}) AND #tx = :tx)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        return not isinstance(answer, Rejected)

    # --- outbound calls --------------------------------------------------------------------------------

    def note_carrier_call(self, call_id: str, carrier_call_id: str) -> None:
        self._send(
            "update_item",
            TableName=self._table,
            Key={"call_id": s(call_id)},
            UpdateExpression="SET carrier_call_id = if_not_exists(carrier_call_id, :id)",
            ConditionExpression="attribute_exists(call_id)",
            ExpressionAttributeValues={":id": s(carrier_call_id)},
        )

    # --- transfers ---------------------------------------------------------------------------------------

    def begin_transfer(self, record: CallRecord, *, live: frozenset[CallStatus]) -> bool:
        """The transfer's fields, written only while the call is ``live`` with no transfer under way."""
        values: Item = {
            ":to": s(record.transfer_to or ""),
            ":mode": s(record.transfer_mode or ""),
            ":by": s(record.transfer_by or ""),
            ":st": s(record.transfer_status or ""),
            ":at": s(iso(record.transfer_requested_at or datetime.now(UTC))),
            ":busy": s("in_progress"),
        }
        sets = [
            "transfer_to = :to",
            "transfer_mode = :mode",
            "transfer_by = :by",
            "transfer_status = :st",
            "transfer_requested_at = :at",
        ]
        removes = ["transfer_ended_at"]
        for name, ref in (("transfer_summary", ":sum"), ("transfer_announce", ":ann")):
            text = getattr(record, name)
            if text:
                values[ref] = s(text)
                sets.append(f"{name} = {ref}")
            else:
                removes.append(name)
        states = []
        for i, status in enumerate(sorted(live)):
            values[f":live{i}"] = s(status.value)
            states.append(f":live{i}")
        answer = self._send(
            "update_item",
            TableName=self._table,
            Key={"call_id": s(record.call_id)},
            UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            ConditionExpression=(
                f"attribute_exists(call_id) AND #status IN ({', '.join(states)}) "
                "AND (attribute_not_exists(transfer_status) OR transfer_status <> :busy)"
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=values,
        )
        return not isinstance(answer, Rejected)

    def end_transfer(self, call_id: str, status: str, *, ended_at: datetime) -> bool:
        answer = self._send(
            "update_item",
            TableName=self._table,
            Key={"call_id": s(call_id)},
            UpdateExpression="SET transfer_status = :st, transfer_ended_at = :at",
            ConditionExpression="transfer_status = :busy",
            ExpressionAttributeValues={":st": s(status), ":at": s(iso(ended_at)), ":busy": s("in_progress")},
        )
        return not isinstance(answer, Rejected)

    def note_answered_by(self, call_id: str, answered_by: str) -> None:
        self._send(
            "update_item",
            TableName=self._table,
            Key={"call_id": s(call_id)},
            UpdateExpression="SET answered_by = :by",
            ConditionExpression="attribute_exists(call_id)",
            ExpressionAttributeValues={":by": s(answered_by)},
        )

    def take_ringing_slot(self, call_id: str, *, limit: int, until: datetime, now: datetime) -> bool:
        """One item holds the slots (a map of holder to the epoch second it lapses at) and a version: a slot is
        taken only if the version read is still the item's, so two calls never both take the last slot; slots
        past their time are dropped by the same write."""
        for _ in range(RING_SLOT_TRIES):
            item = self._get_item(RINGING_SLOTS_KEY)
            if item is None:
                answer = self._send(
                    "put_item",
                    TableName=self._table,
                    Item={
                        "call_id": s(RINGING_SLOTS_KEY),
                        "kind": s(SLOTS_KIND),
                        "slots": {"M": {call_id: epoch(until)}},
                        "version": n(1),
                    },
                    ConditionExpression="attribute_not_exists(call_id)",
                )
                if not isinstance(answer, Rejected):
                    return True
                continue
            held = {k: int(v["N"]) for k, v in item.get("slots", {}).get("M", {}).items()}
            lapsed = [k for k, lapses in held.items() if lapses <= int(now.timestamp())]
            if len(held) - len(lapsed) >= limit:
                return False
            names = {"#holder": call_id, **{f"#x{i}": k for i, k in enumerate(lapsed)}}
            removal = f" REMOVE {', '.join(f'slots.#x{i}' for i in range(len(lapsed)))}" if lapsed else ""
            answer = self._send(
                "update_item",
                TableName=self._table,
                Key={"call_id": s(RINGING_SLOTS_KEY)},
                UpdateExpression="SET slots.#holder = :until, version = version + :one" + removal,
                ConditionExpression="version = :version",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":until": epoch(until), ":one": n(1), ":version": item["version"]},
            )
            if not isinstance(answer, Rejected):
                return True
        return False  # as many writers at once as tries: as good as full

    def free_ringing_slot(self, call_id: str) -> None:
        self._send(
            "update_item",
            TableName=self._table,
            Key={"call_id": s(RINGING_SLOTS_KEY)},
            UpdateExpression="REMOVE slots.#holder",
            ConditionExpression="attribute_exists(call_id)",
            ExpressionAttributeNames={"#holder": call_id},
        )

    # --- listing and cancelling (GET /calls, DELETE /calls/{call_id}) -------------------------------------

    def list_calls(self, query: CallQuery) -> CallPage:
        """Query the ``by-day`` index one UTC day at a time, from ``until``'s day back to ``since``'s, newest
        first, with the filters as a FilterExpression; at most LIST_MAX_QUERIES reads, then a cursor (the window,
        the day and the last key read) says where the next page starts."""
        since, until, day, start = query.since, query.until, list_day(query.until - _MS), None
        if query.after is not None:
            since, until, day, start = _decode_list_cursor(query.after)
        filters, names, values = _list_filters(query)
        values[":lo"], values[":hi"] = s(iso(since)), s(iso(until - _MS))
        names["#created"] = "created_at"
        first_day = list_day(since)
        found: list[CallRecord] = []
        for _ in range(LIST_MAX_QUERIES):
            if day < first_day:
                return CallPage(tuple(found), None)
            remaining = query.limit - len(found)
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": LIST_INDEX,
                "KeyConditionExpression": f"{LIST_DAY} = :day AND #created BETWEEN :lo AND :hi",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {**values, ":day": s(day)},
                "ScanIndexForward": False,
                "Limit": max(remaining, LIST_FILTERED_READ) if filters else remaining,
            }
            if filters:
                kwargs["FilterExpression"] = " AND ".join(filters)
            if start is not None:
                kwargs["ExclusiveStartKey"] = _list_key(day, *start)
            page = request(self._client, "query", **kwargs)
            items = [item for item in page.get("Items", []) if is_call(item)]
            last = page.get("LastEvaluatedKey")
            for i, item in enumerate(items):
                found.append(from_item(item))
                if len(found) == query.limit:
                    if i < len(items) - 1 or last is not None:
                        position = (item["call_id"]["S"], item["created_at"]["S"])
                        return CallPage(tuple(found), _list_cursor(since, until, day, position))
                    earlier = _day_before(day)
                    following = _list_cursor(since, until, earlier, None) if earlier >= first_day else None
                    return CallPage(tuple(found), following)
            if last is not None:
                start = (last["call_id"]["S"], last["created_at"]["S"])
            else:
                day, start = _day_before(day), None
        if day < first_day:
            return CallPage(tuple(found), None)
        return CallPage(tuple(found), _list_cursor(since, until, day, start))

    def cancel_registration(self, snapshot: CallRecord, *, now: datetime) -> bool:
        answer = self._send(
            "update_item",
            TableName=self._table,
            Key={"call_id": s(snapshot.call_id)},
            UpdateExpression=(
                "SET #status = :to, reason = :reason, ended_at = :ended, expires_at = :exp, updated_at = :updated"
                f" REMOVE {LOOKUP_ATTRIBUTE}"
            ),
            # Only an unclaimed, unexpired registration: the claim's own condition needs it registered, so of a
            # cancel and a claim racing, exactly one wins.
            ConditionExpression=(
                "attribute_exists(call_id) AND attribute_not_exists(kind) AND #status = :registered"
                " AND attribute_not_exists(transaction_id) AND expires_at > :now"
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":to": s(snapshot.status.value),
                ":reason": s(snapshot.reason or ""),
                ":ended": s(iso(snapshot.ended_at or now)),
                ":exp": epoch(snapshot.expires_at),
                ":updated": s(iso(now)),
                ":registered": s(CallStatus.REGISTERED.value),
                ":now": epoch(now),
            },
        )
        return not isinstance(answer, Rejected)

    # --- reading and the one error translator ---------------------------------------------------------

    def _get_item(self, key: str) -> Item | None:
        item: Item | None = request(
            self._client, "get_item", TableName=self._table, Key={"call_id": s(key)}, ConsistentRead=True
        ).get("Item")
        return item

    def _newest_first(self, lookup_key: str, now: datetime) -> Iterator[Item]:
        """Unexpired ``registered`` calls for ``lookup_key``, newest first, as the index projects them (no
        phone numbers). A registration leaves the index once used or closed, and none lives longer than
        MAX_CALL_TTL_SECONDS, so a few pages hold every candidate; LOOKUP_MAX_PAGES caps the reads anyway."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": LOOKUP_INDEX,
            "KeyConditionExpression": f"{LOOKUP_ATTRIBUTE} = :k AND created_at > :since",
            "FilterExpression": "expires_at > :now AND #status = :status",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":k": s(self._keys.lookup_index(lookup_key)),
                ":since": s(iso(now - timedelta(seconds=MAX_CALL_TTL_SECONDS))),
                ":now": epoch(now),
                ":status": s(CallStatus.REGISTERED.value),
            },
            "ScanIndexForward": False,
            "Limit": LOOKUP_PAGE_SIZE,
        }
        for _ in range(LOOKUP_MAX_PAGES):
            page = request(self._client, "query", **kwargs)
            for item in page.get("Items", []):
                yield {**item, "lookup_key": s(lookup_key)}  # the index does not hold it; the caller does
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class DynamoNumberRoutes:
    """Number routes, one item per E.164 number (``NumbersTable``). Listing is a scan: a page of the table in
    no particular order, with an opaque cursor for the next."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def get(self, number: str) -> NumberRoute | None:
        item = request(self._client, "get_item", TableName=self._table, Key={"number": s(number)}).get("Item")
        return route_from_item(item) if item else None

    def put(self, route: NumberRoute) -> bool:
        answer = request(
            self._client, "put_item", TableName=self._table, Item=route_item(route), ReturnValues="ALL_OLD"
        )
        return not answer.get("Attributes")

    def delete(self, number: str) -> bool:
        answer = request(
            self._client, "delete_item", TableName=self._table, Key={"number": s(number)}, ReturnValues="ALL_OLD"
        )
        return bool(answer.get("Attributes"))

    def page(self, *, limit: int, after: str | None) -> tuple[list[NumberRoute], str | None]:
        kwargs: dict[str, Any] = {"TableName": self._table, "Limit": limit}
        if after:
            kwargs["ExclusiveStartKey"] = {"number": s(_cursor_number(after))}
        answer = request(self._client, "scan", **kwargs)
        last = answer.get("LastEvaluatedKey")
        following = _cursor(last["number"]["S"]) if last else None
        return [route_from_item(item) for item in answer.get("Items", [])], following


def _cursor(number: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": number}).encode()).decode().rstrip("=")


def _cursor_number(cursor: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        number = data["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidRequest("next is not a cursor this API gave out: pass the next value of the last page.") from None
    if not isinstance(number, str) or not number:
        raise InvalidRequest("next is not a cursor this API gave out: pass the next value of the last page.")
    return number


# --- GET /calls: filters and the cursor -----------------------------------------------------------------------

_MS = timedelta(milliseconds=1)
_NOT_A_CURSOR = "next is not a cursor this API gave out: pass the next value of the last page."


def _list_filters(query: CallQuery) -> tuple[list[str], dict[str, str], Item]:
    filters: list[str] = []
    names: dict[str, str] = {}
    values: Item = {}
    if query.status is not None:
        names["#status"] = "status"
        if query.status in (CallStatus.REGISTERED, CallStatus.EXPIRED):  # expired is a lapsed registration
            values[":status"], values[":now"] = s(CallStatus.REGISTERED.value), epoch(query.now)
            lapse = ">" if query.status is CallStatus.REGISTERED else "<="
            filters.append(f"#status = :status AND expires_at {lapse} :now")
        else:
            values[":status"] = s(query.status.value)
            filters.append("#status = :status")
    if query.direction is Direction.OUTBOUND:
        values[":direction"] = s(Direction.OUTBOUND.value)
        filters.append("direction = :direction")
    elif query.direction is Direction.INBOUND:  # inbound items have no direction attribute
        values[":direction"] = s(Direction.OUTBOUND.value)
        filters.append("(attribute_not_exists(direction) OR direction <> :direction)")
    if query.carrier is not None:
        names["#source"] = "source"
        values[":carrier"] = s(query.carrier)
        filters.append("(carrier = :carrier OR #source = :carrier)")
    if query.agent_id is not None:
        values[":agent"] = s(query.agent_id)
        filters.append("agent_id = :agent")
    if query.number is not None:
        values[":number"] = s(query.number)
        filters.append("(caller_number = :number OR dialed_number = :number OR lookup_key = :number)")
    return filters, names, values


def _day_before(day: str) -> str:
    return (datetime.fromisoformat(day) - timedelta(days=1)).date().isoformat()


def _list_key(day: str, call_id: str, created_at: str) -> Item:
    return {"call_id": s(call_id), LIST_DAY: s(day), "created_at": s(created_at)}


def _list_cursor(since: datetime, until: datetime, day: str, position: tuple[str, str] | None) -> str:
    data: dict[str, Any] = {"since": iso(since), "until": iso(until), "day": day}
    if position is not None:
        data["call_id"], data["created_at"] = position
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_list_cursor(cursor: str) -> tuple[datetime, datetime, str, tuple[str, str] | None]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        since, until, day = from_iso(data["since"]), from_iso(data["until"]), data["day"]
        if not isinstance(day, str) or datetime.fromisoformat(day).date().isoformat() != day or not since < until:
            raise ValueError(day)
        call_id, created_at = data.get("call_id"), data.get("created_at")
        if call_id is None and created_at is None:
            return since, until, day, None
        if not isinstance(call_id, str) or not TOKEN.match(call_id) or not isinstance(created_at, str):
            raise ValueError(call_id)
        if iso(from_iso(created_at)) != created_at or list_day(from_iso(created_at)) != day:
            raise ValueError(created_at)
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise InvalidRequest(_NOT_A_CURSOR) from None
    return since, until, day, (call_id, created_at)

"""The call store: one DynamoDB item per registered call (see README, "The item").

Writes are conditional puts: an existing ``call_id`` is never overwritten. Lookups by ``lookup_key``
read the ``by-lookup-key`` index newest first and skip registrations that have expired (TTL deletion
lags by up to two days, so expiry is checked on read too).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from millis_sip.config import MAX_CALL_TTL_SECONDS
from millis_sip.errors import CallAlreadyExists, StoreUnavailable
from millis_sip.records import CallRecord, CallSource, CallStatus, iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

LOOKUP_INDEX = "by-lookup-key"
LOOKUP_PAGE_SIZE = 20
CLAIM_CANDIDATES = 5
TRANSACTION_KEY_PREFIX = "chime-transaction#"

# Standard retry mode: exponential backoff with jitter on throttling and transient errors.
DYNAMODB_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 3},  # the first attempt and two retries
    connect_timeout=2,
    read_timeout=3,
    tcp_keepalive=True,
)
# A phone call waits on the SIP media application, and Chime waits 5 s for its answer: fail fast, and
# let the call go on without the write (the record travels in TransactionAttributes).
DYNAMODB_CHIME_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 2},  # the first attempt and one retry
    connect_timeout=0.5,
    read_timeout=1.0,
    tcp_keepalive=True,
)


def transaction_key(transaction_id: str, attempt: int) -> str:
    return f"{TRANSACTION_KEY_PREFIX}{transaction_id}#{attempt}"


class CallStore(Protocol):
    def put_new(self, record: CallRecord) -> None:
        """Store a call that must not exist yet (CallAlreadyExists otherwise)."""
        ...

    def get(self, call_id: str) -> CallRecord | None: ...

    def latest_for(self, lookup_key: str, now: datetime) -> CallRecord | None:
        """The newest registration for ``lookup_key`` that has not expired at ``now`` and is not used yet."""
        ...

    def close_session(
        self, call_id: str, *, status: CallStatus, reason: str, now: datetime, expires_at: datetime, **fields: Any
    ) -> str:
        """Millis reports the session over: close the call if it is open, else only add Millis' fields."""
        ...


_OPTIONAL_TEXT = (
    "lookup_key",
    "agent_id",
    "transaction_id",
    "caller_number",
    "dialed_number",
    "leg_b_call_id",
    "reason",
)
_OPTIONAL_TIMES = ("bridged_at", "ended_at")


class TransactionState(StrEnum):
    ACQUIRED = "acquired"  # this invocation owns the Chime transaction: it may register with Millis
    PENDING = "pending"  # another invocation owns it and has not finished
    DONE = "done"  # finished: millis_call_id is the call to bridge to
    FAILED = "failed"  # finished without an agent: release the caller again


@dataclass(frozen=True, slots=True)
class TransactionMark:
    """What the store knows of one attempt of one Chime transaction (kept for retried invocations)."""

    state: TransactionState
    millis_call_id: str | None = None
    reason: str | None = None
    lease_until: datetime | None = None


class InboundCallStore(CallStore, Protocol):
    """What the SIP media application needs on top of the HTTP API's store."""

    def begin_transaction(
        self, key: str, *, now: datetime, lease_seconds: float, expires_at: datetime
    ) -> TransactionMark:
        """Take ownership of ``key`` (ACQUIRED), or say who has it and how far they got."""
        ...

    def fail_transaction(self, key: str, reason: str) -> None: ...

    def pending_for(self, lookup_key: str, now: datetime) -> list[CallRecord]:
        """Unexpired ``registered`` calls for ``lookup_key``, newest first (at most CLAIM_CANDIDATES)."""
        ...

    def commit_inbound(self, record: CallRecord, *, transaction_key: str | None, claim: bool, now: datetime) -> bool:
        """Store a call a phone call now uses, and finish its transaction, in one DynamoDB transaction.

        ``claim``: ``record`` is an HTTP registration moving registered -> claimed; False when another
        phone call claimed it first. Otherwise ``record`` is new (stored only if absent)."""
        ...

    def transition(
        self, snapshot: CallRecord, to: CallStatus, *, allowed_from: tuple[CallStatus, ...], now: datetime
    ) -> bool:
        """Move a call forward (conditional on its status and transaction), writing the fields of
        ``snapshot`` that belong to ``to``. A call that was never stored is created from ``snapshot``.
        False when the call is elsewhere in its life (a duplicate or late event): nothing changes."""
        ...


def to_item(record: CallRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "call_id": {"S": record.call_id},
        "sip_uri": {"S": record.sip_uri},
        "millis_region": {"S": record.millis_region},
        "status": {"S": record.status.value},
        "created_at": {"S": iso(record.created_at)},
        "expires_at": {"N": str(int(record.expires_at.timestamp()))},
        "source": {"S": str(record.source)},
    }
    for name in _OPTIONAL_TEXT:
        value = getattr(record, name)
        if value is not None:
            item[name] = {"S": value}
    for name in _OPTIONAL_TIMES:
        moment = getattr(record, name)
        if moment is not None:
            item[name] = {"S": iso(moment)}
    for name in ("duration_seconds", "millis_duration_seconds"):
        number = getattr(record, name)
        if number is not None:
            item[name] = {"N": str(number)}
    if record.millis_call_status is not None:
        item["millis_call_status"] = {"S": record.millis_call_status}
    return item


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def from_item(item: dict[str, Any]) -> CallRecord:
    def s(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value else None

    def t(name: str) -> datetime | None:
        value = s(name)
        return _time(value) if value else None

    def n(name: str) -> int | None:
        value = item.get(name)
        return int(value["N"]) if value else None

    return CallRecord(
        call_id=item["call_id"]["S"],
        sip_uri=item["sip_uri"]["S"],
        millis_region=item["millis_region"]["S"],
        status=CallStatus(item["status"]["S"]),
        created_at=_time(item["created_at"]["S"]),
        expires_at=datetime.fromtimestamp(int(item["expires_at"]["N"]), tz=UTC),
        source=s("source") or CallSource.HTTP,
        bridged_at=t("bridged_at"),
        ended_at=t("ended_at"),
        duration_seconds=n("duration_seconds"),
        millis_duration_seconds=n("millis_duration_seconds"),
        millis_call_status=s("millis_call_status"),
        **{name: s(name) for name in _OPTIONAL_TEXT},
    )


class DynamoCallStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def put_new(self, record: CallRecord) -> None:
        try:
            self._client.put_item(
                TableName=self._table,
                Item=to_item(record),
                ConditionExpression="attribute_not_exists(call_id)",
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                raise CallAlreadyExists(f"A call with id {record.call_id!r} is already stored.") from None
            raise _unavailable("put", exc) from None
        except BotoCoreError as exc:
            raise _unavailable("put", exc) from None

    def get(self, call_id: str) -> CallRecord | None:
        item = self._get_raw(call_id)
        if not item or "kind" in item:  # Chime transaction markers share the table; they are not calls
            return None
        return from_item(item)

    def latest_for(self, lookup_key: str, now: datetime) -> CallRecord | None:
        for item in self._newest_first(lookup_key, now, only_status=CallStatus.REGISTERED):
            return from_item(item)
        return None

    def close_session(
        self, call_id: str, *, status: CallStatus, reason: str, now: datetime, expires_at: datetime, **fields: Any
    ) -> str:
        """Millis says the session is over. ``closed``: the call moved to ``status``; ``annotated``: it was
        already over, Millis' fields were added; ``unknown``: no such call (nothing is created)."""
        values: dict[str, Any] = {":now": {"S": iso(now)}, ":exp": {"N": str(int(expires_at.timestamp()))}}
        sets = ["updated_at = :now", "ended_at = if_not_exists(ended_at, :now)"]
        for name, value in fields.items():
            if value is None:
                continue
            values[f":{name}"] = {"N": str(value)} if isinstance(value, int) else {"S": str(value)}
            sets.append(f"{name} = :{name}")
        open_statuses = (CallStatus.REGISTERED, CallStatus.CLAIMED, CallStatus.BRIDGED)
        for i, open_status in enumerate(open_statuses):
            values[f":open{i}"] = {"S": open_status.value}
        values[":to"] = {"S": status.value}
        values[":reason"] = {"S": reason}
        closing_only = []
        if ":millis_duration_seconds" in values:  # a call no phone leg timed: Millis' duration is the duration
            closing_only.append("duration_seconds = if_not_exists(duration_seconds, :millis_duration_seconds)")
        exists = "attribute_exists(call_id) AND attribute_not_exists(kind)"
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"call_id": {"S": call_id}},
                UpdateExpression="SET "
                + ", ".join([*sets, "#status = :to", "expires_at = :exp", "reason = :reason", *closing_only]),
                ConditionExpression=f"{exists} AND #status IN (:open0, :open1, :open2)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
            )
            return "closed"
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise _unavailable("update", exc) from None
        except BotoCoreError as exc:
            raise _unavailable("update", exc) from None
        annotate = {k: v for k, v in values.items() if not k.startswith((":open", ":to", ":exp", ":reason"))}
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"call_id": {"S": call_id}},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=exists,
                ExpressionAttributeValues=annotate,
            )
            return "annotated"
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return "unknown"
            raise _unavailable("update", exc) from None
        except BotoCoreError as exc:
            raise _unavailable("update", exc) from None

    # --- the SIP media application's operations ----------------------------------------------

    def begin_transaction(
        self, key: str, *, now: datetime, lease_seconds: float, expires_at: datetime
    ) -> TransactionMark:
        now_ms = _ms(now)
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    "call_id": {"S": key},
                    "kind": {"S": "chime-transaction"},
                    "state": {"S": TransactionState.PENDING.value},
                    "lease_until": {"N": str(now_ms + int(lease_seconds * 1000))},
                    "expires_at": {"N": str(int(expires_at.timestamp()))},
                },
                # Free, or owned by an invocation that ran out of time without finishing.
                ConditionExpression="attribute_not_exists(call_id) OR (#state = :pending AND lease_until < :now)",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":pending": {"S": TransactionState.PENDING.value},
                    ":now": {"N": str(now_ms)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise _unavailable("put", exc) from None
            old: Any = exc.response.get("Item")  # ReturnValuesOnConditionCheckFailure saves a read
            item = old or self._get_raw(key)
            return _mark(item) if item else TransactionMark(TransactionState.PENDING)
        except BotoCoreError as exc:
            raise _unavailable("put", exc) from None
        return TransactionMark(TransactionState.ACQUIRED)

    def fail_transaction(self, key: str, reason: str) -> None:
        self._update(
            Key={"call_id": {"S": key}},
            UpdateExpression="SET #state = :failed, reason = :reason",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":failed": {"S": TransactionState.FAILED.value}, ":reason": {"S": reason}},
        )

    def pending_for(self, lookup_key: str, now: datetime) -> list[CallRecord]:
        found: list[CallRecord] = []
        for item in self._newest_first(lookup_key, now, only_status=CallStatus.REGISTERED):
            found.append(from_item(item))
            if len(found) >= CLAIM_CANDIDATES:
                break
        return found

    def commit_inbound(self, record: CallRecord, *, transaction_key: str | None, claim: bool, now: datetime) -> bool:
        if claim:
            first: dict[str, Any] = {"Update": self._claim_update(record, now)}
        else:
            first = {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item(record),
                    "ConditionExpression": "attribute_not_exists(call_id)",
                }
            }
        items: list[Any] = [first]
        if transaction_key is not None:
            items.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"call_id": {"S": transaction_key}},
                        "UpdateExpression": "SET #state = :done, millis_call_id = :id",
                        "ExpressionAttributeNames": {"#state": "state"},
                        "ExpressionAttributeValues": {
                            ":done": {"S": TransactionState.DONE.value},
                            ":id": {"S": record.call_id},
                        },
                    }
                }
            )
        try:
            self._client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if _code(exc) == "TransactionCanceledException" and reasons and reasons[0] == "ConditionalCheckFailed":
                if claim:
                    return False
                raise CallAlreadyExists(f"A call with id {record.call_id!r} is already stored.") from None
            raise _unavailable("transact_write", exc) from None
        except BotoCoreError as exc:
            raise _unavailable("transact_write", exc) from None
        return True

    def _claim_update(self, record: CallRecord, now: datetime) -> dict[str, Any]:
        values: dict[str, Any] = {
            ":claimed": {"S": CallStatus.CLAIMED.value},
            ":registered": {"S": CallStatus.REGISTERED.value},
            ":tx": {"S": record.transaction_id or ""},
            ":now": {"N": str(int(now.timestamp()))},
            ":updated": {"S": iso(now)},
        }
        assignments = ["#status = :claimed", "transaction_id = :tx", "updated_at = :updated"]
        for name in ("caller_number", "dialed_number"):
            value = getattr(record, name)
            if value is not None:
                assignments.append(f"{name} = :{name}")
                values[f":{name}"] = {"S": value}
        return {
            "TableName": self._table,
            "Key": {"call_id": {"S": record.call_id}},
            "UpdateExpression": "SET " + ", ".join(assignments),
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
        changing = {"status", "expires_at", *_TRANSITION_FIELDS.get(to, ())}
        names: dict[str, str] = {}
        values: dict[str, Any] = {":now_text": {"S": iso(now)}, ":tx": {"S": snapshot.transaction_id or ""}}
        assignments = ["updated_at = :now_text"]
        for i, (name, value) in enumerate(sorted(item.items())):
            names[f"#a{i}"] = name
            values[f":v{i}"] = value
            if name in changing:
                assignments.append(f"#a{i} = :v{i}")
            else:  # keep what is stored; fill in what is missing (a record that was never written)
                assignments.append(f"#a{i} = if_not_exists(#a{i}, :v{i})")
        status_name = next(k for k, v in names.items() if v == "status")
        allowed = []
        for j, status in enumerate(allowed_from):
            values[f":from{j}"] = {"S": status.value}
            allowed.append(f":from{j}")
        tx_name = next((k for k, v in names.items() if v == "transaction_id"), None)
        if tx_name is None:
            names["#tx"] = "transaction_id"
            tx_name = "#tx"
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"call_id": {"S": snapshot.call_id}},
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression=(
                    f"attribute_not_exists(call_id) OR ({status_name} IN ({', '.join(allowed)}) AND {tx_name} = :tx)"
                ),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise _unavailable("update", exc) from None
        except BotoCoreError as exc:
            raise _unavailable("update", exc) from None
        return True

    def _get_raw(self, key: str) -> dict[str, Any] | None:
        try:
            answer = self._client.get_item(TableName=self._table, Key={"call_id": {"S": key}}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable("get", exc) from None
        item: dict[str, Any] | None = answer.get("Item")
        return item

    def _update(self, **kwargs: Any) -> None:
        try:
            self._client.update_item(TableName=self._table, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable("update", exc) from None

    def _newest_first(
        self, lookup_key: str, now: datetime, *, only_status: CallStatus | None = None
    ) -> Iterator[dict[str, Any]]:
        # No registration lives longer than MAX_CALL_TTL_SECONDS: older items need not be read at all.
        since = iso(now - timedelta(seconds=MAX_CALL_TTL_SECONDS))
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": LOOKUP_INDEX,
            "KeyConditionExpression": "lookup_key = :k AND created_at > :since",
            "FilterExpression": "expires_at > :now",
            "ExpressionAttributeValues": {
                ":k": {"S": lookup_key},
                ":since": {"S": since},
                ":now": {"N": str(int(now.timestamp()))},
            },
            "ScanIndexForward": False,
            "Limit": LOOKUP_PAGE_SIZE,
        }
        if only_status is not None:
            kwargs["FilterExpression"] += " AND #status = :status"
            kwargs["ExpressionAttributeNames"] = {"#status": "status"}
            kwargs["ExpressionAttributeValues"][":status"] = {"S": only_status.value}
        while True:
            try:
                page = self._client.query(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise _unavailable("query", exc) from None
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# The fields a transition writes over what is stored; every other field is only filled in if missing.
_TRANSITION_FIELDS: dict[CallStatus, tuple[str, ...]] = {
    CallStatus.BRIDGED: ("bridged_at", "leg_b_call_id"),
    CallStatus.ENDED: ("ended_at", "duration_seconds", "reason"),
    CallStatus.FAILED: ("ended_at", "reason"),
}


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _mark(item: dict[str, Any]) -> TransactionMark:
    def s(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value and "S" in value else None

    lease = item.get("lease_until")
    return TransactionMark(
        state=TransactionState(s("state") or TransactionState.PENDING),
        millis_call_id=s("millis_call_id"),
        reason=s("reason"),
        lease_until=datetime.fromtimestamp(int(lease["N"]) / 1000, tz=UTC) if lease else None,
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _unavailable(operation: str, exc: Exception) -> StoreUnavailable:
    reason = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    return StoreUnavailable(f"DynamoDB {operation} failed ({reason}).")

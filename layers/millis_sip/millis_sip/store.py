"""The call store: one DynamoDB item per registered call (see README, "The item").

Writes are conditional puts: an existing ``call_id`` is never overwritten. Lookups by ``lookup_key``
read the ``by-lookup-key`` index newest first and skip registrations that have expired (TTL deletion
lags by up to two days, so expiry is checked on read too).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from millis_sip.config import MAX_CALL_TTL_SECONDS
from millis_sip.errors import CallAlreadyExists, StoreUnavailable
from millis_sip.models import CallRecord, CallStatus, iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

LOOKUP_INDEX = "by-lookup-key"
LOOKUP_PAGE_SIZE = 20

# Standard retry mode: exponential backoff with jitter on throttling and transient errors.
DYNAMODB_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=2,
    read_timeout=3,
    tcp_keepalive=True,
)


class CallStore(Protocol):
    def put_new(self, record: CallRecord) -> None:
        """Store a call that must not exist yet (CallAlreadyExists otherwise)."""
        ...

    def get(self, call_id: str) -> CallRecord | None: ...

    def latest_for(self, lookup_key: str, now: datetime) -> CallRecord | None:
        """The newest registration for ``lookup_key`` that has not expired at ``now``."""
        ...


def to_item(record: CallRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "call_id": {"S": record.call_id},
        "sip_uri": {"S": record.sip_uri},
        "millis_region": {"S": record.millis_region},
        "status": {"S": record.status.value},
        "created_at": {"S": iso(record.created_at)},
        "expires_at": {"N": str(int(record.expires_at.timestamp()))},
        "source": {"S": record.source},
    }
    if record.lookup_key is not None:
        item["lookup_key"] = {"S": record.lookup_key}
    if record.agent_id is not None:
        item["agent_id"] = {"S": record.agent_id}
    return item


def from_item(item: dict[str, Any]) -> CallRecord:
    def s(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value else None

    return CallRecord(
        call_id=item["call_id"]["S"],
        sip_uri=item["sip_uri"]["S"],
        millis_region=item["millis_region"]["S"],
        status=CallStatus(item["status"]["S"]),
        created_at=datetime.strptime(item["created_at"]["S"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
        expires_at=datetime.fromtimestamp(int(item["expires_at"]["N"]), tz=UTC),
        lookup_key=s("lookup_key"),
        agent_id=s("agent_id"),
        source=s("source") or "http",
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
        try:
            answer = self._client.get_item(TableName=self._table, Key={"call_id": {"S": call_id}}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable("get", exc) from None
        item = answer.get("Item")
        return from_item(item) if item else None

    def latest_for(self, lookup_key: str, now: datetime) -> CallRecord | None:
        for item in self._newest_first(lookup_key, now):
            return from_item(item)
        return None

    def _newest_first(self, lookup_key: str, now: datetime) -> Iterator[dict[str, Any]]:
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
        while True:
            try:
                page = self._client.query(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise _unavailable("query", exc) from None
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _unavailable(operation: str, exc: Exception) -> StoreUnavailable:
    reason = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    return StoreUnavailable(f"DynamoDB {operation} failed ({reason}).")

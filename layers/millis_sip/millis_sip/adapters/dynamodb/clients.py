"""The DynamoDB clients: their botocore configurations, one per kind of caller, and ``send``, the one place
where botocore's errors become the core's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from millis_sip.adapters import aws
from millis_sip.adapters.aws import error_code
from millis_sip.core.errors import StoreUnavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Standard retry mode: exponential backoff with jitter on throttling and transient errors.
API_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 3},  # the first attempt and two retries
    connect_timeout=2,
    read_timeout=3,
    tcp_keepalive=True,
)
# A phone call waits on the answer, and Chime waits 5 s for it: fail fast, and let the call go on without
# the write (the record travels with the phone system's state).
PHONE_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 2},  # the first attempt and one retry
    connect_timeout=0.5,
    read_timeout=1.0,
    tcp_keepalive=True,
)


def dynamodb_client(config: Config) -> DynamoDBClient:
    """A DynamoDB client (``AWS_ENDPOINT_URL_DYNAMODB`` points it at DynamoDB Local)."""
    made: DynamoDBClient = aws.client("dynamodb", config)
    return made


Item = dict[str, Any]
_OPERATIONS = {
    "put_item": "put",
    "get_item": "get",
    "update_item": "update",
    "delete_item": "delete",
    "query": "query",
    "scan": "scan",
    "transact_write_items": "transact_write",
}


@dataclass(frozen=True, slots=True)
class Rejected:
    """A write whose condition did not hold; ``item`` is the item as it was, when DynamoDB returned it;
    ``index``, in a transaction, the position of the action whose condition failed."""

    item: Item | None = None
    index: int = 0


def send(client: Any, method: str, **kwargs: Any) -> Item | Rejected:
    """Call DynamoDB. A write whose condition did not hold is ``Rejected``; anything else that fails (after
    botocore's retries) is ``StoreUnavailable``, naming the error code and never the item."""
    operation = _OPERATIONS[method]
    try:
        answer: Item = getattr(client, method)(**kwargs)
    except ClientError as exc:
        code = error_code(exc)
        response: Item = dict(exc.response)
        if code == "ConditionalCheckFailedException":
            return Rejected(response.get("Item"))
        if code == "TransactionCanceledException":
            reasons = [r.get("Code") for r in response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" in reasons:
                return Rejected(index=reasons.index("ConditionalCheckFailed"))
        raise StoreUnavailable(f"DynamoDB {operation} failed ({code}).") from None
    except BotoCoreError as exc:
        raise StoreUnavailable(f"DynamoDB {operation} failed ({type(exc).__name__}).") from None
    return answer


def request(client: Any, method: str, **kwargs: Any) -> Item:
    """``send`` for a request without a condition."""
    answer = send(client, method, **kwargs)
    if isinstance(answer, Rejected):  # pragma: no cover - a read has no condition
        raise StoreUnavailable(f"DynamoDB {_OPERATIONS[method]} was refused.")
    return answer

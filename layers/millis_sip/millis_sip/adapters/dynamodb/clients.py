"""The botocore configurations of the DynamoDB clients, one per kind of caller."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.config import Config

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
    import boto3

    return boto3.client("dynamodb", config=config)

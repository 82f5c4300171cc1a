"""The calls table's DynamoDB stream, read from DynamoDB Local and handed to EventsFunction the way Lambda's
event source mapping hands it over (docs/events.md): records in the shape of Lambda's DynamoDB event, the
template's filter applied, batches of the template's size, the function's batchItemFailures returned."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import boto3

from dev.lambda_context import LocalContext
from dev.template import resource

REGION = "us-west-2"


def _mapping() -> dict[str, Any]:
    properties: dict[str, Any] = resource("EventsStreamMapping")["Properties"]
    return properties


def filter_patterns() -> list[dict[str, Any]]:
    """The event source mapping's filter patterns, as template.yaml gives them."""
    return [json.loads(f["Pattern"]) for f in _mapping()["FilterCriteria"]["Filters"]]


def matches(pattern: Mapping[str, Any], value: Any) -> bool:
    """An event filter pattern (the subset the template uses: value lists, ``exists``, nested objects) against
    a record, as Lambda's event filtering reads it."""
    for key, wanted in pattern.items():
        present = isinstance(value, Mapping) and key in value
        if isinstance(wanted, Mapping):
            if not matches(wanted, value[key] if present else {}):  # absent: only "exists": false holds
                return False
            continue
        for option in wanted:
            if isinstance(option, Mapping) and "exists" in option:
                if option["exists"] is present:
                    break
            elif present and value[key] == option:
                break
        else:
            return False
    return True


class CallsStream:
    """The stream of a DynamoDB Local table, read from its start; ``read()`` gives the records since the last."""

    def __init__(self, endpoint: str, table: str) -> None:
        key, secret = "local", "local"  # DynamoDB Local takes any credentials
        dynamodb = boto3.client(
            "dynamodb", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=key, aws_secret_access_key=secret
        )
        self._streams = boto3.client(
            "dynamodbstreams",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )
        self.arn: str = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self._iterators: dict[str, str | None] = {}

    def read(self) -> list[dict[str, Any]]:
        shards = self._streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        for shard in shards:
            if shard["ShardId"] not in self._iterators:
                self._iterators[shard["ShardId"]] = self._streams.get_shard_iterator(
                    StreamArn=self.arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
        records: list[dict[str, Any]] = []
        for shard_id, iterator in list(self._iterators.items()):
            while iterator:
                page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                iterator = page.get("NextShardIterator")
                if not page["Records"]:
                    break
                records += [self._as_lambda_sees_it(r) for r in page["Records"]]
            self._iterators[shard_id] = iterator
        return records

    def _as_lambda_sees_it(self, record: dict[str, Any]) -> dict[str, Any]:
        """A Streams API record as Lambda's DynamoDB event carries it (epoch seconds, the stream's ARN)."""
        images = dict(record["dynamodb"])
        moment = images.get("ApproximateCreationDateTime")
        if isinstance(moment, datetime):
            images["ApproximateCreationDateTime"] = moment.timestamp()
        return {
            "eventID": record["eventID"],
            "eventName": record["eventName"],
            "eventVersion": record.get("eventVersion", "1.1"),
            "eventSource": "aws:dynamodb",
            "awsRegion": REGION,
            "dynamodb": images,
            "eventSourceARN": self.arn,
        }


def deliver(records: list[dict[str, Any]], handler: Callable[[dict[str, Any], Any], dict[str, Any]]) -> list[str]:
    """``records`` through the template's filter, in batches of its size, to ``handler`` (EventsFunction's);
    returns the sequence numbers the function reported as failed."""
    patterns = filter_patterns()
    kept = [r for r in records if any(matches(p, r) for p in patterns)]
    size = int(_mapping()["BatchSize"])
    failed: list[str] = []
    for start in range(0, len(kept), size):
        answer = handler({"Records": kept[start : start + size]}, LocalContext("EventsFunction"))
        failed += [f["itemIdentifier"] for f in answer["batchItemFailures"]]
    return failed

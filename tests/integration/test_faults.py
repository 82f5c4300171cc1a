"""The fault matrix (docs/operations.md, "Faults, and what each caller gets"): Millis misbehaving in ways the API flow
tests do not already cover, and DynamoDB throttling, failing transiently or refusing access, injected into
the real botocore client (its standard retry mode at work) in front of DynamoDB Local."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from dev.lambda_context import LocalContext
from dev.millis_simulator import Fault, MillisSimulator
from millis_sip.adapters.secrets import StaticApiKey
from millis_sip.config import Settings
from millis_sip.wiring import management_api
from tests.conftest import load_event
from tests.support.invoke import Handler, invoke
from tests.support.rig import TABLE, LogCapture
from tests.support.sma_schema import validate_response

pytestmark = pytest.mark.integration


def create(api: Handler, **body: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
    event = load_event("api-create-call.json")
    event["body"] = json.dumps(body or {"agent_id": "a", "lookup_key": "+1312" + str(uuid.uuid4().int)[:7]})
    return invoke(api, event)


# --- Millis ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (json.dumps({"call_id": "c", "sip_uri": "sip:a@b.example", "pad": "x" * 70_000}), "over 64 KiB"),
        ("[" * 50_000 + "]" * 50_000, "nested past any parser"),
        (json.dumps({"call_id": 12345, "sip_uri": "sip:a@b.example"}), "call_id not a string"),
        (json.dumps({"call_id": "c", "sip_uri": ["sip:a@b.example"]}), "sip_uri not a string"),
        (json.dumps({"call_id": "c" * 500, "sip_uri": "sip:a@b.example"}), "call_id too long"),
        (json.dumps({"call_id": "c d", "sip_uri": "sip:a@b.example"}), "call_id with a space"),
        (json.dumps({"call_id": "c", "sip_uri": "tel:+14155550100"}), "not a SIP URI"),
        (json.dumps({"call_id": "c", "sip_uri": "sip:a@b.example\r\nX-Injected: 1"}), "header injection"),
    ],
)
def test_hostile_or_malformed_millis_answers_are_a_502_and_nothing_is_stored(
    api: ModuleType, sim: MillisSimulator, dynamodb: Any, body: str, why: str
) -> None:
    sim.set_fault("us-west", Fault(status=200, body=body))
    status, _, answer = create(api, agent_id="a", lookup_key=(key := "+1312" + str(uuid.uuid4().int)[:7]))
    assert (status, answer["error"]) == (502, "millis_bad_response"), why
    scan = dynamodb.scan(
        TableName=TABLE, FilterExpression="lookup_key = :k", ExpressionAttributeValues={":k": {"S": key}}
    )
    assert scan["Items"] == []


@pytest.mark.parametrize(("millis_status", "ours"), [(400, 422), (404, 404), (409, 422), (422, 422), (403, 502)])
def test_each_millis_4xx_class_maps_to_one_answer_without_failover(
    api: ModuleType, sim: MillisSimulator, millis_status: int, ours: int
) -> None:
    sim.set_fault("us-west", Fault(status=millis_status, body=json.dumps({"detail": "no"})))
    assert create(api)[0] == ours
    assert len(sim.registrations()) == 1


def test_a_flapping_region_never_loses_a_registration(api: ModuleType, sim: MillisSimulator, dynamodb: Any) -> None:
    acknowledged = []
    for n in range(12):
        if n % 2 == 0:
            sim.set_fault("us-west", Fault(status=503, times=1))
        status, _, call = create(api)
        assert status == 201
        acknowledged.append(call)
    regions = [c["millis_region"] for c in acknowledged]
    assert regions.count("eu-west") == 6 and regions.count("us-west") == 6
    for call in acknowledged:
        stored = dynamodb.get_item(TableName=TABLE, Key={"call_id": {"S": call["call_id"]}}, ConsistentRead=True)
        assert stored["Item"]["sip_uri"]["S"] == call["sip_uri"]


# --- DynamoDB ----------------------------------------------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


@contextmanager
def dynamodb_fails(client: Any, operation: str, code: str, times: int, status: int = 400) -> Iterator[list[str]]:
    """The next ``times`` ``operation`` requests of ``client`` get ``code`` instead of reaching DynamoDB."""
    seen: list[str] = []

    def answer(request: Any, **_: Any) -> AWSResponse | None:
        seen.append(operation)
        if len(seen) > times:
            return None
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"}).encode()
        headers = HTTPHeaders()
        headers["x-amzn-RequestId"] = "injected"
        return AWSResponse(request.url, status, headers, _Raw(body))

    event = f"before-send.dynamodb.{operation}"
    client.meta.events.register(event, answer)
    try:
        yield seen
    finally:
        client.meta.events.unregister(event, answer)


@pytest.mark.parametrize(
    ("code", "status"),
    [("ProvisionedThroughputExceededException", 400), ("ThrottlingException", 400), ("InternalServerError", 500)],
)
def test_throttling_and_transient_errors_are_retried_and_the_call_is_stored(
    api: ModuleType, dynamodb: Any, code: str, status: int
) -> None:
    with dynamodb_fails(api.dynamodb, "PutItem", code, times=2, status=status) as seen:
        answer_status, _, call = create(api)
    assert answer_status == 201
    assert len(seen) == 3  # two refusals, then the write: standard retry mode, max_attempts 3
    assert dynamodb.get_item(TableName=TABLE, Key={"call_id": {"S": call["call_id"]}})["Item"]


def test_throttling_that_outlasts_the_retries_is_a_503_and_the_millis_call_is_logged(
    api: ModuleType, sim: MillisSimulator, logs: LogCapture
) -> None:
    with dynamodb_fails(api.dynamodb, "PutItem", "ThrottlingException", times=10) as seen:
        status, headers, answer = create(api)
    assert (status, answer["error"], headers["retry-after"]) == (503, "store_unavailable", "2")
    assert len(seen) == 3
    [line] = [r for r in logs.records() if r.get("millis_call_id")]
    assert line["level"] == "ERROR"


def test_access_denied_is_not_retried(api: ModuleType) -> None:
    with dynamodb_fails(api.dynamodb, "PutItem", "AccessDeniedException", times=10) as seen:
        status, _, answer = create(api)
    assert (status, answer["error"]) == (503, "store_unavailable")
    assert "AccessDeniedException" in answer["message"]
    assert len(seen) == 1


def test_dynamodb_failing_on_a_lookup_is_a_503(api: ModuleType) -> None:
    with dynamodb_fails(api.dynamodb, "Query", "InternalServerError", times=10, status=500):
        status, headers, answer = invoke(api, load_event("api-lookup-call.json"))
    assert (status, answer["error"]) == (503, "store_unavailable")
    assert headers["retry-after"]


@pytest.mark.parametrize("operation", ["PutItem", "Query", "TransactWriteItems", "UpdateItem"])
def test_a_phone_call_is_bridged_whatever_dynamodb_does(sma: ModuleType, operation: str) -> None:
    event = load_event("sma-new-inbound-call.json")
    event["CallDetails"]["TransactionId"] = str(uuid.uuid4())
    event["CallDetails"]["Participants"][0]["From"] = "+1206" + str(uuid.uuid4().int)[:7]
    client = sma.sma.dynamodb
    with dynamodb_fails(client, operation, "ThrottlingException", times=10):
        answer = sma.lambda_handler(event, LocalContext())
    validate_response(answer)
    assert [a["Type"] for a in answer["Actions"]] == ["CallAndBridge"]
    assert answer["TransactionAttributes"]["millis_call_id"]


def test_the_secret_failing_at_cold_start_is_retried_on_the_next_invocation(
    make_api: Callable[..., ModuleType], sim: MillisSimulator
) -> None:
    make_api()  # the rig's environment
    key = StaticApiKey(sim.api_key)
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            from millis_sip.core.errors import MillisKeyUnavailable

            raise MillisKeyUnavailable(
                "Could not read the Millis API key from Secrets Manager (Throttling); will retry."
            )
        return key()

    built = management_api(Settings.from_env(), millis_key=flaky)  # the function's own wiring, this key source
    api = SimpleNamespace(lambda_handler=lambda event, context: built.app.resolve(event, context))
    status, headers, answer = create(api)
    assert (status, answer["error"], headers["retry-after"]) == (503, "millis_key_unavailable", "2")
    assert sim.registrations() == []  # nothing was sent without a key
    assert create(api)[0] == 201

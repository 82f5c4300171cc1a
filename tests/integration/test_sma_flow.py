"""SipMediaAppFunction end to end: the events/ files through the real handler, DynamoDB Local and the
Millis simulator. Outcomes are checked, not wall time (the deadline itself is unit-tested on a fake clock)."""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from dev.lambda_context import LocalContext
from dev.millis_simulator import Fault, MillisSimulator
from millis_sip.adapters.dynamodb.store import DynamoCallStore
from millis_sip.core.calls import CallRecord, CallStatus
from millis_sip.core.ports import transaction_key
from millis_sip.core.sip import parse_sip_uri
from tests.conftest import load_event
from tests.support.invoke import invoke
from tests.support.rig import STACK_KEYS, TABLE, VOICE_CONNECTOR_EU_WEST, VOICE_CONNECTOR_US_WEST, LogCapture
from tests.support.sma_schema import validate_response

pytestmark = pytest.mark.integration


def call(module: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = module.lambda_handler(event, LocalContext(function_name="SipMediaAppFunction"))
    validate_response(result)
    return result


def new_call(
    caller: str | None = None, tx: str | None = None, name: str = "sma-new-inbound-call.json"
) -> dict[str, Any]:
    event = load_event(name)
    event["CallDetails"]["TransactionId"] = tx or str(uuid.uuid4())
    if caller:
        event["CallDetails"]["Participants"][0]["From"] = caller
    return event


def then(name: str, first: dict[str, Any], attrs: dict[str, str]) -> dict[str, Any]:
    event = load_event(name)
    event["CallDetails"]["TransactionId"] = first["CallDetails"]["TransactionId"]
    event["CallDetails"]["TransactionAttributes"] = attrs
    return event


def item(dynamodb: Any, call_id: str) -> dict[str, Any]:
    found: dict[str, Any] = dynamodb.get_item(TableName=TABLE, Key={"call_id": {"S": call_id}}, ConsistentRead=True)
    return {k: next(iter(v.values())) for k, v in found.get("Item", {}).items()}


def endpoint(result: dict[str, Any]) -> dict[str, str]:
    parameters: dict[str, Any] = result["Actions"][0]["Parameters"]
    first: dict[str, str] = parameters["Endpoints"][0]
    return first


def fresh_caller() -> str:
    return "+1415" + str(uuid.uuid4().int)[:7]


@pytest.mark.parametrize("name", ["sma-new-inbound-call.json", "sma-new-inbound-call-doc-shape.json"])
def test_a_phone_call_from_ring_to_hang_up(
    name: str, sma: ModuleType, sim: MillisSimulator, dynamodb: Any, logs: LogCapture
) -> None:
    caller = fresh_caller()
    first = new_call(caller, name=name)
    bridging = call(sma, first)
    assert [a["Type"] for a in bridging["Actions"]] == ["CallAndBridge"]
    [registered] = sim.registrations()
    assert registered.region == "us-west"
    assert registered.body["agent_id"] == "phone-agent"
    assert registered.body["metadata"]["caller_number"] == caller
    assert registered.body["metadata"]["carrier"] == "chime"
    assert registered.body["metadata"]["carrier_call_id"] == first["CallDetails"]["TransactionId"]
    millis_call_id = bridging["TransactionAttributes"]["millis_call_id"]
    assert endpoint(bridging) == {
        "BridgeEndpointType": "AWS",
        "Arn": VOICE_CONNECTOR_US_WEST,
        "Uri": f"call-{millis_call_id}",
    }
    assert item(dynamodb, millis_call_id)["status"] == "claimed"

    bridged = call(sma, then("sma-bridge-succeeded.json", first, bridging["TransactionAttributes"]))
    record = item(dynamodb, millis_call_id)
    assert (record["status"], record["leg_b_call_id"]) == ("bridged", "d41f7b2c-9a3e-4e6d-8c15-2b7a0f9e4d31")

    hung_up = call(sma, then("sma-hangup-caller.json", first, bridged["TransactionAttributes"]))
    assert [a["Parameters"]["ParticipantTag"] for a in hung_up["Actions"]] == ["LEG-B"]
    record = item(dynamodb, millis_call_id)
    assert (record["status"], record["reason"], record["caller_number"]) == ("ended", "caller_hung_up", caller)
    assert int(record["duration_seconds"]) >= 0
    correlation = {r.get("correlation_id") for r in logs.records()}
    assert first["CallDetails"]["TransactionId"] in correlation
    assert sim.api_key not in logs.text


def test_an_http_registration_is_claimed_by_the_phone_call_and_followed_by_status(
    api: ModuleType, make_sma: Callable[..., ModuleType], sim: MillisSimulator, dynamodb: Any
) -> None:
    caller = fresh_caller()
    create = load_event("api-create-call.json")
    # Chime reports no attestation: this registration trusts caller ID (docs/router.md, "Caller ID is not proof").
    create["body"] = json.dumps(
        {
            "agent_id": "crm-agent",
            "metadata": {"ticket": "T-9"},
            "lookup_key": caller,
            "caller_verification": "trust_caller_id",
        }
    )
    status, _, created = invoke(api, create)
    assert status == 201
    sma = make_sma()
    first = new_call(caller)
    result = call(sma, first)
    assert len(sim.registrations()) == 1  # the HTTP one only
    assert endpoint(result)["Uri"] == created["sip_uri"].removeprefix("sip:").split("@")[0]
    assert result["TransactionAttributes"]["source"] == "http"

    get = load_event("api-get-call.json")
    get["pathParameters"] = {"call_id": created["call_id"]}
    get["path"] = f"/calls/{created['call_id']}"
    assert invoke(api, get)[2]["status"] == "claimed"
    call(sma, then("sma-bridge-succeeded.json", first, result["TransactionAttributes"]))
    view = invoke(api, get)[2]
    assert (view["status"], view["source"], view["agent_id"]) == ("bridged", "http", "crm-agent")
    assert view["bridged_at"] is not None

    again = call(sma, new_call(caller))  # a second phone call from the same number: registered anew
    assert again["TransactionAttributes"]["millis_call_id"] != created["call_id"]
    assert len(sim.registrations()) == 2


def test_two_calls_racing_for_one_registration_claim_it_once(
    api: ModuleType, make_sma: Callable[..., ModuleType], sim: MillisSimulator
) -> None:
    caller = fresh_caller()
    create = load_event("api-create-call.json")
    create["body"] = json.dumps(
        {"agent_id": "crm-agent", "lookup_key": caller, "caller_verification": "trust_caller_id"}
    )
    _, _, created = invoke(api, create)
    sma = make_sma()
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(2)

    def ring() -> None:
        event = new_call(caller)
        barrier.wait()
        results.append(call(sma, event))

    threads = [threading.Thread(target=ring) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ids = sorted(r["TransactionAttributes"]["millis_call_id"] for r in results)
    assert len(ids) == 2 and len(set(ids)) == 2
    assert created["call_id"] in ids
    assert len(sim.registrations()) == 2  # the HTTP one and one new registration for the losing call


def test_concurrent_claims_on_dynamodb_have_exactly_one_winner(dynamodb: Any) -> None:
    store = DynamoCallStore(dynamodb, TABLE, keys=STACK_KEYS)
    now = datetime.now(UTC)
    key = fresh_caller()
    record = CallRecord(
        call_id=f"race-{uuid.uuid4().hex}",
        sip_uri=parse_sip_uri("sip:call-race@sip-us-west.millis-simulator.test"),
        millis_region="us-west",
        status=CallStatus.REGISTERED,
        created_at=now,
        expires_at=now + timedelta(hours=1),
        lookup_key=key,
    )
    store.put_new(record)
    [candidate] = store.pending_for(key, now)
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def claim(n: int) -> None:
        mine = replace(candidate, status=CallStatus.CLAIMED, transaction_id=f"tx-{n}")
        barrier.wait()
        wins.append(store.commit_inbound(mine, lock=None, claim=True, now=now))

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(wins) == [False] * 7 + [True]
    stored = store.get(record.call_id)
    assert stored is not None and stored.status is CallStatus.CLAIMED
    assert store.pending_for(key, now) == []


def test_a_retried_invocation_never_registers_twice(sma: ModuleType, sim: MillisSimulator) -> None:
    event = new_call(fresh_caller())
    first = call(sma, event)
    second = call(sma, copy.deepcopy(event))
    assert second["Actions"] == first["Actions"]
    assert len(sim.registrations()) == 1


def test_a_retry_that_arrives_while_the_first_invocation_still_works_waits_for_it(
    sma: ModuleType, sim: MillisSimulator
) -> None:
    sim.set_fault("us-west", Fault(delay=1.0, times=1))  # slow but successful
    event = new_call(fresh_caller())
    results: list[dict[str, Any]] = []

    def invoke_once() -> None:
        results.append(call(sma, copy.deepcopy(event)))

    first = threading.Thread(target=invoke_once)
    first.start()
    threading.Event().wait(0.3)
    invoke_once()
    first.join(30)
    assert len(sim.registrations()) == 1
    assert results[0]["Actions"] == results[1]["Actions"]
    assert results[0]["Actions"][0]["Type"] == "CallAndBridge"


@pytest.mark.parametrize(
    "fault",
    [Fault(status=503), Fault(drop=True), Fault(status=200, body="not json"), Fault(delay=6.0)],
    ids=["503", "dropped", "garbage", "too-slow"],
)
def test_millis_down_in_both_regions_releases_the_caller(
    fault: Fault, sma: ModuleType, sim: MillisSimulator, dynamodb: Any
) -> None:
    for region in ("us-west", "eu-west"):
        sim.set_fault(region, Fault(**fault.__dict__))
    event = new_call(fresh_caller())
    result = call(sma, event)
    assert [a["Type"] for a in result["Actions"]] == ["Speak", "Hangup"]
    reason = result["TransactionAttributes"]["failure_reason"]
    assert reason in {"millis_unavailable", "millis_bad_response"}
    mark = item(dynamodb, transaction_key("chime", event["CallDetails"]["TransactionId"], 1))
    assert (mark["state"], mark["reason"]) == ("failed", reason)


def test_a_refused_nearest_region_fails_over_to_the_other_voice_connector(
    sma: ModuleType, sim: MillisSimulator
) -> None:
    sim.set_fault("us-west", Fault(drop=True))
    result = call(sma, new_call(fresh_caller()))
    assert endpoint(result)["Arn"] == VOICE_CONNECTOR_EU_WEST
    assert result["TransactionAttributes"]["millis_region"] == "eu-west"


def test_a_sip_uri_the_voice_connector_does_not_route_to_is_refused_and_recorded(
    make_sma: Callable[..., ModuleType], sim: MillisSimulator, dynamodb: Any
) -> None:
    sma = make_sma(MILLIS_SIP_HOST_US_WEST="sip.millis.example")
    event = new_call(fresh_caller())
    result = call(sma, event)
    assert [a["Type"] for a in result["Actions"]] == ["Speak", "Hangup"]
    assert result["TransactionAttributes"] == {"failure_reason": "sip_host_mismatch"}
    assert len(sim.registrations()) == 1
    scan = dynamodb.scan(
        TableName=TABLE,
        FilterExpression="transaction_id = :tx",
        ExpressionAttributeValues={":tx": {"S": event["CallDetails"]["TransactionId"]}},
    )
    [record] = [{k: next(iter(v.values())) for k, v in i.items()} for i in scan["Items"]]
    assert (record["status"], record["reason"]) == ("failed", "sip_host_mismatch")


def test_a_failed_bridge_is_retried_once_on_the_other_region(
    sma: ModuleType, sim: MillisSimulator, dynamodb: Any
) -> None:
    first = new_call(fresh_caller())
    bridging = call(sma, first)
    retry = call(sma, then("sma-bridge-failed.json", first, bridging["TransactionAttributes"]))
    assert endpoint(retry)["Arn"] == VOICE_CONNECTOR_EU_WEST
    assert [r.region for r in sim.registrations()] == ["us-west", "eu-west"]
    failed = item(dynamodb, bridging["TransactionAttributes"]["millis_call_id"])
    assert (failed["status"], failed["reason"]) == ("failed", "bridge_failed:CallNotAnswered")
    released = call(sma, then("sma-bridge-failed.json", first, retry["TransactionAttributes"]))
    assert [a["Type"] for a in released["Actions"]] == ["Speak", "Hangup"]
    assert item(dynamodb, retry["TransactionAttributes"]["millis_call_id"])["status"] == "failed"


def test_dynamodb_missing_does_not_drop_the_call_and_the_record_is_written_later(
    make_sma: Callable[..., ModuleType], sim: MillisSimulator, dynamodb: Any, logs: LogCapture
) -> None:
    broken = make_sma(CALLS_TABLE_NAME="no-such-table")
    first = new_call(fresh_caller())
    bridging = call(broken, first)
    assert [a["Type"] for a in bridging["Actions"]] == ["CallAndBridge"]
    millis_call_id = bridging["TransactionAttributes"]["millis_call_id"]
    assert any(r["level"] == "ERROR" and r.get("millis_call_id") == millis_call_id for r in logs.records())
    assert item(dynamodb, millis_call_id) == {}

    healthy = make_sma()
    call(healthy, then("sma-bridge-succeeded.json", first, bridging["TransactionAttributes"]))
    record = item(dynamodb, millis_call_id)
    assert (record["status"], record["source"], record["sip_uri"]) == (
        "bridged",
        "chime",
        bridging["TransactionAttributes"]["sip_uri"],
    )


def test_a_misconfigured_function_still_answers_every_invocation(
    make_sma: Callable[..., ModuleType], sim: MillisSimulator
) -> None:
    broken = make_sma(VOICE_CONNECTOR_ARN_US_WEST="not-an-arn")
    assert broken.setup_error is not None
    result = call(broken, new_call(fresh_caller()))
    assert [a["Type"] for a in result["Actions"]] == ["Speak", "Hangup"]  # the failure message, still
    hung_up = call(broken, load_event("sma-hangup-agent.json"))
    assert [a["Parameters"]["ParticipantTag"] for a in hung_up["Actions"]] == ["LEG-A"]
    assert sim.registrations() == []


def test_an_unexpected_failure_inside_still_answers(sma: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("bug")

    monkeypatch.setattr(sma.app, "handle", explode)
    result = call(sma, new_call(fresh_caller()))
    assert [a["Type"] for a in result["Actions"]] == ["Speak", "Hangup"]


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        "NEW_INBOUND_CALL",
        {},
        {"InvocationEventType": "NEW_INBOUND_CALL"},
        {"CallDetails": {"TransactionId": 5}},
    ],
)
def test_the_handler_answers_whatever_it_is_invoked_with(event: Any, sma: ModuleType, sim: MillisSimulator) -> None:
    result = sma.lambda_handler(event, LocalContext(function_name="SipMediaAppFunction"))
    validate_response(result)
    assert sim.registrations() == []

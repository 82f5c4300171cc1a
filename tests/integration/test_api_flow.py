"""ApiFunction end to end: the events/ files through the real handler, DynamoDB Local and the simulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import httpx
import pytest

from dev.local_api import LocalApi
from dev.millis_simulator import Fault, MillisSimulator
from millis_sip.adapters.dynamodb.store import DynamoCallStore
from millis_sip.core.calls import CallRecord, CallStatus
from millis_sip.core.errors import CallAlreadyExists
from millis_sip.core.registration import webhook_credential_hash
from millis_sip.core.sip import parse_sip_uri
from tests.conftest import load_event
from tests.support.invoke import invoke
from tests.support.rig import STACK_KEYS, TABLE, WEBHOOK_SECRET, LogCapture

pytestmark = pytest.mark.integration


def create_event(**body: Any) -> dict[str, Any]:
    event = load_event("api-create-call.json")
    if body:
        event["body"] = json.dumps(body)
    return event


def items_with(dynamodb: Any, lookup_key: str) -> list[dict[str, Any]]:
    answer = dynamodb.scan(
        TableName=TABLE, FilterExpression="lookup_key = :k", ExpressionAttributeValues={":k": {"S": lookup_key}}
    )
    items: list[dict[str, Any]] = answer["Items"]
    return items


def test_register_get_and_lookup_with_the_events_files(
    api: ModuleType, sim: MillisSimulator, dynamodb: Any, logs: LogCapture
) -> None:
    status, _, created = invoke(api, load_event("api-create-call.json"))
    assert status == 201
    [registered] = [r for r in logs.records() if r["message"] == "Call registered"]
    assert registered["correlation_id"] == load_event("api-create-call.json")["requestContext"]["requestId"]
    assert registered["call_id"] == created["call_id"]
    assert sim.api_key not in logs.text
    assert created["millis_region"] == "us-west"  # AWS_REGION us-west-2
    assert created["sip_uri"].startswith("sip:call-") and created["sip_uri"].endswith(
        "@sip-us-west.millis-simulator.test"
    )

    [received] = sim.registrations()
    assert received.authorization == sim.api_key
    own = sim.webhook_credential(created["call_id"])
    assert own is not None and own != WEBHOOK_SECRET
    assert received.body == {
        "agent_id": "my-agent-id",
        "metadata": {"caller": "+14155550100", "crm_ticket": "T-1001"},
        "include_metadata_in_prompt": True,
        # The stack's own session webhook, on the URL the request came in on, with this call's credential.
        "agent_config": {
            "session_data_webhook": {
                "url": "https://abc123.execute-api.us-west-2.amazonaws.com/v1/webhooks/millis",
                "headers": {"X-Webhook-Secret": own},
            }
        },
    }

    item = dynamodb.get_item(TableName=TABLE, Key={"call_id": {"S": created["call_id"]}})["Item"]
    assert set(item) == {
        "call_id", "sip_uri", "millis_region", "status", "created_at", "expires_at", "source", "lookup_key", "agent_id",
        "caller_verification", "webhook_hash", "lookup_index", "list_day",
    }  # fmt: skip
    assert item["list_day"] == {"S": created["created_at"][:10]}  # the by-day index's key: the UTC date
    assert item["webhook_hash"]["S"] == webhook_credential_hash(own)
    assert item["lookup_index"]["S"] == STACK_KEYS.lookup_index("+14155550100") != "+14155550100"
    assert item["caller_verification"] == {"S": "attestation"}  # caller ID alone claims nothing
    assert item["status"] == {"S": "registered"}
    assert int(item["expires_at"]["N"]) - datetime.now(UTC).timestamp() == pytest.approx(3600, abs=5)
    assert sim.api_key not in json.dumps(item)

    get_event = load_event("api-get-call.json")
    get_event["pathParameters"]["call_id"] = created["call_id"]
    get_event["path"] = f"/calls/{created['call_id']}"
    assert invoke(api, get_event)[::2] == (200, created)

    lookup = load_event("api-lookup-call.json")
    assert invoke(api, lookup)[::2] == (200, created)


def test_lookup_returns_the_newest_unexpired_registration(api: ModuleType, ddb: Any) -> None:
    key = "+14155550199"
    first = invoke(api, create_event(agent_id="a", lookup_key=key))[2]
    second = invoke(api, create_event(agent_id="a", lookup_key=key))[2]
    invoke(api, create_event(agent_id="a", lookup_key="+14155550198"))
    store = DynamoCallStore(api.dynamodb, TABLE, keys=STACK_KEYS)
    now = datetime.now(UTC)
    store.put_new(  # newer, but already expired (TTL deletion lags): never returned
        CallRecord(
            "expired-1",
            parse_sip_uri("sip:x@h.example"),
            "us-west",
            CallStatus.REGISTERED,
            now,
            now - timedelta(seconds=1),
            key,
        )
    )
    event = load_event("api-lookup-call.json")
    event["queryStringParameters"] = {"lookup_key": key}
    event["multiValueQueryStringParameters"] = {"lookup_key": [key]}
    status, _, found = invoke(api, event)
    assert (status, found["call_id"]) == (200, second["call_id"])
    assert found["call_id"] != first["call_id"]

    event["queryStringParameters"] = {"lookup_key": "+10000000000"}
    event["multiValueQueryStringParameters"] = {"lookup_key": ["+10000000000"]}
    assert invoke(api, event)[0] == 404


def test_a_stored_call_is_never_overwritten(api: ModuleType, dynamodb: Any) -> None:
    store = DynamoCallStore(dynamodb, TABLE, keys=STACK_KEYS)
    now = datetime.now(UTC)
    original = CallRecord(
        "dup-1", parse_sip_uri("sip:a@one.example"), "us-west", CallStatus.REGISTERED, now, now + timedelta(hours=1)
    )
    store.put_new(original)
    with pytest.raises(CallAlreadyExists):
        store.put_new(
            CallRecord("dup-1", parse_sip_uri("sip:b@two.example"), "eu-west", CallStatus.REGISTERED, now, now)
        )
    stored = store.get("dup-1")
    assert stored is not None
    assert (str(stored.sip_uri), stored.millis_region) == ("sip:a@one.example", "us-west")
    assert stored.expires_at == original.expires_at.replace(microsecond=0)


@pytest.mark.parametrize(
    "fault",
    [Fault(status=503), Fault(status=429), Fault(drop=True), Fault(delay=1.5)],
    ids=["503", "429", "dropped-connection", "black-hole"],
)
def test_nearest_region_failing_fails_over_to_the_other(
    make_api: Callable[..., ModuleType], sim: MillisSimulator, fault: Fault
) -> None:
    api = make_api(MILLIS_READ_TIMEOUT="0.3")
    sim.set_fault("us-west", fault)
    status, _, created = invoke(api, create_event(agent_id="a", lookup_key="+14155550101"))
    assert (status, created["millis_region"]) == (201, "eu-west")
    assert created["sip_uri"].endswith("@sip-eu-west.millis-simulator.test")
    assert [r.region for r in sim.registrations()] == ["us-west", "eu-west"]


def test_both_regions_down_is_503_and_nothing_is_stored(api: ModuleType, sim: MillisSimulator, dynamodb: Any) -> None:
    sim.set_fault("us-west", Fault(status=502))
    sim.set_fault("eu-west", Fault(status=503))
    status, headers, body = invoke(api, create_event(agent_id="a", lookup_key="+14155550102"))
    assert (status, body["error"]) == (503, "millis_unavailable")
    assert headers["retry-after"]
    assert [a["region"] for a in body["details"][-1]["attempts"]] == ["us-west", "eu-west"]
    assert items_with(dynamodb, "+14155550102") == []


def test_a_rejected_key_is_a_502_that_never_echoes_it(
    make_api: Callable[..., ModuleType], sim: MillisSimulator, logs: LogCapture
) -> None:
    wrong = "pk_wrong_key_do_not_print"
    api = make_api(MILLIS_API_KEY=wrong)
    status, _, body = invoke(api, create_event(agent_id="a"))
    assert (status, body["error"]) == (502, "millis_key_rejected")
    assert len(sim.registrations()) == 1  # no failover on 401
    assert wrong not in json.dumps(body)
    assert "millis_key_rejected" in logs.text
    assert wrong not in logs.text


def test_an_unknown_agent_is_a_404_with_millis_detail(api: ModuleType, sim: MillisSimulator) -> None:
    sim.known_agents = {"real-agent"}
    status, _, body = invoke(api, create_event(agent_id="ghost-agent"))
    assert (status, body["error"]) == (404, "millis_rejected_request")
    assert "ghost-agent" in json.dumps(body["details"])
    assert len(sim.registrations()) == 1


@pytest.mark.parametrize(
    "body",
    ["not json", '{"sip_uri": "sip:a@b.example"}', '{"call_id": "c1", "sip_uri": "https://evil.example/x"}'],
    ids=["not-json", "no-call-id", "not-a-sip-uri"],
)
def test_an_unusable_millis_answer_is_a_502(api: ModuleType, sim: MillisSimulator, body: str) -> None:
    sim.set_fault("us-west", Fault(status=200, body=body))
    status, _, answer = invoke(api, create_event(agent_id="a"))
    assert (status, answer["error"]) == (502, "millis_bad_response")


def test_the_sip_spelling_of_the_uri_field_works(api: ModuleType, sim: MillisSimulator) -> None:
    sim.uri_field = "sip"
    status, _, created = invoke(api, create_event(agent_id="a"))
    assert status == 201
    assert created["sip_uri"].startswith("sip:call-sim-")


def test_millis_region_override(make_api: Callable[..., ModuleType], sim: MillisSimulator) -> None:
    api = make_api(MILLIS_REGION="eu-west")
    status, _, created = invoke(api, create_event(agent_id="a"))
    assert (status, created["millis_region"]) == (201, "eu-west")


def test_default_agent_is_used_when_none_is_named(make_api: Callable[..., ModuleType], sim: MillisSimulator) -> None:
    api = make_api(DEFAULT_AGENT_ID="house-agent", SESSION_WEBHOOK="disabled")
    status, _, created = invoke(api, create_event(metadata={"a": 1}))
    assert (status, created["agent_id"]) == (201, "house-agent")
    assert sim.registrations()[0].body == {"metadata": {"a": 1}, "agent_id": "house-agent"}


def test_dynamodb_failure_is_503_and_the_millis_call_id_is_logged(
    make_api: Callable[..., ModuleType], sim: MillisSimulator, logs: LogCapture
) -> None:
    api = make_api(CALLS_TABLE_NAME="no-such-table")
    status, headers, body = invoke(api, create_event(agent_id="a"))
    assert (status, body["error"]) == (503, "store_unavailable")
    assert headers["retry-after"]
    assert "ResourceNotFoundException" in body["message"]
    assert len(sim.registrations()) == 1
    [reconciliation] = [line for line in logs.records() if line.get("millis_call_id")]
    assert reconciliation["level"] == "ERROR"
    assert reconciliation["millis_call_id"].startswith("sim-")


def test_the_local_api_server_requires_the_key_and_serves_the_routes(api: ModuleType, sim: MillisSimulator) -> None:
    with LocalApi(api.lambda_handler, api_key="it-key", port=0) as server:
        anonymous = httpx.post(f"{server.url}/calls", json={"agent_id": "a"})
        assert (anonymous.status_code, anonymous.json()) == (403, {"message": "Forbidden"})
        assert sim.registrations() == []
        wrong_route = httpx.get(f"{server.url}/nothing", headers={"x-api-key": "it-key"})
        assert wrong_route.status_code == 403
        with httpx.Client(base_url=server.url, headers={"x-api-key": "it-key"}) as http:
            created = http.post("/calls", json={"agent_id": "a", "lookup_key": "+14155550177"})
            assert created.status_code == 201
            found = http.get("/calls", params={"lookup_key": "+14155550177"})
            assert (found.status_code, found.json()["call_id"]) == (200, created.json()["call_id"])
            got = http.get(f"/calls/{created.json()['call_id']}")
            assert got.json() == created.json()

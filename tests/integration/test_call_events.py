"""Call events end to end (docs/events.md): calls made through the real functions into DynamoDB Local, the calls
table's stream read back as Lambda's event source mapping reads it (the template's filter and batch size), fed to
EventsFunction's handler, and the events on the stand-in bus checked against docs/events/call-events.schema.json."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

import jsonschema
import pytest

from dev.dynamodb_local import DynamoDBLocal
from dev.event_bus import LocalEventBus
from dev.lambda_context import LocalContext
from dev.millis_simulator import MillisSimulator
from dev.stream_events import CallsStream, deliver, filter_patterns, matches
from millis_sip.wiring import call_events
from tests.conftest import ROOT, load_event
from tests.support.invoke import invoke
from tests.support.rig import TABLE, _loader

pytestmark = pytest.mark.integration
SCHEMA = json.loads((ROOT / "docs" / "events" / "call-events.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
BUS = "calls-integration-bus"


@pytest.fixture
def stream(ddb: DynamoDBLocal) -> CallsStream:
    """The calls table's stream, read past what earlier tests wrote."""
    reader = CallsStream(ddb.endpoint, TABLE)
    reader.read()
    return reader


@pytest.fixture
def bus() -> LocalEventBus:
    return LocalEventBus(BUS)


@pytest.fixture
def events(ddb: DynamoDBLocal, sim: MillisSimulator, monkeypatch: pytest.MonkeyPatch, bus: LocalEventBus) -> ModuleType:
    """EventsFunction's entry module, loaded as Lambda loads it, its publisher putting on the stand-in bus."""
    module = _loader("events_handler", ddb, sim, monkeypatch, EVENT_BUS_NAME=BUS)()
    monkeypatch.setattr(module, "publisher", call_events(bus=bus))
    return module


def fresh_number() -> str:
    return "+1415" + str(uuid.uuid4().int)[:7]


def sma_event(name: str, tx: str, attrs: dict[str, str] | None = None, caller: str | None = None) -> dict[str, Any]:
    event = load_event(name)
    event["CallDetails"]["TransactionId"] = tx
    if attrs is not None:
        event["CallDetails"]["TransactionAttributes"] = attrs
    if caller is not None:
        event["CallDetails"]["Participants"][0]["From"] = caller
    return event


def millis_report(api: ModuleType, sim: MillisSimulator, call_id: str) -> None:
    event = load_event("api-millis-webhook.json")
    credential = sim.webhook_credential(call_id)
    assert credential is not None
    event["headers"]["X-Webhook-Secret"] = credential
    event["multiValueHeaders"]["X-Webhook-Secret"] = [credential]
    event["body"] = json.dumps({**json.loads(event["body"]), "call_id": call_id, "duration": 41})
    assert invoke(api, event)[0] == 200


def of_call(bus: LocalEventBus, call_id: str) -> list[str]:
    return [e["detail-type"] for e in bus.events if e["detail"]["call_id"] == call_id]


def test_a_registration_claimed_by_a_phone_call_is_every_event_of_its_life_in_order(
    api: ModuleType,
    make_sma: Callable[..., ModuleType],
    sim: MillisSimulator,
    stream: CallsStream,
    events: ModuleType,
    bus: LocalEventBus,
) -> None:
    caller = fresh_number()
    create = load_event("api-create-call.json")
    create["body"] = json.dumps(
        {"agent_id": "crm-agent", "lookup_key": caller, "caller_verification": "trust_caller_id"}
    )
    status, _, created = invoke(api, create)
    assert status == 201
    call_id = created["call_id"]
    sma = make_sma()
    tx = str(uuid.uuid4())
    ctx = LocalContext(function_name="SipMediaAppFunction")
    attrs = sma.lambda_handler(sma_event("sma-new-inbound-call.json", tx, caller=caller), ctx)["TransactionAttributes"]
    attrs = sma.lambda_handler(sma_event("sma-bridge-succeeded.json", tx, attrs), ctx)["TransactionAttributes"]
    sma.lambda_handler(sma_event("sma-hangup-caller.json", tx, attrs), ctx)
    millis_report(api, sim, call_id)
    # A phone call with no registration of its own: the router registers it, the bridge fails.
    other_tx = str(uuid.uuid4())
    other = sma.lambda_handler(sma_event("sma-new-inbound-call.json", other_tx, caller=fresh_number()), ctx)
    sma.lambda_handler(sma_event("sma-bridge-failed.json", other_tx, other["TransactionAttributes"]), ctx)
    other_id = other["TransactionAttributes"]["millis_call_id"]

    records = stream.read()
    dropped = [r for r in records if not any(matches(p, r) for p in filter_patterns())]
    assert any("kind" in r["dynamodb"].get("NewImage", {}) for r in dropped)  # the phone calls' markers
    assert deliver(records, events.lambda_handler) == []

    assert of_call(bus, call_id) == [
        "Call Registered",
        "Call Claimed",
        "Call Bridged",
        "Call Ended",
        "Call Session Reported",
    ]
    assert of_call(bus, other_id) == ["Call Claimed", "Call Failed"]
    for event in bus.events:
        VALIDATOR.validate(event)
    ended = next(e for e in bus.events if e["detail"]["call_id"] == call_id and e["detail-type"] == "Call Ended")
    detail = ended["detail"]
    assert (detail["status"], detail["previous_status"], detail["reason"]) == ("ended", "bridged", "caller_hung_up")
    assert (detail["carrier"], detail["source"], detail["agent_id"]) == ("chime", "http", "crm-agent")
    assert detail["caller_number"] == "+*******" + caller[-4:]
    assert caller not in json.dumps(bus.events)
    report = next(e for e in bus.events if e["detail-type"] == "Call Session Reported")
    assert report["detail"]["millis"]["duration_seconds"] == 41
    failed = next(e for e in bus.events if e["detail"]["call_id"] == other_id and e["detail-type"] == "Call Failed")
    assert failed["detail"]["reason"]
    ids = [e["detail"]["event_id"] for e in bus.events]
    assert len(ids) == len(set(ids))  # one per change, each its own id for deduplication


def test_markers_fed_without_the_filter_make_no_event_and_a_refused_put_is_retried_by_its_record(
    api: ModuleType, make_sma: Callable[..., ModuleType], stream: CallsStream, events: ModuleType, bus: LocalEventBus
) -> None:
    sma = make_sma()
    tx = str(uuid.uuid4())
    answer = sma.lambda_handler(sma_event("sma-new-inbound-call.json", tx, caller=fresh_number()), LocalContext())
    call_id = answer["TransactionAttributes"]["millis_call_id"]
    records = stream.read()
    markers = [r for r in records if "kind" in r["dynamodb"].get("NewImage", {})]
    assert markers
    assert events.lambda_handler({"Records": markers}, LocalContext("EventsFunction")) == {"batchItemFailures": []}
    assert bus.events == []

    bus.refuse_calls({call_id})
    answer = events.lambda_handler({"Records": records}, LocalContext("EventsFunction"))
    ours = [r["dynamodb"]["SequenceNumber"] for r in records if r["dynamodb"]["Keys"]["call_id"]["S"] == call_id]
    assert [f["itemIdentifier"] for f in answer["batchItemFailures"]] == ours
    bus.refuse_calls(set())
    assert deliver(records, events.lambda_handler) == []  # Lambda's retry of the batch: now it goes through
    assert of_call(bus, call_id) == ["Call Claimed"]

"""Call events (docs/events.md): stream records of the calls table to EventBridge events, each checked against
docs/events/call-events.schema.json, and PutEvents' limits and partial failures."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import jsonschema
import pytest
from botocore.stub import Stubber

from dev.event_bus import LocalEventBus
from millis_sip.adapters.dynamodb.codec import COUNTER_KIND, MARKER_KIND, marker_item, to_item
from millis_sip.core.calls import CallRecord, CallStatus, Direction
from millis_sip.core.sip import parse_sip_uri
from millis_sip.edges.events.changes import DETAIL_TYPES, SOURCE, CallChanges
from millis_sip.edges.events.publisher import MAX_REQUEST_BYTES, EventPublisher, Pending, batches, entry_size
from millis_sip.observability import mask_phone_numbers
from tests.conftest import ROOT

SCHEMA = json.loads((ROOT / "docs" / "events" / "call-events.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
T0 = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
CHANGES = CallChanges(number=mask_phone_numbers)


def valid(event: dict[str, Any]) -> dict[str, Any]:
    VALIDATOR.validate(event)
    return event


def as_delivered(detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {"source": SOURCE, "detail-type": detail_type, "detail": detail}


def call(**fields: Any) -> CallRecord:
    base = CallRecord(
        call_id="call-1",
        sip_uri=parse_sip_uri("sip:call-1@sip.example"),
        millis_region="us-west",
        status=CallStatus.REGISTERED,
        created_at=T0,
        expires_at=T0 + timedelta(hours=1),
        agent_id="agent-1",
        lookup_key="+14155550100",
    )
    return replace(base, **fields)


def change(
    new: CallRecord | dict[str, Any] | None, old: CallRecord | dict[str, Any] | None = None, **more: Any
) -> dict[str, Any]:
    images: dict[str, Any] = {"ApproximateCreationDateTime": (T0 + timedelta(minutes=5)).timestamp()}
    if new is not None:
        images["NewImage"] = to_item(new) if isinstance(new, CallRecord) else new
    if old is not None:
        images["OldImage"] = to_item(old) if isinstance(old, CallRecord) else old
    images["SequenceNumber"] = more.pop("sequence", "100")
    name = more.pop("name", "INSERT" if old is None else "MODIFY")
    return {"eventID": more.pop("event_id", "e1"), "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": images}


def kinds(record: dict[str, Any]) -> list[str]:
    found = CHANGES.events(record)
    for event in found:
        valid(as_delivered(event.detail_type, event.detail))
    return [e.detail_type for e in found]


def test_every_status_move_of_an_inbound_call_is_one_event() -> None:
    registered = call()
    claimed = replace(registered, status=CallStatus.CLAIMED, source="twilio", caller_number="+14155550100")
    bridged = replace(claimed, status=CallStatus.BRIDGED, bridged_at=T0 + timedelta(seconds=3))
    ended = replace(bridged, status=CallStatus.ENDED, ended_at=T0 + timedelta(seconds=63), duration_seconds=60)
    assert kinds(change(registered)) == ["Call Registered"]
    assert kinds(change(claimed, registered)) == ["Call Claimed"]
    assert kinds(change(bridged, claimed)) == ["Call Bridged"]
    assert kinds(change(ended, bridged)) == ["Call Ended"]
    [event] = CHANGES.events(change(ended, bridged, event_id="abc"))
    detail = event.detail
    assert detail["version"] == "1" and detail["event_id"] == "abc:0"
    assert (detail["status"], detail["previous_status"], detail["duration_seconds"]) == ("ended", "bridged", 60)
    assert (detail["carrier"], detail["direction"], detail["agent_id"]) == ("twilio", "inbound", "agent-1")
    assert detail["occurred_at"] == "2026-12-04T03:01:03.000Z" == detail["ended_at"]
    assert event.time == T0 + timedelta(seconds=63)


def test_an_outbound_call_rings_is_answered_and_a_machine_is_detected() -> None:
    queued = call(status=CallStatus.QUEUED, direction=Direction.OUTBOUND, carrier="telnyx", source="telnyx")
    ringing = replace(queued, status=CallStatus.RINGING, ringing_at=T0 + timedelta(seconds=1))
    answered = replace(
        ringing, status=CallStatus.ANSWERED, answered_at=T0 + timedelta(seconds=9), answered_by="machine"
    )
    machine = replace(answered, status=CallStatus.MACHINE, ended_at=T0 + timedelta(seconds=10), reason="machine")
    assert kinds(change(queued)) == ["Call Queued"]
    assert kinds(change(ringing, queued)) == ["Call Ringing"]
    assert kinds(change(answered, ringing)) == ["Call Answered"]
    assert kinds(change(machine, answered)) == ["Call Machine Detected"]
    for status, kind in (
        (CallStatus.NO_ANSWER, "Call Not Answered"),
        (CallStatus.BUSY, "Call Busy"),
        (CallStatus.CANCELED, "Call Canceled"),
    ):
        assert kinds(change(replace(ringing, status=status, ended_at=T0, reason=status.value), ringing)) == [kind]


def test_a_call_stored_failed_is_refused_and_one_that_fails_later_failed_with_its_reason() -> None:
    refused = call(status=CallStatus.FAILED, reason="unroutable_sip_uri", ended_at=T0, source="sip")
    assert kinds(change(refused)) == ["Call Refused"]
    claimed = call(status=CallStatus.CLAIMED, source="chime")
    failed = replace(claimed, status=CallStatus.FAILED, reason="bridge_failed", ended_at=T0)
    [event] = CHANGES.events(change(failed, claimed))
    assert (event.detail_type, event.detail["reason"]) == ("Call Failed", "bridge_failed")


def test_a_transfer_is_three_events_and_a_session_report_one_beside_the_end_it_brings() -> None:
    bridged = call(status=CallStatus.BRIDGED, bridged_at=T0, source="twilio")
    started = replace(
        bridged,
        transfer_status="in_progress",
        transfer_to="+442071838750",
        transfer_mode="warm",
        transfer_by="api",
        transfer_requested_at=T0 + timedelta(seconds=30),
    )
    connected = replace(started, transfer_status="connected", transfer_ended_at=T0 + timedelta(seconds=40))
    assert kinds(change(started, bridged)) == ["Call Transfer Started"]
    assert kinds(change(connected, started)) == ["Call Transferred"]
    assert kinds(change(replace(started, transfer_status="failed"), started)) == ["Call Transfer Failed"]
    [event] = CHANGES.events(change(connected, started))
    assert event.detail["transfer"]["to"] == mask_phone_numbers("+442071838750") == "+********8750"
    reported = replace(
        bridged,
        status=CallStatus.ENDED,
        ended_at=T0 + timedelta(minutes=2),
        duration_seconds=120,
        millis_call_status="completed",
        millis_session_id="s-1",
        millis_duration_seconds=118,
    )
    assert kinds(change(reported, bridged, event_id="x")) == ["Call Ended", "Call Session Reported"]
    ids = [e.detail["event_id"] for e in CHANGES.events(change(reported, bridged, event_id="x"))]
    assert ids == ["x:0", "x:1"]


def test_markers_counters_removals_and_writes_that_change_no_state_are_no_event() -> None:
    marker = marker_item("tx#twilio#CA1#1", owner="o", lease_until_ms=1, expires_at=T0)
    assert marker["kind"]["S"] == MARKER_KIND
    counter = {"call_id": {"S": "count#abc#2026120403"}, "kind": {"S": COUNTER_KIND}, "count": {"N": "3"}}
    assert CHANGES.events(change(marker)) == [] == CHANGES.events(change(counter, counter))
    registered = call()
    assert CHANGES.events(change(None, registered, name="REMOVE")) == []
    assert CHANGES.events(change(replace(registered, pin_failures=2), registered)) == []
    assert CHANGES.events(change(replace(registered, carrier_call_id="CA9"), registered)) == []


def test_phone_numbers_are_masked_unless_the_user_opts_in() -> None:
    claimed = call(status=CallStatus.CLAIMED, caller_number="+14155550100", dialed_number="+14155550199")
    [masked] = CallChanges(number=mask_phone_numbers).events(change(claimed, call()))
    assert (masked.detail["caller_number"], masked.detail["dialed_number"]) == ("+*******0100", "+*******0199")
    assert "4155550" not in json.dumps(masked.detail)
    [full] = CallChanges(number=str).events(change(claimed, call()))
    assert full.detail["caller_number"] == "+14155550100"


def test_the_schema_refuses_what_a_reader_could_not_rely_on() -> None:
    [event] = CHANGES.events(change(call()))
    good = as_delivered("Call Registered", event.detail)
    valid(good)
    for broken in (
        {**event.detail, "version": "2"},
        {**event.detail, "status": "ended"},  # not what the detail-type says
        {k: v for k, v in event.detail.items() if k != "call_id"},
        {**event.detail, "lookup_key": "+14155550100"},  # nothing beyond the documented fields
    ):
        with pytest.raises(jsonschema.ValidationError):
            VALIDATOR.validate(as_delivered("Call Registered", broken))
    assert set(SCHEMA["properties"]["detail-type"]["enum"]) == set(DETAIL_TYPES)
    assert all(name in SCHEMA["$defs"] for name in DETAIL_TYPES)


# --- publishing -------------------------------------------------------------------------------------------


def events_client() -> Any:
    return boto3.client("events", region_name="us-west-2", aws_access_key_id="x", aws_secret_access_key="x")


def publisher(bus: Any, attempts: int = 3) -> EventPublisher:
    return EventPublisher(bus, bus_name="calls-bus", changes=CHANGES, attempts=attempts, sleep=lambda _: None)


def lifecycle(count: int) -> list[dict[str, Any]]:
    """``count`` calls registered, one stream record each."""
    return [change(call(call_id=f"call-{i}"), sequence=str(100 + i), event_id=f"e{i}") for i in range(count)]


def test_events_go_in_requests_of_ten_that_botocores_model_of_put_events_accepts() -> None:
    client = events_client()
    records = lifecycle(23)
    with Stubber(client) as stub:
        for size in (10, 10, 3):
            entries = [{"EventId": f"id-{i}"} for i in range(size)]
            stub.add_response("put_events", {"FailedEntryCount": 0, "Entries": entries})
        assert publisher(client).publish(records) == []
        stub.assert_no_pending_responses()


def test_a_request_stays_under_256_kb() -> None:
    big = {"Source": SOURCE, "DetailType": "Call Ended", "Detail": "x" * 100_000, "Time": T0}
    pending = [Pending(str(i), big) for i in range(5)]
    cut = batches(pending)
    assert [len(b) for b in cut] == [2, 2, 1]
    assert all(sum(entry_size(p.entry) for p in b) <= MAX_REQUEST_BYTES for b in cut)


def test_refused_entries_are_sent_again_and_only_they() -> None:
    bus = LocalEventBus("calls-bus")
    bus.fail_next(3)
    assert publisher(bus).publish(lifecycle(5)) == []
    assert bus.requests == 2
    assert sorted(e["detail"]["call_id"] for e in bus.events) == [f"call-{i}" for i in range(5)]
    for event in bus.events:
        valid(event)


def test_what_still_fails_is_reported_by_its_stream_record() -> None:
    bus = LocalEventBus("calls-bus")
    bus.refuse_calls({"call-0", "call-1"})  # on every attempt
    assert publisher(bus).publish(lifecycle(4)) == ["100", "101"]
    assert {e["detail"]["call_id"] for e in bus.events} == {"call-2", "call-3"}


def test_an_unreadable_record_is_reported_and_the_others_published() -> None:
    bus = LocalEventBus("calls-bus")
    broken = change({"call_id": {"S": "call-x"}, "status": {"S": "registered"}}, sequence="99")
    assert publisher(bus).publish([broken, *lifecycle(2)]) == ["99"]
    assert len(bus.events) == 2


def test_a_bus_that_fails_the_whole_request_reports_every_record_of_it() -> None:
    client = events_client()
    with Stubber(client) as stub:
        for _ in range(2):
            stub.add_client_error("put_events", "InternalException", http_status_code=500)
        assert publisher(client, attempts=2).publish(lifecycle(2)) == ["100", "101"]


def test_the_stand_in_holds_requests_to_the_put_events_model() -> None:
    bus = LocalEventBus("calls-bus")
    with pytest.raises(ValueError, match="Entries"):
        bus.put_events(Entries="not a list")
    with pytest.raises(ValueError, match="at most 10"):
        bus.put_events(Entries=[{"Source": SOURCE, "DetailType": "x", "Detail": "{}"}] * 11)


def test_each_event_put_is_counted_by_detail_type_and_carrier() -> None:
    counted: list[tuple[str, str | None]] = []
    bus = LocalEventBus("calls-bus")
    bus.refuse_calls({"call-1"})
    claimed = call(call_id="call-2", status=CallStatus.CLAIMED, source="vonage")
    records = [*lifecycle(2), change(claimed, call(call_id="call-2"), sequence="200")]
    published = EventPublisher(
        bus, bus_name="calls-bus", changes=CHANGES, sleep=lambda _: None, counted=lambda *c: counted.append(c)
    )
    assert published.publish(records) == ["101"]
    assert counted == [("Call Registered", None), ("Call Claimed", "vonage")]


def test_emf_lines_name_the_metrics_the_dashboard_reads(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from millis_sip import observability
    from millis_sip.adapters.secrets import StaticApiKey
    from millis_sip.edges.carriers import InvalidSignature
    from millis_sip.edges.carriers.webhooks import authenticate

    monkeypatch.setattr(observability, "_metrics_enabled", True)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "millis-sip-bridge")

    def refuse(keys: list[str]) -> None:
        raise InvalidSignature("signature mismatch")

    authenticate(StaticApiKey("token"), "Twilio", refuse)
    observability.count_call_event("Call Ended", None)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    [signature, event] = lines
    assert signature["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Carrier", "service"]]
    assert (signature["Carrier"], signature["SignatureFailures"]) == ("twilio", [1.0])
    assert event["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Event", "Carrier", "service"]]
    assert (event["Event"], event["Carrier"], event["CallEvents"]) == ("Call Ended", "none", [1.0])


def test_the_function_refuses_to_start_without_its_bus_or_with_an_unknown_numbers_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from millis_sip.core.errors import ConfigurationError
    from millis_sip.wiring import call_events

    monkeypatch.delenv("EVENT_BUS_NAME", raising=False)
    with pytest.raises(ConfigurationError, match="EVENT_BUS_NAME"):
        call_events(bus=LocalEventBus())
    monkeypatch.setenv("EVENT_BUS_NAME", "calls-bus")
    monkeypatch.setenv("EVENTS_PHONE_NUMBERS", "hashed")
    with pytest.raises(ConfigurationError, match="EVENTS_PHONE_NUMBERS"):
        call_events(bus=LocalEventBus())
    for setting, shown in (("masked", "+*******0100"), ("full", "+14155550100"), ("", "+*******0100")):
        monkeypatch.setenv("EVENTS_PHONE_NUMBERS", setting)
        bus = LocalEventBus("calls-bus")
        claimed = call(status=CallStatus.CLAIMED, caller_number="+14155550100")
        assert call_events(bus=bus).publish([change(claimed, call())]) == []
        assert bus.events[0]["detail"]["caller_number"] == shown


def test_every_status_a_call_can_be_stored_in_has_its_event_and_is_in_the_schema() -> None:
    from millis_sip.edges.events.changes import STATUS_EVENTS

    stored = {s for s in CallStatus if s is not CallStatus.EXPIRED}  # expired is never stored
    assert set(STATUS_EVENTS) == stored
    detail = SCHEMA["$defs"]["detail"]["properties"]
    assert set(detail["status"]["enum"]) == {s.value for s in stored}
    assert set(detail["previous_status"]["enum"]) == {s.value for s in stored} | {None}

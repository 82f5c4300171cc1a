"""Transfers at the SIP media application (edges/chime/transfer.py), from the documented events: the API asked
UpdateSipMediaApplicationCall with the transfer's Arguments; Chime invokes CALL_UPDATE_REQUESTED
(sma_CALL_UPDATE_REQUESTED_1's ActionData: Type CallUpdateRequest, Parameters.Arguments) on a call with both legs
up (sma_ACTION_SUCCESSFUL_6's CallDetails, a CallAndBridge's), then the new CallAndBridge's result
(sma_ACTION_SUCCESSFUL_6, sma_ACTION_FAILED_2's CallNotAnswered). Every answer is checked against the SMA
action schema."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import timedelta
from typing import Any

from millis_sip.core.calls import CallRecord, CallStatus
from millis_sip.core.sip import parse_sip_uri
from millis_sip.core.transfer import LIVE
from millis_sip.edges.chime import attributes
from tests.conftest import chime_fixture
from tests.support.clock import FakeClock
from tests.support.fakes import MemoryStore
from tests.unit.chime.rig import answer, make_app, types

TARGET = "+14155550199"
OURS, CALLER = "+15055550123", "+14155550100"


def transferring(store: MemoryStore, clock: FakeClock, **transfer: Any) -> tuple[CallRecord, dict[str, str]]:
    """A bridged Chime call whose transfer the API has begun, and the TransactionAttributes it carries."""
    now = clock.now()
    record = CallRecord(
        "call-1",
        parse_sip_uri("sip:call-1@sip-us-west.example"),
        "us-west",
        CallStatus.BRIDGED,
        now,
        now + timedelta(hours=1),
        source="chime",
        transaction_id="tx-1",
        caller_number=CALLER,
        dialed_number=OURS,
        agent_id="phone-agent",
    )
    store.put_new(record)
    moving = replace(
        record,
        transfer_to=TARGET,
        transfer_mode="cold",
        transfer_by="api",
        transfer_status="in_progress",
        transfer_requested_at=now,
        **transfer,
    )
    assert store.begin_transfer(moving, live=LIVE)
    return moving, attributes.encode(record, 1)


def legs_up(name: str, attrs: dict[str, str], action: dict[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = copy.deepcopy(chime_fixture(name))
    raw["CallDetails"]["TransactionAttributes"] = attrs
    raw["ActionData"] = action
    return raw


def update_requested(attrs: dict[str, str], **arguments: str) -> dict[str, Any]:
    raw = legs_up("sma_ACTION_SUCCESSFUL_6.json", attrs, {})
    raw["InvocationEventType"] = "CALL_UPDATE_REQUESTED"
    raw["ActionData"] = copy.deepcopy(chime_fixture("sma_CALL_UPDATE_REQUESTED_1.json")["ActionData"])
    raw["ActionData"]["Parameters"]["Arguments"] = arguments
    return raw


def test_the_agents_leg_is_hung_up_the_caller_hears_the_announcement_and_is_bridged_to_the_number() -> None:
    app, _, store, clock = make_app()
    _, attrs = transferring(store, clock, transfer_announce="One moment.")
    event = update_requested(attrs, millis_action="transfer", transfer_to=TARGET, caller_id=OURS)
    result = answer(app, event, clock)
    assert types(result) == ["Hangup", "Speak", "CallAndBridge"]
    hangup, said, bridge = result["Actions"]
    legs = {p["ParticipantTag"]: p["CallId"] for p in event["CallDetails"]["Participants"]}
    assert hangup["Parameters"]["CallId"] == legs["LEG-B"] and said["Parameters"]["CallId"] == legs["LEG-A"]
    assert bridge["Parameters"]["Endpoints"] == [{"BridgeEndpointType": "PSTN", "Uri": TARGET}]
    assert bridge["Parameters"]["CallerIdNumber"] == OURS
    carried = result["TransactionAttributes"]
    assert carried["transfer"] == f"in_progress:{legs['LEG-B']}" and len(carried) <= 10

    # the agent's old leg reported gone: nothing to do (this application hung it up)
    gone = legs_up("sma_HANGUP_1.json", carried, copy.deepcopy(chime_fixture("sma_HANGUP_1.json")["ActionData"]))
    gone["ActionData"]["Parameters"] = {"CallId": legs["LEG-B"], "ParticipantTag": "LEG-B"}
    assert types(answer(app, gone, clock)) == []
    assert store.items["call-1"].status is CallStatus.BRIDGED

    # the person answered: connected, and the call goes on
    success = legs_up(
        "sma_ACTION_SUCCESSFUL_6.json", carried, {"Type": "CallAndBridge", "Parameters": bridge["Parameters"]}
    )
    done = answer(app, success, clock)
    assert types(done) == [] and done["TransactionAttributes"]["transfer"] == "connected"
    assert store.items["call-1"].transfer_status == "connected"


def test_a_target_that_does_not_answer_fails_the_transfer_and_the_caller_hears_the_failure_message() -> None:
    app, _, store, clock = make_app()
    _, attrs = transferring(store, clock)
    started = answer(app, update_requested(attrs, millis_action="transfer", transfer_to=TARGET, caller_id=OURS), clock)
    failed = legs_up("sma_ACTION_FAILED_2.json", started["TransactionAttributes"], {})
    failed["ActionData"] = copy.deepcopy(chime_fixture("sma_ACTION_FAILED_2.json")["ActionData"])
    result = answer(app, failed, clock)
    assert types(result) == ["Speak", "Hangup"]
    assert store.items["call-1"].transfer_status == "failed"


def test_a_request_for_no_transfer_under_way_or_another_target_changes_nothing() -> None:
    app, _, store, clock = make_app()
    _, attrs = transferring(store, clock)
    other = update_requested(attrs, millis_action="transfer", transfer_to="+14155550100", caller_id=OURS)
    assert types(answer(app, other, clock)) == []  # not the target the API recorded
    unknown = update_requested({**attrs, "millis_call_id": "nobody"}, millis_action="transfer", transfer_to=TARGET)
    assert types(answer(app, unknown, clock)) == []
    assert store.items["call-1"].transfer_status == "in_progress"

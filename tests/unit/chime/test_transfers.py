"""Transfers at the SIP media application (edges/chime/transfer.py), played with Chime's documented events
(tests/fixtures/chime-events): the API's use case (CallTransfers) asks Chime through the real ChimeCalls, whose
UpdateSipMediaApplicationCall botocore's Stubber validates against the chime-sdk-voice model; its Arguments then
arrive in a CALL_UPDATE_REQUESTED shaped as the developer guide's (sma_CALL_UPDATE_REQUESTED_1), with the call's
CallDetails. The application hangs up the Millis leg, then bridges the caller to the target (CallAndBridge,
PSTN); the bridge's documented ACTION_SUCCESSFUL (sma_ACTION_SUCCESSFUL_6) or ACTION_FAILED (sma_ACTION_FAILED_2)
closes the record's transfer. Every answer is validated against the documented response schema (``answer``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from millis_sip.adapters.call_control.chime import ChimeCalls
from millis_sip.adapters.secrets import StaticApiKey
from millis_sip.core.calls import CallStatus
from millis_sip.core.errors import TransferUnavailable
from millis_sip.core.keys import StackKeys
from millis_sip.core.transfer import CallTransfers, TransferMode, TransferPolicy, TransferRequest
from millis_sip.edges.chime.app import SipMediaApp
from tests.conftest import chime_fixture, load_event
from tests.support.clock import FakeClock
from tests.support.fakes import MemoryStore
from tests.unit.chime import test_outbound as outbound
from tests.unit.chime.rig import CALLER, DIALED, LEG_A_CALL_ID, answer, inbound, make_app, types

SMA = "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9"
MILLIS_LEG = "d41f7b2c-9a3e-4e6d-8c15-2b7a0f9e4d31"  # LEG-B of events/sma-bridge-succeeded.json
TARGET_LEG = "7e1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b"
TARGET = "+14155550199"


class Urls:
    def transfer_status_url(self, carrier: str, call_id: str, token: str) -> str:
        return f"https://bridge.example/carriers/{carrier}/transfer/status?call={call_id}"

    def transfer_whisper_url(self, carrier: str, call_id: str, token: str) -> str:
        return f"https://bridge.example/carriers/{carrier}/transfer/whisper?call={call_id}"

    def transfer_answer_url(self, carrier: str, call_id: str, token: str) -> str:
        return f"https://bridge.example/carriers/{carrier}/transfer/answer?call={call_id}"


def ask_chime(store: MemoryStore, clock: FakeClock, call_id: str, request: TransferRequest) -> dict[str, str]:
    """POST /calls/{call_id}/transfer's use case over the real ChimeCalls; the Arguments Chime was sent."""
    import boto3
    from botocore.stub import ANY, Stubber

    client = boto3.client("chime-sdk-voice", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    sent: dict[str, Any] = {}
    client.meta.events.register(
        "provide-client-params.chime-sdk-voice.UpdateSipMediaApplicationCall", lambda params, **_: sent.update(params)
    )
    transfers = CallTransfers(
        store,
        {"chime": ChimeCalls(SMA, lambda: client)},
        policy=TransferPolicy(("+1415555",)),
        clock=clock,
        keys=StackKeys(StaticApiKey("unit-keys")),
    )
    stubber = Stubber(client)
    stubber.add_response(
        "update_sip_media_application_call",
        {"SipMediaApplicationCall": {"TransactionId": "tx"}},
        {"SipMediaApplicationId": SMA, "TransactionId": ANY, "Arguments": ANY},
    )
    with stubber:
        transfers.transfer(call_id, request, budget=5, urls=Urls())
    stubber.assert_no_pending_responses()
    record = store.items[call_id]
    assert sent["TransactionId"] == (record.carrier_call_id or record.transaction_id)
    arguments: dict[str, str] = sent["Arguments"]
    return arguments


def bridged_inbound() -> tuple[SipMediaApp, MemoryStore, FakeClock, str, dict[str, Any]]:
    """An inbound call bridged to its agent: the app, the store, the clock, the call id, the bridged event."""
    app, _, store, clock = make_app()
    attrs = answer(app, inbound(From=CALLER, To=DIALED), clock)["TransactionAttributes"]
    bridged = load_event("sma-bridge-succeeded.json")
    bridged["CallDetails"]["TransactionAttributes"] = attrs
    attrs = answer(app, bridged, clock)["TransactionAttributes"]
    bridged["CallDetails"]["TransactionAttributes"] = attrs
    call_id = attrs["millis_call_id"]
    assert store.items[call_id].status is CallStatus.BRIDGED
    return app, store, clock, call_id, bridged


def later(base: dict[str, Any], kind: str, attrs: dict[str, str], action: dict[str, Any] | None = None,
          **status: str) -> dict[str, Any]:  # fmt: skip
    """The next invocation of the call ``base`` describes: its CallDetails, the attributes last answered, the legs'
    Status as given (``millis``, ``target``: LEG-B, the Millis leg or the target's)."""
    event = copy.deepcopy(base)
    event["InvocationEventType"] = kind
    event["Sequence"] = event.get("Sequence", 1) + 1
    event["CallDetails"]["TransactionAttributes"] = attrs
    legs = event["CallDetails"]["Participants"]
    if "millis" in status:
        legs[1]["Status"] = status["millis"]
    if "target" in status:
        legs[1].update({"CallId": TARGET_LEG, "To": TARGET, "Status": status["target"]})
    if "caller" in status:
        legs[0]["Status"] = status["caller"]
    if action is None:
        event.pop("ActionData", None)
    else:
        event["ActionData"] = action
    return event


def update_requested(base: dict[str, Any], arguments: dict[str, str]) -> dict[str, Any]:
    """sma_CALL_UPDATE_REQUESTED_1's ActionData (CallUpdateRequest, the Arguments sent) on the call's details."""
    documented = chime_fixture("sma_CALL_UPDATE_REQUESTED_1.json")
    action = copy.deepcopy(documented["ActionData"])
    action["Parameters"]["Arguments"] = arguments
    event = later(base, "CALL_UPDATE_REQUESTED", dict(base["CallDetails"]["TransactionAttributes"]), action)
    return event


def bridge_result(succeeded: bool) -> dict[str, Any]:
    """The documented ActionData of a CallAndBridge that succeeded (sma_ACTION_SUCCESSFUL_6) or was not answered
    (sma_ACTION_FAILED_2)."""
    name = "sma_ACTION_SUCCESSFUL_6.json" if succeeded else "sma_ACTION_FAILED_2.json"
    action: dict[str, Any] = copy.deepcopy(chime_fixture(name)["ActionData"])
    assert action["Type"] == "CallAndBridge"
    return action


def hung_up(call_id: str, tag: str) -> dict[str, Any]:
    return {"Type": "Hangup", "Parameters": {"SipResponseCode": "0", "CallId": call_id, "ParticipantTag": tag}}


def test_an_inbound_call_is_moved_from_its_agent_to_the_person_and_the_record_shows_it() -> None:
    app, store, clock, call_id, bridged = bridged_inbound()
    request = TransferRequest(TARGET, TransferMode.COLD, announce="Putting you through.")
    arguments = ask_chime(store, clock, call_id, request)
    assert arguments == {
        "millis_action": "transfer",
        "millis_call_id": call_id,
        "transfer_to": TARGET,
        "announce": "Putting you through.",
        "caller_id": DIALED,  # the stack's number the caller dialed: Chime requires a number of the account
    }
    assert store.items[call_id].transfer_status == "in_progress"

    # 1. the update: the Millis leg is hung up, and only it
    update = answer(app, update_requested(bridged, arguments), clock)
    assert update["Actions"] == [
        {"Type": "Hangup", "Parameters": {"SipResponseCode": "0", "CallId": MILLIS_LEG, "ParticipantTag": "LEG-B"}}
    ]
    attrs = update["TransactionAttributes"]
    assert len(attrs) <= 10 and attrs["millis_call_id"] == call_id and "bridged_at" in attrs

    # 2. the Hangup done (its ACTION_SUCCESSFUL): the announcement to the caller, then the bridge to the person
    done = answer(
        app, later(bridged, "ACTION_SUCCESSFUL", attrs, hung_up(MILLIS_LEG, "LEG-B"), millis="Disconnected"), clock
    )
    assert types(done) == ["Speak", "CallAndBridge"]
    speak, bridge = done["Actions"]
    assert (speak["Parameters"]["CallId"], speak["Parameters"]["Text"]) == (LEG_A_CALL_ID, "Putting you through.")
    assert bridge["Parameters"]["Endpoints"] == [{"BridgeEndpointType": "PSTN", "Uri": TARGET}]
    assert bridge["Parameters"]["CallerIdNumber"] == DIALED
    attrs = done["TransactionAttributes"]

    # Chime's HANGUP of the Millis leg, after or instead of the ACTION_SUCCESSFUL: no second bridge, no hang-up
    # of the caller, and the call is not closed as ended by its agent
    millis_gone = later(bridged, "HANGUP", attrs, hung_up(MILLIS_LEG, "LEG-B"), millis="Disconnected")
    assert types(answer(app, millis_gone, clock)) == []
    assert store.items[call_id].status is CallStatus.BRIDGED

    # 3. the person answers: the documented CallAndBridge success; the record's transfer is connected
    clock.advance(3)
    connected = answer(app, later(bridged, "ACTION_SUCCESSFUL", attrs, bridge_result(True), target="Connected"), clock)
    assert types(connected) == []
    record = store.items[call_id]
    assert (record.transfer_status, record.transfer_ended_at) == ("connected", clock.now())
    assert record.status is CallStatus.BRIDGED  # the call goes on, with the person

    # 4. the person hangs up: the caller is hung up, the call ends (not by its agent)
    clock.advance(60)
    attrs = connected["TransactionAttributes"]
    end = later(bridged, "HANGUP", attrs, hung_up(TARGET_LEG, "LEG-B"), target="Disconnected")
    assert answer(app, end, clock)["Actions"] == [
        {"Type": "Hangup", "Parameters": {"SipResponseCode": "0", "CallId": LEG_A_CALL_ID, "ParticipantTag": "LEG-A"}}
    ]
    record = store.items[call_id]
    assert (record.status, record.reason) == (CallStatus.ENDED, "transfer_target_hung_up")


def test_the_millis_legs_hangup_event_alone_moves_the_transfer_on() -> None:
    """Whichever Chime reports first (the Hangup's ACTION_SUCCESSFUL, or the leg's HANGUP) starts the bridge;
    the other changes nothing."""
    app, store, clock, call_id, bridged = bridged_inbound()
    arguments = ask_chime(store, clock, call_id, TransferRequest(TARGET))
    attrs = answer(app, update_requested(bridged, arguments), clock)["TransactionAttributes"]
    first = answer(app, later(bridged, "HANGUP", attrs, hung_up(MILLIS_LEG, "LEG-B"), millis="Disconnected"), clock)
    assert types(first) == ["CallAndBridge"]  # no announcement asked for: straight to the person
    attrs = first["TransactionAttributes"]
    second = later(bridged, "ACTION_SUCCESSFUL", attrs, hung_up(MILLIS_LEG, "LEG-B"), millis="Disconnected")
    assert types(answer(app, second, clock)) == []


def test_a_person_who_does_not_answer_fails_the_transfer_and_the_caller_hears_the_failure_message() -> None:
    app, store, clock, call_id, bridged = bridged_inbound()
    arguments = ask_chime(store, clock, call_id, TransferRequest(TARGET))
    attrs = answer(app, update_requested(bridged, arguments), clock)["TransactionAttributes"]
    attrs = answer(
        app, later(bridged, "ACTION_SUCCESSFUL", attrs, hung_up(MILLIS_LEG, "LEG-B"), millis="Disconnected"), clock
    )["TransactionAttributes"]
    failed = later(bridged, "ACTION_FAILED", attrs, bridge_result(False))
    failed["CallDetails"]["Participants"] = failed["CallDetails"]["Participants"][:1]  # as documented: LEG-A only
    result = answer(app, failed, clock)
    assert types(result) == ["Speak", "Hangup"]
    assert result["Actions"][0]["Parameters"]["Text"] == "Sorry, the assistant is not available."
    assert store.items[call_id].transfer_status == "failed"


def test_a_caller_who_hangs_up_while_the_person_rings_fails_the_transfer_and_ends_the_call() -> None:
    app, store, clock, call_id, bridged = bridged_inbound()
    arguments = ask_chime(store, clock, call_id, TransferRequest(TARGET))
    attrs = answer(app, update_requested(bridged, arguments), clock)["TransactionAttributes"]
    attrs = answer(
        app, later(bridged, "ACTION_SUCCESSFUL", attrs, hung_up(MILLIS_LEG, "LEG-B"), millis="Disconnected"), clock
    )["TransactionAttributes"]
    gone = later(bridged, "HANGUP", attrs, hung_up(LEG_A_CALL_ID, "LEG-A"), caller="Disconnected", target="Connected")
    assert [a["Parameters"]["CallId"] for a in answer(app, gone, clock)["Actions"]] == [TARGET_LEG]
    record = store.items[call_id]
    assert (record.transfer_status, record.status, record.reason) == ("failed", CallStatus.ENDED, "caller_hung_up")


def test_an_update_for_another_call_or_a_second_transfer_changes_nothing() -> None:
    app, store, clock, call_id, bridged = bridged_inbound()
    arguments = ask_chime(store, clock, call_id, TransferRequest(TARGET))
    assert answer(app, update_requested(bridged, {**arguments, "millis_call_id": "someone-else"}), clock) == {
        "SchemaVersion": "1.0",
        "Actions": [],
    }
    attrs = answer(app, update_requested(bridged, arguments), clock)["TransactionAttributes"]
    again = update_requested(bridged, arguments)
    again["CallDetails"]["TransactionAttributes"] = attrs
    assert types(answer(app, again, clock)) == []  # a retried invocation does not hang up or bridge twice


def test_chime_refuses_warm_transfers_and_sip_targets_before_anything_is_written_or_sent() -> None:
    _, store, clock, call_id, _ = bridged_inbound()
    for request in (TransferRequest(TARGET, TransferMode.WARM, summary="Ana"), TransferRequest("sip:a@pbx.example")):
        transfers = CallTransfers(
            store,
            {"chime": ChimeCalls(SMA, lambda: pytest.fail("nothing may be sent"))},
            policy=TransferPolicy(("+1415555", "sip:pbx.example")),
            clock=clock,
            keys=StackKeys(StaticApiKey("unit-keys")),
        )
        with pytest.raises(TransferUnavailable):
            transfers.transfer(call_id, request, budget=5, urls=Urls())
        assert store.items[call_id].transfer_status is None


def test_an_outbound_call_is_transferred_with_its_own_transaction_and_number() -> None:
    app, _, store, clock = make_app()
    outbound.placed(store, clock)
    attrs = answer(app, outbound.new_call(), clock)["TransactionAttributes"]
    answer(app, outbound.event("sma_RINGING_1.json", attrs), clock)
    answer(app, outbound.event("sma_CALL_ANSWERED_1.json", attrs), clock)
    success = chime_fixture("sma_ACTION_SUCCESSFUL_6.json")["ActionData"]
    bridged = outbound.event("sma_ACTION_SUCCESSFUL_6.json", attrs, success)
    for leg, number in zip(bridged["CallDetails"]["Participants"], (outbound.TO, "call-out-1"), strict=True):
        leg.update({"To": number, "From": outbound.FROM})
    attrs = answer(app, bridged, clock)["TransactionAttributes"]
    bridged["CallDetails"]["TransactionAttributes"] = attrs
    assert store.items["out-1"].status is CallStatus.BRIDGED

    arguments = ask_chime(store, clock, "out-1", TransferRequest(TARGET))
    assert arguments["caller_id"] == outbound.FROM  # the stack's number the call was placed from
    update = answer(app, update_requested(bridged, arguments), clock)
    assert update["Actions"][0]["Parameters"]["CallId"] == "call-id-2"  # the Millis leg of the documented event
    attrs = update["TransactionAttributes"]
    assert attrs["direction"] == "outbound"
    done = later(bridged, "ACTION_SUCCESSFUL", attrs, hung_up("call-id-2", "LEG-B"), millis="Disconnected")
    bridge = answer(app, done, clock)
    assert types(bridge) == ["CallAndBridge"] and bridge["Actions"][0]["Parameters"]["CallerIdNumber"] == outbound.FROM
    attrs = bridge["TransactionAttributes"]
    connected = answer(app, later(bridged, "ACTION_SUCCESSFUL", attrs, bridge_result(True), target="Connected"), clock)
    assert store.items["out-1"].transfer_status == "connected"
    attrs = connected["TransactionAttributes"]
    clock.advance(30)
    end = later(bridged, "HANGUP", attrs, hung_up(TARGET_LEG, "LEG-B"), target="Disconnected")
    answer(app, end, clock)
    record = store.items["out-1"]
    assert (record.status, record.reason) == (CallStatus.ENDED, "hangup_transfer_target")


def test_a_store_that_cannot_answer_does_not_stop_a_transfer_the_api_accepted() -> None:
    from millis_sip.core.errors import StoreUnavailable

    app, store, clock, call_id, bridged = bridged_inbound()
    arguments = ask_chime(store, clock, call_id, TransferRequest(TARGET))
    store.fail_with = StoreUnavailable("DynamoDB is down")
    update = answer(app, update_requested(bridged, arguments), clock)
    assert types(update) == ["Hangup"]  # the transfer goes on: only ApiFunction can ask for it
    attrs = update["TransactionAttributes"]
    done = later(bridged, "ACTION_SUCCESSFUL", attrs, hung_up(MILLIS_LEG, "LEG-B"), millis="Disconnected")
    assert types(answer(app, done, clock)) == ["CallAndBridge"]


def test_a_late_hangup_of_the_millis_leg_does_not_end_the_call_with_the_person() -> None:
    """Once the caller is bridged to the person, LEG-B names the person's leg: a HANGUP naming the Millis leg's
    CallId (reported late) must not hang the caller up."""
    app, store, clock, call_id, bridged = bridged_inbound()
    arguments = ask_chime(store, clock, call_id, TransferRequest(TARGET))
    attrs = answer(app, update_requested(bridged, arguments), clock)["TransactionAttributes"]
    done = later(bridged, "ACTION_SUCCESSFUL", attrs, hung_up(MILLIS_LEG, "LEG-B"), millis="Disconnected")
    attrs = answer(app, done, clock)["TransactionAttributes"]
    success = later(bridged, "ACTION_SUCCESSFUL", attrs, bridge_result(True), target="Connected")
    attrs = answer(app, success, clock)["TransactionAttributes"]
    late = later(bridged, "HANGUP", attrs, hung_up(MILLIS_LEG, "LEG-B"), target="Connected")
    assert types(answer(app, late, clock)) == []
    assert store.items[call_id].status is CallStatus.BRIDGED

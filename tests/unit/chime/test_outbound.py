"""An outbound call at the SIP media application (edges/chime/outbound.py), played with Chime's documented events
(tests/fixtures/chime-events): NEW_OUTBOUND_CALL carrying the ArgumentsMap the stack placed the call with
(``ActionData.Parameters.Arguments``, as sma_NEW_OUTBOUND_CALL_3 shows it), RINGING, CALL_ANSWERED, the
CallAndBridge's ACTION_SUCCESSFUL or ACTION_FAILED, HANGUP and CALL_UPDATE_REQUESTED; each later invocation with
the TransactionAttributes the previous answer set, as Chime carries them."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from millis_sip.core.calls import CallRecord, CallStatus, Direction
from millis_sip.core.sip import parse_sip_uri
from tests.conftest import chime_fixture
from tests.support.clock import FakeClock
from tests.support.fakes import MemoryStore
from tests.unit.chime.rig import VC_US, answer, make_app, types

TX = "8c9372d0-e766-4890-823a-32ca8403201a"  # sma_CALL_ANSWERED_2's TransactionId
FROM, TO = "+15055550100", "+14155550123"


def placed(store: MemoryStore, clock: FakeClock, call_id: str = "out-1") -> CallRecord:
    """The record POST /calls/outbound stores before asking Chime (queued, direction outbound, carrier chime)."""
    now = clock.now()
    record = CallRecord(
        call_id,
        parse_sip_uri(f"sip:call-{call_id}@sip-us-west.example"),
        "us-west",
        CallStatus.QUEUED,
        now,
        now + timedelta(hours=1),
        direction=Direction.OUTBOUND,
        carrier="chime",
        caller_number=FROM,
        dialed_number=TO,
        transaction_id=f"ref-{call_id}",
    )
    store.put_new(record)
    return record


def event(name: str, attributes: dict[str, str] | None = None, action: dict[str, Any] | None = None) -> dict[str, Any]:
    """A documented event, about this call: its TransactionId, the person's numbers, the attributes carried."""
    raw: dict[str, Any] = copy.deepcopy(chime_fixture(name))
    details = raw.setdefault("CallDetails", {})
    details["TransactionId"] = TX
    for leg in details.get("Participants", []):
        if leg.get("ParticipantTag") == "LEG-A":
            leg.update({"To": TO, "From": FROM})
    if attributes is not None:
        details["TransactionAttributes"] = attributes
    if action:
        raw["ActionData"] = action
    return raw


def status_of(store: MemoryStore, call_id: str = "out-1") -> CallStatus:
    return store.items[call_id].status


def new_call(call_id: str = "out-1") -> dict[str, Any]:
    """sma_NEW_OUTBOUND_CALL_1 (the developer guide's CallDetails) with sma_NEW_OUTBOUND_CALL_3's ActionData."""
    arguments = {"Type": "CallCreateRequest", "Parameters": {"Arguments": {"millis_call_id": call_id}}}
    return event("sma_NEW_OUTBOUND_CALL_1.json", action=arguments)


def test_a_call_is_found_by_its_arguments_rings_is_answered_bridged_and_ends() -> None:
    app, _, store, clock = make_app()
    placed(store, clock)
    started = answer(app, new_call(), clock)
    assert types(started) == []
    attributes = started["TransactionAttributes"]
    assert attributes == {"millis_call_id": "out-1", "direction": "outbound"}

    assert types(answer(app, event("sma_RINGING_1.json", attributes), clock)) == []
    assert (store.items["out-1"].status, store.items["out-1"].carrier_call_id) == (CallStatus.RINGING, TX)

    answered = answer(app, event("sma_CALL_ANSWERED_1.json", attributes), clock)
    [bridge] = answered["Actions"]
    assert bridge["Type"] == "CallAndBridge"
    assert bridge["Parameters"]["Endpoints"] == [{"BridgeEndpointType": "AWS", "Arn": VC_US, "Uri": "call-out-1"}]
    assert bridge["Parameters"]["CallerIdNumber"] == FROM  # the number the stack called from
    assert status_of(store) is CallStatus.ANSWERED

    clock.advance(1)
    success = chime_fixture("sma_ACTION_SUCCESSFUL_6.json")["ActionData"]  # the documented CallAndBridge success
    bridged = answer(app, event("sma_ACTION_SUCCESSFUL_6.json", attributes, success), clock)
    assert types(bridged) == [] and status_of(store) is CallStatus.BRIDGED
    attributes = bridged["TransactionAttributes"]

    clock.advance(42)
    agent_gone = {"Type": "Hangup", "Parameters": {"CallId": "call-id-2", "ParticipantTag": "LEG-B"}}
    hangup = event("sma_HANGUP_1.json", attributes, agent_gone)
    hangup["CallDetails"]["Participants"][0]["Status"] = "Connected"  # the person is still on the line
    assert types(answer(app, hangup, clock)) == ["Hangup"]
    record = store.items["out-1"]
    assert (record.status, record.duration_seconds, record.reason) == (CallStatus.ENDED, 42, "hangup_agent")


def test_a_call_nobody_answers_ends_no_answer() -> None:
    app, _, store, clock = make_app()
    placed(store, clock)
    attributes = answer(app, new_call(), clock)["TransactionAttributes"]
    answer(app, event("sma_RINGING_1.json", attributes), clock)
    assert types(answer(app, event("sma_HANGUP_4.json", attributes), clock)) == []  # the documented 486 hang-up
    assert store.items["out-1"].status is CallStatus.NO_ANSWER


def test_a_cancel_request_hangs_the_call_up() -> None:
    app, _, store, clock = make_app()
    placed(store, clock)
    attributes = answer(app, new_call(), clock)["TransactionAttributes"]
    answer(app, event("sma_RINGING_1.json", attributes), clock)
    update = chime_fixture("sma_CALL_UPDATE_REQUESTED_1.json")
    update["ActionData"]["Parameters"]["Arguments"] = {"millis_action": "cancel"}
    update["CallDetails"] = copy.deepcopy(chime_fixture("sma_RINGING_1.json")["CallDetails"])
    update["CallDetails"]["TransactionAttributes"] = attributes
    assert types(answer(app, update, clock)) == ["Hangup"]
    other = copy.deepcopy(update)
    other["ActionData"]["Parameters"]["Arguments"] = {"something": "else"}
    assert types(answer(app, other, clock)) == []  # an update the stack did not ask for changes nothing


def test_a_failed_bridge_fails_the_call_and_the_person_hears_the_failure_message() -> None:
    app, _, store, clock = make_app()
    placed(store, clock)
    attributes = answer(app, new_call(), clock)["TransactionAttributes"]
    answer(app, event("sma_CALL_ANSWERED_1.json", attributes), clock)
    failure = chime_fixture("sma_ACTION_FAILED_2.json")["ActionData"]  # the documented CallAndBridge failure
    failed = event("sma_CALL_ANSWERED_1.json", attributes, failure)
    failed["InvocationEventType"] = "ACTION_FAILED"
    assert types(answer(app, failed, clock)) == ["Speak", "Hangup"]
    record = store.items["out-1"]
    assert record.status is CallStatus.FAILED and (record.reason or "").startswith("millis_leg_")


def test_an_outbound_call_that_is_over_or_unknown_is_hung_up() -> None:
    app, _, store, clock = make_app()
    placed(store, clock)
    assert types(answer(app, new_call("no-such-call"), clock)) == ["Hangup"]
    attributes = answer(app, new_call(), clock)["TransactionAttributes"]
    answer(app, event("sma_HANGUP_2.json", attributes), clock)  # hung up before it was answered
    assert store.items["out-1"].status is CallStatus.NO_ANSWER
    assert types(answer(app, event("sma_CALL_ANSWERED_1.json", attributes), clock)) == ["Hangup"]  # over: no agent

"""The SIP media application (Chime edge): every documented event, malformed and unknown ones, the fallback, ringback,
attributes, the store down."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from millis_sip.core.calls import CallStatus
from millis_sip.core.errors import StoreUnavailable
from millis_sip.core.ports import TransactionState, transaction_key
from millis_sip.core.sip import parse_sip_uri
from millis_sip.edges.chime import attributes
from millis_sip.edges.chime.app import fallback_response
from millis_sip.edges.chime.events import SmaEvent
from tests.conftest import CHIME_FIXTURES, chime_fixture, load_event
from tests.support.clock import T0
from tests.support.fakes import FakeGateway, MemoryStore
from tests.support.sma_schema import validate_response
from tests.unit.chime.rig import (
    CHIME,
    MESSAGES,
    TX,
    answer,
    bridged_call,
    inbound,
    later,
    make_app,
    pending,
    types,
)


@pytest.mark.parametrize("name", ["sma_INVALID_LAMBDA_RESPONSE_1.json", "sma_INVALID_LAMBDA_RESPONSE_2.json"])
def test_an_invalid_response_report_hangs_up(name: str, caplog: pytest.LogCaptureFixture) -> None:
    app, _, _, clock = make_app()
    event = chime_fixture(name)
    result = answer(app, event, clock)
    assert types(result) == ["Hangup"]
    assert any(event["ErrorType"] in str(getattr(r, "error_type", "")) for r in caplog.records)


def test_an_invalid_response_report_fails_the_record() -> None:
    app, _, store, clock = make_app()
    attrs = bridged_call(app, clock)
    answer(app, later("sma-invalid-lambda-response.json", attrs), clock)
    record = store.items["fake-1"]
    assert (record.status, record.reason) == (CallStatus.FAILED, "invalid_lambda_response:InvalidActionParameter")


# What the application answers each documented event with (docs/chime.md, "What the function does with each
# invocation"): the action types, in order.
DOCUMENTED_ANSWERS: dict[str, list[str]] = {
    "sma_ACTION_FAILED_1.json": ["Hangup"],  # PlayAudio failed, caller connected: hang up
    "sma_ACTION_FAILED_2.json": ["Speak", "Hangup"],  # CallAndBridge failed, no call carried: release
    "sma_ACTION_FAILED_3.json": [],  # Speak failed, no caller to hang up
    "sma_ACTION_FAILED_4.json": ["Hangup"],
    "sma_ACTION_FAILED_5.json": [],
    **{f"sma_ACTION_SUCCESSFUL_{i}.json": [] for i in range(1, 10)},  # nothing to do (bridged: record only)
    # The invocations of an outbound call this stack did not place (no millis_call_id among its arguments or
    # attributes): hung up, never left in silence (tests/unit/chime/test_outbound.py has the stack's own).
    "sma_CALL_ANSWERED_1.json": ["Hangup"],
    "sma_CALL_ANSWERED_2.json": ["Hangup"],
    **{f"sma_CALL_UPDATE_REQUESTED_{i}.json": [] for i in range(1, 4)},
    "sma_DIGITS_RECEIVED_1.json": [],
    "sma_HANGUP_1.json": [],  # both legs already disconnected
    "sma_HANGUP_2.json": [],
    "sma_HANGUP_3.json": ["Hangup"],  # the other leg is still up
    "sma_HANGUP_4.json": [],
    "sma_INVALID_LAMBDA_RESPONSE_1.json": ["Hangup"],
    "sma_INVALID_LAMBDA_RESPONSE_2.json": ["Hangup"],
    **{f"sma_NEW_INBOUND_CALL_{i}.json": ["CallAndBridge"] for i in range(1, 8)},
    **{f"sma_NEW_OUTBOUND_CALL_{i}.json": ["Hangup"] for i in range(1, 4)},
    "sma_RINGING_1.json": ["Hangup"],
}


def test_every_documented_event_has_an_expected_answer() -> None:
    assert sorted(DOCUMENTED_ANSWERS) == sorted(p.name for p in CHIME_FIXTURES.glob("sma_*.json"))


@pytest.mark.parametrize(("name", "expected"), sorted(DOCUMENTED_ANSWERS.items()))
def test_every_documented_event_gets_its_answer(name: str, expected: list[str]) -> None:
    app, gateway, _, clock = make_app()
    result = answer(app, chime_fixture(name), clock)
    assert types(result) == expected
    assert len(gateway.calls) == (1 if expected == ["CallAndBridge"] else 0)


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        "NEW_INBOUND_CALL",
        {},
        {"InvocationEventType": "SOMETHING_NEW", "CallDetails": {"Participants": [{"CallId": 5}]}},
        {"InvocationEventType": "NEW_INBOUND_CALL", "CallDetails": {"Participants": "nope"}},
        {"InvocationEventType": "NEW_INBOUND_CALL", "CallDetails": {"TransactionId": 7, "Participants": [{}]}},
        {"InvocationEventType": "HANGUP", "ActionData": [], "CallDetails": None},
        {"InvocationEventType": "ACTION_SUCCESSFUL", "ActionData": {"Type": "CallAndBridge"}},
        {"InvocationEventType": "ACTION_FAILED", "ActionData": {"Type": "CallAndBridge"}, "CallDetails": {}},
    ],
)
def test_malformed_events_get_a_valid_answer(event: object) -> None:
    app, gateway, _, clock = make_app()
    answer(app, event, clock)
    assert gateway.calls == []


def test_unknown_and_ignored_types_get_an_empty_answer() -> None:
    app, _, _, clock = make_app()
    for kind in ("DIGITS_RECEIVED", "ACTION_INTERRUPTED", "CALL_UPDATE_REQUESTED", "X"):
        event = copy.deepcopy(load_event("sma-hangup-caller.json"))
        event["InvocationEventType"] = kind
        assert answer(app, event, clock) == {"SchemaVersion": "1.0", "Actions": []}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sma-new-inbound-call.json", ["Speak", "Hangup"]),  # the failure message, even when nothing else runs
        ("sma-hangup-caller.json", ["Hangup"]),
        ("sma-hangup-agent.json", ["Hangup"]),
        ("sma-bridge-succeeded.json", []),  # never tear down a call that works
        ("sma-bridge-failed.json", ["Hangup"]),
        ("sma-invalid-lambda-response.json", ["Hangup"]),
    ],
)
def test_the_fallback_answer(name: str, expected: list[str]) -> None:
    result = fallback_response(SmaEvent.parse(load_event(name)))
    validate_response(result)
    assert types(result) == expected


def test_a_silenced_failure_message_leaves_the_fallback_a_plain_hang_up() -> None:
    quiet = replace(MESSAGES, failure="")
    result = fallback_response(SmaEvent.parse(load_event("sma-new-inbound-call.json")), quiet)
    assert types(result) == ["Hangup"]
    assert result["Actions"][0]["Parameters"]["SipResponseCode"] == "480"


def test_a_ringback_tone_plays_while_millis_answers() -> None:
    tone = replace(CHIME, ringback=("my-tones", "ringback/us.wav"))
    app, _, _, clock = make_app(chime=tone)
    result = answer(app, inbound(), clock)
    validate_response(result)
    assert result["Actions"][0]["Parameters"]["RingbackTone"] == {
        "Type": "S3",
        "BucketName": "my-tones",
        "Key": "ringback/us.wav",
    }
    plain = answer(make_app()[0], inbound(), clock)
    assert "RingbackTone" not in plain["Actions"][0]["Parameters"]


def test_attributes_stay_within_chimes_limit() -> None:
    record = replace(pending("x" * 128, lookup_key="k" * 128), sip_uri=parse_sip_uri("sip:" + "u" * 200 + "@h.example"))
    assert len(attributes.encode(record, 2, bridged_at=T0)) <= 10


def test_the_response_never_shares_state_between_invocations() -> None:
    app, _, _, clock = make_app()
    first = answer(app, inbound(), clock)
    first["Actions"].append({"Type": "Hangup"})
    assert len(answer(app, later("sma-hangup-caller.json", {}), clock)["Actions"]) == 1


def test_a_retry_of_a_call_whose_uri_did_not_fit_is_released_again() -> None:
    app, gateway, store, clock = make_app(FakeGateway(host="elsewhere.example"))
    answer(app, inbound(), clock)
    store.mark(transaction_key("chime", TX, 1), TransactionState.DONE, millis_call_id="fake-1")
    again = answer(app, inbound(), clock)
    assert again["TransactionAttributes"] == {"failure_reason": "sip_host_mismatch"}
    assert len(gateway.calls) == 1


def test_a_participant_with_an_unknown_tag_is_hung_up_by_call_id_only() -> None:
    # Found by hypothesis: a tag Chime never sends must not reach a Hangup action.
    app, _, _, clock = make_app()
    event = load_event("sma-hangup-caller.json")
    event["CallDetails"]["Participants"][1]["ParticipantTag"] = "0"
    result = answer(app, event, clock)
    assert result["Actions"][0]["Parameters"] == {
        "SipResponseCode": "0",
        "CallId": "d41f7b2c-9a3e-4e6d-8c15-2b7a0f9e4d31",
    }


def test_with_dynamodb_down_the_call_spends_no_more_time_on_it() -> None:
    store = MemoryStore(StoreUnavailable("down"))
    app, gateway, _, clock = make_app(store=store)
    assert types(answer(app, inbound(), clock)) == ["CallAndBridge"]
    # One round trip (the marker put and the two lookups go out together, and all fail), then no claim, no commit.
    assert store.operations == 3
    assert len(gateway.calls) == 1


def test_digits_that_are_not_ascii_are_not_numbers() -> None:
    # Found by hypothesis: "²".isdigit() is True, int("²") raises.
    app, _, _, clock = make_app()
    event = later("sma-bridge-failed.json", {"attempt": "²", "bridged_at": "٣"}, Sequence="²")
    answer(app, event, clock)
    assert SmaEvent.parse({"Sequence": "²"}).sequence is None

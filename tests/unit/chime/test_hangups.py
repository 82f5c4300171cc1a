"""The SIP media application (Chime edge): hang-ups: either side, before the bridge, twice, the documented HANGUP
events."""

from __future__ import annotations

import pytest

from millis_sip.core.calls import CallStatus
from tests.conftest import chime_fixture, load_event
from tests.unit.chime.rig import (
    answer,
    bridged_call,
    hangups,
    later,
    make_app,
)


def test_the_caller_hanging_up_hangs_up_the_agent_and_ends_the_record_with_its_duration() -> None:
    app, _, store, clock = make_app()
    attrs = answer(app, later("sma-bridge-succeeded.json", bridged_call(app, clock)), clock)["TransactionAttributes"]
    clock.t += 95.4
    result = answer(app, later("sma-hangup-caller.json", attrs), clock)
    assert hangups(result) == [("d41f7b2c-9a3e-4e6d-8c15-2b7a0f9e4d31", "LEG-B")]
    record = store.items["fake-1"]
    assert (record.status, record.reason, record.duration_seconds) == (CallStatus.ENDED, "caller_hung_up", 95)


def test_the_agent_hanging_up_hangs_up_the_caller() -> None:
    app, _, store, clock = make_app()
    attrs = answer(app, later("sma-bridge-succeeded.json", bridged_call(app, clock)), clock)["TransactionAttributes"]
    result = answer(app, later("sma-hangup-agent.json", attrs), clock)
    assert hangups(result) == [("5c2e1d3a-0b7f-4a51-9e8d-6f4c3b2a1e09", "LEG-A")]
    assert store.items["fake-1"].reason == "agent_hung_up"


def test_a_caller_who_hangs_up_before_the_bridge_ends_the_record_without_duration() -> None:
    app, _, store, clock = make_app()
    attrs = bridged_call(app, clock)
    event = later("sma-hangup-caller.json", attrs)
    event["CallDetails"]["Participants"] = event["CallDetails"]["Participants"][:1]
    assert answer(app, event, clock)["Actions"] == []
    record = store.items["fake-1"]
    assert (record.status, record.reason, record.duration_seconds) == (
        CallStatus.ENDED,
        "caller_hung_up_before_bridge",
        0,
    )


def test_the_second_hangup_changes_nothing() -> None:
    app, _, store, clock = make_app()
    attrs = answer(app, later("sma-bridge-succeeded.json", bridged_call(app, clock)), clock)["TransactionAttributes"]
    answer(app, later("sma-hangup-caller.json", attrs), clock)
    ended = store.items["fake-1"]
    event = later("sma-hangup-agent.json", attrs)
    for participant in event["CallDetails"]["Participants"]:
        participant["Status"] = "Disconnected"
    clock.t += 3
    assert answer(app, event, clock)["Actions"] == []
    assert store.items["fake-1"] == ended


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sma_HANGUP_1.json", []),  # both legs already disconnected
        ("sma_HANGUP_2.json", []),  # only the caller, gone
        ("sma_HANGUP_3.json", [("call-id-1", "LEG-A")]),  # Leg-B, mixed case, ActionData.Type ReceiveDigits
        ("sma_HANGUP_4.json", []),  # integer SipResponseCode, foreign TransactionAttributes
    ],
)
def test_documented_hangups(name: str, expected: list[tuple[str, str]]) -> None:
    app, _, store, clock = make_app()
    assert hangups(answer(app, chime_fixture(name), clock)) == expected
    assert store.items == {}


def test_the_leg_is_found_by_call_id_when_the_tag_is_missing() -> None:
    app, _, _, clock = make_app()
    event = load_event("sma-hangup-agent.json")
    event["ActionData"]["Parameters"] = {"CallId": "d41f7b2c-9a3e-4e6d-8c15-2b7a0f9e4d31"}
    for participant in event["CallDetails"]["Participants"]:
        participant.pop("Status")
    assert hangups(answer(app, event, clock)) == [("5c2e1d3a-0b7f-4a51-9e8d-6f4c3b2a1e09", "LEG-A")]

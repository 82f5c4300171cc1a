"""The SIP media application (Chime edge): PINs over Chime: asking for the PIN, the right one, a wrong one, none."""

from __future__ import annotations

from millis_sip.core.calls import CallStatus
from tests.unit.chime.rig import (
    MESSAGES,
    answer,
    digits_entered,
    inbound,
    make_app,
    pin_store,
    types,
)


def test_a_pin_registration_makes_chime_ask_for_the_pin_in_the_callers_voice_settings() -> None:
    app, gateway, _, clock = make_app(store=pin_store())
    result = answer(app, inbound(), clock)
    [ask] = result["Actions"]
    assert ask["Type"] == "SpeakAndGetDigits"
    params = ask["Parameters"]
    assert params["CallId"] == "5c2e1d3a-0b7f-4a51-9e8d-6f4c3b2a1e09"
    assert params["SpeechParameters"]["Text"] == MESSAGES.pin_prompt
    assert (params["MinNumberOfDigits"], params["TerminatorDigits"]) == (6, ["#"])
    assert gateway.calls == []


def test_the_right_pin_bridges_to_the_registration() -> None:
    store = pin_store()
    app, gateway, _, clock = make_app(store=store)
    answer(app, inbound(), clock)
    result = answer(app, digits_entered("482913#"), clock)
    assert result["Actions"][0]["Parameters"]["Endpoints"][0]["Uri"] == "call-crm-1"
    assert store.items["crm-1"].status is CallStatus.CLAIMED
    assert gateway.calls == []


def test_a_wrong_pin_asks_again_with_the_retry_prompt() -> None:
    app, _, store, clock = make_app(store=pin_store())
    answer(app, inbound(), clock)
    result = answer(app, digits_entered("000000"), clock)
    [ask] = result["Actions"]
    assert ask["Type"] == "SpeakAndGetDigits"
    assert ask["Parameters"]["SpeechParameters"]["Text"].startswith(MESSAGES.pin_retry)
    assert store.items["crm-1"].pin_failures == 1


def test_no_valid_pin_goes_on_to_the_default_agent() -> None:
    app, gateway, store, clock = make_app(store=pin_store())
    answer(app, inbound(), clock)
    result = answer(app, digits_entered(None), clock)
    assert types(result) == ["CallAndBridge"]
    assert gateway.calls[0]["agent_id"] == "phone-agent"
    assert store.items["crm-1"].status is CallStatus.REGISTERED


def test_digits_after_the_caller_hung_up_change_nothing() -> None:
    app, gateway, _, clock = make_app(store=pin_store())
    answer(app, inbound(), clock)
    event = digits_entered("482913")
    event["CallDetails"]["Participants"][0]["Status"] = "Disconnected"
    assert answer(app, event, clock)["Actions"] == []
    assert gateway.calls == []

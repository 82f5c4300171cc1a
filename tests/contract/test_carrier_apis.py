"""Every request the stack sends a carrier's call-control API, validated by that carrier's own description:
Twilio's OpenAPI (twilio/twilio-oai) served by Prism. A request the description does not allow is answered 422
with the field named, and the test fails."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from millis_sip.adapters.call_control.http import CarrierApi, new_client
from millis_sip.adapters.call_control.twilio import TwilioCalls, describe
from millis_sip.core.errors import CarrierCredentialsRejected, CarrierRefusedCall
from millis_sip.core.ports import PlaceCall
from tests.support.prism import SPECS, prism_mock

pytestmark = pytest.mark.integration
ACCOUNT = "AC" + "0" * 32


@pytest.fixture(scope="module")
def twilio_api() -> Iterator[str]:
    with prism_mock(SPECS / "twilio" / "twilio_api_v2010.calls.json") as base:
        yield base + "/2010-04-01"


def call(machine_detection: str = "off") -> PlaceCall:
    return PlaceCall(
        call_id="call-1",
        to="+14155550123",
        from_="+15055550100",
        answer_url="https://bridge.example/carriers/twilio/outbound?call=call-1&t=tok",
        status_url="https://bridge.example/carriers/twilio/outbound/status?call=call-1&t=tok",
        ring_timeout_seconds=25,
        machine_detection=machine_detection,
    )


def twilio(base: str) -> TwilioCalls:
    api = CarrierApi("twilio", new_client(), describe=describe)
    return TwilioCalls(api, account_sid=ACCOUNT, username=ACCOUNT, password="token", base_url=base)


@pytest.mark.parametrize("machine_detection", ["off", "hangup", "message"])
def test_twilio_accepts_the_calls_the_stack_places(twilio_api: str, machine_detection: str) -> None:
    placed = twilio(twilio_api).place(call(machine_detection), budget=10)
    assert placed.carrier_call_id.startswith("CA")  # the sid of Twilio's documented example


def test_twilio_accepts_the_cancel(twilio_api: str) -> None:
    twilio(twilio_api).cancel("CA" + "a" * 32, budget=10)


def test_the_oracle_refuses_what_twilio_does_not_allow(twilio_api: str) -> None:
    """What a wrong request gets: Prism names the field, and the stack's error says so."""
    api = CarrierApi("twilio", new_client(), describe=describe)
    with pytest.raises(CarrierRefusedCall, match="HTTP 422"):
        api.send(
            "POST",
            f"{twilio_api}/Accounts/{ACCOUNT}/Calls.json",
            budget=10,
            auth=(ACCOUNT, "token"),
            data={"To": "+14155550123", "Timeout": "soon"},
        )


def test_a_request_without_credentials_is_refused_as_twilio_would(twilio_api: str) -> None:
    api = CarrierApi("twilio", new_client(), describe=describe)
    with pytest.raises(CarrierCredentialsRejected, match="HTTP 401"):
        api.send("POST", f"{twilio_api}/Accounts/{ACCOUNT}/Calls.json", budget=10, data={"To": "+14155550123"})

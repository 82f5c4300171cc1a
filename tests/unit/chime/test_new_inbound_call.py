"""The SIP media application (Chime edge): a call comes in: the bridge through the nearest region's Voice Connector, the
answer time, failover, what cannot be placed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from millis_sip.core.calls import CallSource, CallStatus
from millis_sip.core.errors import MillisUnavailable
from millis_sip.core.ports import TransactionState, transaction_key
from millis_sip.core.sip import parse_sip_uri
from millis_sip.core.transaction import STORE_RESERVE_SECONDS
from millis_sip.edges.chime.events import SmaEvent
from tests.conftest import CHIME_FIXTURES, chime_fixture, load_event
from tests.support.fakes import FakeGateway
from tests.unit.chime.rig import (
    CALLER,
    CHIME,
    DIALED,
    EU,
    MESSAGES,
    US,
    VC_EU,
    VC_US,
    Clock,
    answer,
    hangup_caller,
    inbound,
    make_app,
    slow_gateway,
    types,
)


@pytest.mark.parametrize("name", ["sma-new-inbound-call.json", "sma-new-inbound-call-doc-shape.json"])
def test_both_documented_shapes_bridge_through_the_nearest_regions_voice_connector(name: str) -> None:
    app, gateway, store, clock = make_app()
    result = answer(app, load_event(name), clock)
    [action] = result["Actions"]
    params = action["Parameters"]
    assert action["Type"] == "CallAndBridge"
    assert params["Endpoints"] == [{"BridgeEndpointType": "AWS", "Arn": VC_US, "Uri": "call-fake-1"}]
    assert params["CallerIdNumber"] == CALLER
    assert params["CallTimeoutSeconds"] == 30
    tx = load_event(name)["CallDetails"]["TransactionId"]
    assert params["SipHeaders"] == {"X-Millis-Call-Id": "fake-1", "X-Carrier": "chime", "X-Carrier-Call-Id": tx}
    assert gateway.calls == [
        {
            "agent_id": "phone-agent",
            "metadata": {
                "caller_number": CALLER,
                "dialed_number": DIALED,
                "carrier": "chime",
                "carrier_call_id": tx,
                "chime_call_id": "5c2e1d3a-0b7f-4a51-9e8d-6f4c3b2a1e09",
            },
        }
    ]
    attrs = result["TransactionAttributes"]
    assert attrs["millis_call_id"] == "fake-1" and attrs["attempt"] == "1" and len(attrs) <= 10
    record = store.items["fake-1"]
    assert (record.status, record.source, record.transaction_id) == (CallStatus.CLAIMED, CallSource.CHIME, tx)
    assert (record.caller_number, record.dialed_number, record.lookup_key) == (CALLER, DIALED, None)
    assert store.marks[transaction_key("chime", tx, 1)].state is TransactionState.DONE


@pytest.mark.parametrize("path", sorted(CHIME_FIXTURES.glob("sma_NEW_INBOUND_CALL_*.json")), ids=lambda p: p.name)
def test_every_documented_new_inbound_call_gets_a_call_and_bridge(path: Any) -> None:
    app, _, _, clock = make_app()
    result = answer(app, chime_fixture(path.name), clock)
    assert types(result) == ["CallAndBridge"]


def test_a_caller_id_that_is_not_e164_falls_back_to_the_dialed_number() -> None:
    app, _, _, clock = make_app()
    result = answer(app, inbound(From="+1NPANXXXXXX"), clock)
    assert result["Actions"][0]["Parameters"]["CallerIdNumber"] == DIALED


def test_the_millis_budget_is_what_is_left_of_the_answer_time_minus_the_store_reserve() -> None:
    app, gateway, _, clock = make_app()
    event = SmaEvent.parse(inbound())
    app.handle(event, deadline=clock.monotonic() + 3.0)
    assert gateway.budgets == [pytest.approx(3.0 - STORE_RESERVE_SECONDS)]
    assert gateway.regions == [(US, EU)]


def test_a_black_holed_region_fails_over_inside_the_answer_time() -> None:
    clock = Clock()
    app, _, _, _ = make_app(slow_gateway(clock, {"us-west": "blackhole", "eu-west": "ok"}), clock=clock)
    started = clock.t
    result = answer(app, inbound(), clock)
    assert result["Actions"][0]["Parameters"]["Endpoints"][0]["Arn"] == VC_EU
    assert clock.t - started <= CHIME.answer_seconds


def test_both_regions_black_holed_release_the_caller_before_chime_gives_up() -> None:
    clock = Clock()
    app, _, store, _ = make_app(slow_gateway(clock, {"us-west": "blackhole", "eu-west": "blackhole"}), clock=clock)
    started = clock.t
    result = answer(app, inbound(), clock)
    assert clock.t - started <= CHIME.answer_seconds - STORE_RESERVE_SECONDS + 1e-9
    assert types(result) == ["Speak", "Hangup"]
    assert result["TransactionAttributes"] == {"failure_reason": "millis_unavailable"}
    [mark] = store.marks.values()
    assert (mark.state, mark.reason) == (TransactionState.FAILED, "millis_unavailable")


def test_a_refused_region_fails_over_at_once() -> None:
    clock = Clock()
    app, _, _, _ = make_app(slow_gateway(clock, {"us-west": "refuse", "eu-west": "ok"}), clock=clock)
    result = answer(app, inbound(), clock)
    assert result["Actions"][0]["Parameters"]["Endpoints"][0] == {
        "BridgeEndpointType": "AWS",
        "Arn": VC_EU,
        "Uri": "call-eu-west",
    }
    assert clock.t == 1000.0


def test_the_failure_message_can_be_turned_off() -> None:
    quiet = replace(CHIME, messages=replace(MESSAGES, failure=""))
    app, _, _, clock = make_app(FakeGateway(MillisUnavailable("down", [])), chime=quiet)
    result = answer(app, inbound(), clock)
    assert result["Actions"] == [hangup_caller()]


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("sip-{region}.example", None),
        ("somewhere-else.example", "sip_host_mismatch"),
    ],
)
def test_the_sip_host_must_be_the_one_the_voice_connector_routes_to(host: str, reason: str | None) -> None:
    app, _, store, clock = make_app(FakeGateway(host=host))
    result = answer(app, inbound(), clock)
    if reason is None:
        assert types(result) == ["CallAndBridge"]
    else:
        assert types(result) == ["Speak", "Hangup"]
        assert (store.items["fake-1"].status, store.items["fake-1"].reason) == (CallStatus.FAILED, reason)


class LongUserGateway(FakeGateway):
    def __init__(self, user: str) -> None:
        super().__init__(host="sip-{region}.example")
        self.user = user

    def register(self, payload: Any, *, budget: float, regions: Any = None) -> Any:
        registration = super().register(payload, budget=budget, regions=regions)
        return type(registration)(
            registration.call_id,
            parse_sip_uri(f"sip:{self.user}@sip-us-west.example"),
            registration.region,
            registration.attempts,
        )


@pytest.mark.parametrize(
    ("user", "fits"),
    [
        ("a" * 36, True),
        ("call-" + "0" * 31, True),
        ("a" * 37, False),
        ("call#1", False),
        ("call,1", False),
        ("call-&=+$/%-_!~*().", True),
    ],
)
def test_the_uri_user_part_must_fit_a_voice_connector(user: str, fits: bool) -> None:
    app, _, store, clock = make_app(LongUserGateway(user))
    result = answer(app, inbound(), clock)
    if fits:
        assert result["Actions"][0]["Parameters"]["Endpoints"][0]["Uri"] == user
    else:
        assert types(result) == ["Speak", "Hangup"]
        assert store.items["fake-1"].reason == "sip_user_not_routable"


def test_without_a_default_agent_the_caller_is_released_and_millis_is_not_called() -> None:
    app, gateway, _, clock = make_app(agent=None)
    result = answer(app, inbound(), clock)
    assert types(result) == ["Speak", "Hangup"]
    assert result["TransactionAttributes"] == {"failure_reason": "no_agent"}
    assert gateway.calls == []


def test_without_voice_connectors_the_caller_is_released() -> None:
    app, gateway, _, clock = make_app(chime=replace(CHIME, routes={}))
    assert answer(app, inbound(), clock)["TransactionAttributes"] == {"failure_reason": "no_voice_connector"}
    assert gateway.calls == []


def test_only_regions_with_a_voice_connector_are_tried() -> None:
    app, gateway, _, clock = make_app(chime=replace(CHIME, routes={EU: CHIME.routes[EU]}))
    answer(app, inbound(), clock)
    assert gateway.regions == [(EU,)]

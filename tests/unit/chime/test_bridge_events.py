"""The SIP media application (Chime edge): how the bridge went: bridged, failed (the other region once), other failed
actions."""

from __future__ import annotations

import pytest

from millis_sip.core.calls import CallStatus
from millis_sip.core.errors import StoreUnavailable
from millis_sip.edges.chime.events import SmaEvent
from tests.conftest import load_event
from tests.support.fakes import MemoryStore
from tests.support.sma_schema import validate_response
from tests.unit.chime.rig import (
    CALLER,
    EU,
    VC_EU,
    answer,
    bridged_call,
    hangup_caller,
    later,
    make_app,
    pending,
    types,
)


def test_bridge_success_marks_the_record_bridged_with_the_b_leg() -> None:
    app, _, store, clock = make_app()
    attrs = bridged_call(app, clock)
    clock.t += 2
    result = answer(app, later("sma-bridge-succeeded.json", attrs), clock)
    assert result["Actions"] == []
    assert result["TransactionAttributes"]["bridged_at"] == str(int(clock.now().timestamp() * 1000))
    record = store.items["fake-1"]
    assert record.status is CallStatus.BRIDGED
    assert record.leg_b_call_id == "d41f7b2c-9a3e-4e6d-8c15-2b7a0f9e4d31"
    assert record.bridged_at == clock.now()


def test_a_bridge_success_for_a_record_never_stored_writes_it_from_the_attributes() -> None:
    app, _, store, clock = make_app(store=MemoryStore(StoreUnavailable("down")))
    attrs = bridged_call(app, clock)
    store.fail_with = None
    answer(app, later("sma-bridge-succeeded.json", attrs), clock)
    record = store.items["fake-1"]
    assert (record.status, str(record.sip_uri), record.caller_number) == (
        CallStatus.BRIDGED,
        "sip:call-fake-1@sip-us-west.example",
        CALLER,
    )


def test_a_failed_bridge_tries_the_other_region_once_then_releases() -> None:
    app, gateway, store, clock = make_app()
    attrs = bridged_call(app, clock)
    second = answer(app, later("sma-bridge-failed.json", attrs), clock)
    assert second["Actions"][0]["Parameters"]["Endpoints"][0]["Arn"] == VC_EU
    assert second["TransactionAttributes"]["attempt"] == "2"
    assert gateway.regions[-1] == (EU,)
    first = store.items["fake-1"]
    assert (first.status, first.reason) == (CallStatus.FAILED, "bridge_failed:CallNotAnswered")
    third = answer(app, later("sma-bridge-failed.json", second["TransactionAttributes"]), clock)
    assert types(third) == ["Speak", "Hangup"]
    assert store.items["fake-2"].status is CallStatus.FAILED
    assert len(gateway.calls) == 2


def test_a_claimed_http_registration_is_not_re_registered_when_its_bridge_fails() -> None:
    store = MemoryStore()
    store.items["crm-1"] = pending("crm-1")
    app, gateway, _, clock = make_app(store=store)
    attrs = bridged_call(app, clock)
    assert types(answer(app, later("sma-bridge-failed.json", attrs), clock)) == ["Speak", "Hangup"]
    assert gateway.calls == []


def test_a_failed_bridge_without_time_left_releases_the_caller() -> None:
    app, gateway, _, clock = make_app()
    attrs = bridged_call(app, clock)
    event = SmaEvent.parse(later("sma-bridge-failed.json", attrs))
    result = app.handle(event, deadline=clock.monotonic() + 0.3)
    validate_response(result)
    assert types(result) == ["Speak", "Hangup"]
    assert len(gateway.calls) == 1


@pytest.mark.parametrize("failed_action", ["Speak", "PlayAudio", "actionType"])
def test_any_other_failed_action_hangs_up_the_caller(failed_action: str) -> None:
    app, _, _, clock = make_app()
    event = load_event("sma-bridge-failed.json")
    event["ActionData"] = {"Type": failed_action, "Parameters": {}, "ErrorType": "SystemException"}
    result = answer(app, event, clock)
    assert result["Actions"] == [hangup_caller()]


def test_a_failed_hangup_is_not_answered_with_another_hangup() -> None:
    app, _, _, clock = make_app()
    event = load_event("sma-bridge-failed.json")
    event["ActionData"] = {"Type": "Hangup", "Parameters": {}, "ErrorType": "SystemException"}
    assert answer(app, event, clock)["Actions"] == []

"""The SIP media application (Chime edge): pending registrations claimed by a call, and retried invocations answered
once."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from millis_sip.core.calls import CallerVerification, CallStatus
from millis_sip.core.errors import MillisUnavailable, StoreUnavailable
from millis_sip.core.ports import TransactionState, transaction_key
from millis_sip.core.sip import parse_sip_uri
from tests.conftest import load_event
from tests.support.fakes import FakeGateway, MemoryStore
from tests.unit.chime.rig import (
    CALLER,
    CHIME,
    DIALED,
    TX,
    VC_EU,
    answer,
    inbound,
    make_app,
    pending,
    types,
)


def test_a_pending_http_registration_for_the_caller_is_claimed_instead_of_registering() -> None:
    store = MemoryStore()
    store.items["crm-1"] = pending("crm-1")
    store.items["crm-old"] = pending("crm-old", age=600)
    app, gateway, _, clock = make_app(store=store)
    result = answer(app, inbound(), clock)
    assert gateway.calls == []
    endpoint = result["Actions"][0]["Parameters"]["Endpoints"][0]
    assert endpoint == {"BridgeEndpointType": "AWS", "Arn": VC_EU, "Uri": "call-crm-1"}
    claimed = store.items["crm-1"]
    assert claimed.status is CallStatus.CLAIMED
    assert claimed.transaction_id == load_event("sma-new-inbound-call.json")["CallDetails"]["TransactionId"]
    assert (claimed.caller_number, claimed.agent_id) == (CALLER, "crm-agent")
    assert store.items["crm-old"].status is CallStatus.REGISTERED
    assert result["TransactionAttributes"]["source"] == "http"


def test_the_dialed_number_is_the_second_choice_and_expired_or_used_ones_are_skipped() -> None:
    store = MemoryStore()
    store.items["expired"] = pending("expired", age=4000)
    store.items["used"] = replace(pending("used"), status=CallStatus.CLAIMED, transaction_id="other")
    store.items["by-dialed"] = pending("by-dialed", lookup_key=DIALED, verification=CallerVerification.DIALED_NUMBER)
    app, gateway, _, clock = make_app(store=store)
    answer(app, inbound(), clock)
    assert store.items["by-dialed"].status is CallStatus.CLAIMED
    assert gateway.calls == []


def test_a_pending_registration_that_cannot_be_routed_is_left_alone() -> None:
    store = MemoryStore()
    store.items["crm-1"] = replace(pending("crm-1"), sip_uri=parse_sip_uri("sip:call-crm-1@elsewhere.example"))
    app, gateway, _, clock = make_app(store=store)
    assert types(answer(app, inbound(), clock)) == ["CallAndBridge"]
    assert store.items["crm-1"].status is CallStatus.REGISTERED
    assert len(gateway.calls) == 1


def test_a_retried_invocation_reuses_the_first_registration() -> None:
    app, gateway, _, clock = make_app()
    first = answer(app, inbound(), clock)
    clock.t += 5
    second = answer(app, inbound(), clock)
    assert second["Actions"] == first["Actions"]
    assert len(gateway.calls) == 1


def test_a_retry_after_a_failure_fails_again_without_calling_millis_twice() -> None:
    app, gateway, _, clock = make_app(FakeGateway(MillisUnavailable("down", [])))
    answer(app, inbound(), clock)
    again = answer(app, inbound(), clock)
    assert again["TransactionAttributes"] == {"failure_reason": "millis_unavailable"}
    assert len(gateway.calls) == 1


def test_a_retry_waits_for_the_first_invocation_and_uses_its_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    app, gateway, store, clock = make_app()
    key = transaction_key("chime", TX, 1)
    store.mark(key, TransactionState.PENDING, lease_until=clock.now() + timedelta(seconds=2))
    record = replace(pending("first"), status=CallStatus.CLAIMED, millis_region="us-west")
    record = replace(record, sip_uri=parse_sip_uri("sip:call-first@sip-us-west.example"), transaction_id=TX)
    sleep = clock.sleep

    def first_finishes(seconds: float) -> None:
        sleep(seconds)
        if clock.slept >= 0.5:
            store.items["first"] = record
            store.mark(key, TransactionState.DONE, millis_call_id="first")

    monkeypatch.setattr(clock, "sleep", first_finishes)
    result = answer(app, inbound(), clock)
    assert result["Actions"][0]["Parameters"]["Endpoints"][0]["Uri"] == "call-first"
    assert gateway.calls == []


def test_a_retry_whose_first_invocation_never_finishes_is_released_by_the_deadline() -> None:
    app, gateway, store, clock = make_app()
    store.mark(
        transaction_key("chime", TX, 1), TransactionState.PENDING, lease_until=clock.now() + timedelta(seconds=60)
    )
    started = clock.t
    result = answer(app, inbound(), clock)
    assert result["TransactionAttributes"] == {"failure_reason": "retry_in_progress"}
    assert clock.t - started <= CHIME.answer_seconds
    assert gateway.calls == []


def test_an_abandoned_transaction_is_taken_over_once_its_lease_is_over() -> None:
    app, gateway, store, clock = make_app()
    store.mark(
        transaction_key("chime", TX, 1), TransactionState.PENDING, lease_until=clock.now() - timedelta(seconds=1)
    )
    assert types(answer(app, inbound(), clock)) == ["CallAndBridge"]
    assert len(gateway.calls) == 1


def test_dynamodb_down_does_not_drop_the_call() -> None:
    app, _, store, clock = make_app(store=MemoryStore(StoreUnavailable("down")))
    result = answer(app, inbound(), clock)
    assert types(result) == ["CallAndBridge"]
    assert result["TransactionAttributes"]["millis_call_id"] == "fake-1"
    assert store.items == {}

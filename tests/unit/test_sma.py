"""The SIP media application (Chime edge) on the core's router, against in-memory ports and the fake clock:
every invocation type, the deadline, routing, retries, claims and hang-ups. Every answer is checked against
the documented response schema."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest

from millis_sip.adapters.millis_http import HttpMillisGateway
from millis_sip.config import ChimeSettings, VoiceRoute
from millis_sip.core.calls import CallerVerification, CallRecord, CallSource, CallStatus
from millis_sip.core.errors import MillisUnavailable, StoreUnavailable
from millis_sip.core.lifecycle import PhoneCalls
from millis_sip.core.ports import NoMetrics, TransactionState, transaction_key
from millis_sip.core.regions import MillisRegion
from millis_sip.core.registration import MillisRegistrations, hash_pin
from millis_sip.core.router import CallRouter
from millis_sip.core.sip import parse_sip_uri
from millis_sip.core.transaction import STORE_RESERVE_SECONDS
from millis_sip.edges.chime import attributes
from millis_sip.edges.chime.app import SipMediaApp, fallback_response
from millis_sip.edges.chime.events import SmaEvent
from millis_sip.messages import Messages
from tests.conftest import CHIME_FIXTURES, chime_fixture, load_event
from tests.support.clock import T0, FakeClock
from tests.support.fakes import FakeGateway, MemoryNumberRoutes, MemoryStore
from tests.support.sma_schema import validate_response

US, EU = MillisRegion.US_WEST, MillisRegion.EU_WEST
VC_US = "arn:aws:chime:us-west-2:111122223333:vc/uswest0000000000000000a"
VC_EU = "arn:aws:chime:us-west-2:111122223333:vc/euwest0000000000000000b"
MESSAGES = Messages(
    failure="Sorry, the assistant is not available.",
    pin_prompt="Please enter your PIN.",
    pin_retry="Wrong PIN.",
    voice="Joanna",
    language="en-US",
    engine="neural",
)
CHIME = ChimeSettings(
    routes={US: VoiceRoute(US, VC_US, "sip-us-west.example"), EU: VoiceRoute(EU, VC_EU, "sip-eu-west.example")},
    bridge_timeout_seconds=30,
    answer_seconds=4.0,
    messages=MESSAGES,
)
CALLER, DIALED = "+14155550100", "+15055550123"
TX = load_event("sma-new-inbound-call.json")["CallDetails"]["TransactionId"]
Clock = FakeClock


def make_app(
    gateway: Any = None,
    store: MemoryStore | None = None,
    *,
    chime: ChimeSettings = CHIME,
    agent: str | None = "phone-agent",
    clock: FakeClock | None = None,
    numbers: MemoryNumberRoutes | None = None,
) -> tuple[SipMediaApp, FakeGateway, MemoryStore, FakeClock]:
    gateway = gateway if gateway is not None else FakeGateway(host="sip-{region}.example")
    store = store if store is not None else MemoryStore()
    clock = clock or FakeClock()
    router = CallRouter(
        MillisRegistrations(gateway),
        store,
        numbers if numbers is not None else MemoryNumberRoutes(),
        clock=clock,
        region_order=(US, EU),
        ttl_seconds=3600,
        default_agent_id=agent,
    )
    calls = PhoneCalls(store, clock=clock, ttl_seconds=3600)
    return SipMediaApp(router, calls, chime, metrics=NoMetrics()), gateway, store, clock


def answer(app: SipMediaApp, event: dict[str, Any] | object, clock: Clock) -> dict[str, Any]:
    result = app.handle(SmaEvent.parse(event), deadline=clock.monotonic() + CHIME.answer_seconds)
    validate_response(result)
    return result


def inbound(**participant: str) -> dict[str, Any]:
    event = load_event("sma-new-inbound-call.json")
    event["CallDetails"]["Participants"][0].update(participant)
    return event


def types(result: dict[str, Any]) -> list[str]:
    return [a["Type"] for a in result["Actions"]]


def later(name: str, attrs: dict[str, str], **changes: Any) -> dict[str, Any]:
    event = load_event(name)
    event["CallDetails"]["TransactionAttributes"] = attrs
    event.update(changes)
    return event


def pending(
    call_id: str = "crm-1",
    *,
    lookup_key: str = CALLER,
    region: str = "eu-west",
    age: int = 60,
    verification: CallerVerification = CallerVerification.TRUST_CALLER_ID,
    pin: str | None = None,
) -> CallRecord:
    """A registration waiting for a phone call. These tests are about claiming; whether a caller may claim one is
    tested with each CallerVerification below (the default here trusts caller ID)."""
    return CallRecord(
        call_id=call_id,
        sip_uri=parse_sip_uri(f"sip:call-{call_id}@sip-{region}.example"),
        millis_region=region,
        status=CallStatus.REGISTERED,
        created_at=T0 - timedelta(seconds=age),
        expires_at=T0 + timedelta(seconds=3600 - age),
        lookup_key=lookup_key,
        agent_id="crm-agent",
        caller_verification=verification,
        pin_hash=hash_pin(call_id, pin) if pin is not None else None,
    )


# --- NEW_INBOUND_CALL -----------------------------------------------------------------------------


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


def slow_gateway(clock: Clock, behaviour: dict[str, str]) -> HttpMillisGateway:
    """A real HttpMillisGateway whose transport moves the fake clock: 'blackhole' spends the whole read
    timeout and times out, 'refuse' fails at once, 'ok' answers."""

    def handle(request: httpx.Request) -> httpx.Response:
        region = request.url.host.split(".")[0]
        what = behaviour[region]
        if what == "blackhole":
            clock.t += request.extensions["timeout"]["read"]
            raise httpx.ReadTimeout("timed out", request=request)
        if what == "refuse":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(
            200, json={"call_id": f"c-{region}", "sip_uri": f"sip:call-{region}@sip-{region}.example"}
        )

    return HttpMillisGateway(
        httpx.Client(transport=httpx.MockTransport(handle)),
        {US: "https://us-west.millis.test", EU: "https://eu-west.millis.test"},
        (US, EU),
        lambda: "key",
        connect_timeout=1.0,
        read_timeout=2.0,
        clock=clock,
    )


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
    assert result["Actions"] == [
        {
            "Type": "Hangup",
            "Parameters": {
                "SipResponseCode": "480",
                "CallId": "5c2e1d3a-0b7f-4a51-9e8d-6f4c3b2a1e09",
                "ParticipantTag": "LEG-A",
            },
        }
    ]


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


# --- claims -----------------------------------------------------------------------------------------


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


# --- retried invocations -----------------------------------------------------------------------------


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


# --- later events ---------------------------------------------------------------------------------------


def bridged_call(app: SipMediaApp, clock: Clock) -> dict[str, str]:
    attrs: dict[str, str] = answer(app, inbound(), clock)["TransactionAttributes"]
    return attrs


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
    assert result["Actions"] == [
        {
            "Type": "Hangup",
            "Parameters": {
                "SipResponseCode": "480",
                "CallId": "5c2e1d3a-0b7f-4a51-9e8d-6f4c3b2a1e09",
                "ParticipantTag": "LEG-A",
            },
        }
    ]


def test_a_failed_hangup_is_not_answered_with_another_hangup() -> None:
    app, _, _, clock = make_app()
    event = load_event("sma-bridge-failed.json")
    event["ActionData"] = {"Type": "Hangup", "Parameters": {}, "ErrorType": "SystemException"}
    assert answer(app, event, clock)["Actions"] == []


# --- hang-ups -----------------------------------------------------------------------------------------------


def hangups(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["Parameters"].get("CallId"), a["Parameters"].get("ParticipantTag")) for a in result["Actions"]]


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


# --- INVALID_LAMBDA_RESPONSE and everything else ----------------------------------------------------------


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
    "sma_CALL_ANSWERED_1.json": [],
    "sma_CALL_ANSWERED_2.json": [],
    **{f"sma_CALL_UPDATE_REQUESTED_{i}.json": [] for i in range(1, 4)},
    "sma_DIGITS_RECEIVED_1.json": [],
    "sma_HANGUP_1.json": [],  # both legs already disconnected
    "sma_HANGUP_2.json": [],
    "sma_HANGUP_3.json": ["Hangup"],  # the other leg is still up
    "sma_HANGUP_4.json": [],
    "sma_INVALID_LAMBDA_RESPONSE_1.json": ["Hangup"],
    "sma_INVALID_LAMBDA_RESPONSE_2.json": ["Hangup"],
    **{f"sma_NEW_INBOUND_CALL_{i}.json": ["CallAndBridge"] for i in range(1, 8)},
    **{f"sma_NEW_OUTBOUND_CALL_{i}.json": [] for i in range(1, 4)},
    "sma_RINGING_1.json": [],
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
    for kind in ("RINGING", "NEW_OUTBOUND_CALL", "CALL_ANSWERED", "DIGITS_RECEIVED", "ACTION_INTERRUPTED", "X"):
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


# --- PINs over Chime ----------------------------------------------------------------------------------------


def digits_entered(digits: str | None, attrs: dict[str, str] | None = None) -> dict[str, Any]:
    """Chime's answer to SpeakAndGetDigits: ACTION_SUCCESSFUL with ReceivedDigits, or ACTION_FAILED without."""
    event = load_event("sma-bridge-succeeded.json" if digits is not None else "sma-bridge-failed.json")
    event["CallDetails"]["Participants"] = event["CallDetails"]["Participants"][:1]
    event["CallDetails"]["TransactionAttributes"] = attrs or {}
    event["ActionData"] = {
        "Type": "SpeakAndGetDigits",
        "Parameters": {"CallId": "5c2e1d3a-0b7f-4a51-9e8d-6f4c3b2a1e09"},
    }
    if digits is not None:
        event["ActionData"]["ReceivedDigits"] = digits
    else:
        event["ActionData"]["ErrorType"] = "InvalidDigitsReceived"
    return event


def pin_store() -> MemoryStore:
    store = MemoryStore()
    store.items["crm-1"] = pending("crm-1", verification=CallerVerification.PIN, pin="482913")
    return store


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

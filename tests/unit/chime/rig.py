"""What the SIP media application tests share: the application on the core's router over in-memory ports and
the fake clock, the documented events, and builders of what it answers. Every answer is checked against the
documented response schema."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from millis_sip.adapters.millis_http import HttpMillisGateway
from millis_sip.config import ChimeSettings, VoiceRoute
from millis_sip.core.calls import CallerVerification, CallRecord, CallStatus
from millis_sip.core.lifecycle import PhoneCalls
from millis_sip.core.outbound import OutboundAnswers
from millis_sip.core.ports import NoMetrics
from millis_sip.core.regions import MillisRegion
from millis_sip.core.registration import MillisRegistrations, hash_pin
from millis_sip.core.router import CallRouter
from millis_sip.core.sip import parse_sip_uri
from millis_sip.core.transfer import TransferReports
from millis_sip.edges.chime.app import SipMediaApp
from millis_sip.edges.chime.events import SmaEvent
from millis_sip.messages import Messages
from tests.conftest import load_event
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
    outbound = OutboundAnswers(store, clock=clock, ttl_seconds=3600)
    transfers = TransferReports(store, clock=clock)
    app = SipMediaApp(router, calls, chime, metrics=NoMetrics(), outbound=outbound, transfers=transfers)
    return app, gateway, store, clock


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


def bridged_call(app: SipMediaApp, clock: Clock) -> dict[str, str]:
    attrs: dict[str, str] = answer(app, inbound(), clock)["TransactionAttributes"]
    return attrs


def hangups(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["Parameters"].get("CallId"), a["Parameters"].get("ParticipantTag")) for a in result["Actions"]]


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


LEG_A_CALL_ID = "5c2e1d3a-0b7f-4a51-9e8d-6f4c3b2a1e09"  # the caller's leg in the documented events


def hangup_caller(code: str = "480") -> dict[str, Any]:
    """The Hangup the application answers when it releases the caller of the documented events (LEG-A)."""
    return {
        "Type": "Hangup",
        "Parameters": {
            "SipResponseCode": code,
            "CallId": "5c2e1d3a-0b7f-4a51-9e8d-6f4c3b2a1e09",
            "ParticipantTag": "LEG-A",
        },
    }

"""Outbound calls end to end: POST /calls/outbound through the local API (both functions, DynamoDB Local, the Millis
simulator), each carrier played by its local stand-in (dev/carrier_api.py: the REST request checked as the
carrier checks it, then the callbacks and the answer URL signed with the carrier's own signer); every move of the
record read back; the guards and the carrier's refusals."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest

from dev.carrier_api import (
    CallControlStandIn,
    ChimeStandIn,
    PlivoStandIn,
    SignalWireStandIn,
    TelnyxStandIn,
    TwilioStandIn,
    VonageStandIn,
)
from dev.carrier_signing import LOCAL_KEYS
from dev.local_api import LocalApi
from dev.millis_simulator import MillisSimulator
from tests.support.carrier_requests import vonage_key
from tests.support.rig import TWILIO_AUTH_TOKEN

pytestmark = pytest.mark.integration
API_KEY = "outbound-key"
ACCOUNT = "AC" + "5" * 32
PLIVO_AUTH_ID = "MAZDQ1ZWYXNJAXNZTEST"
PLIVO_AUTH_TOKEN = "integration-plivo-auth-token"
TELNYX_ACCOUNT = "f5586561-8ff0-4291-a51b-c7dfe4139ff9"
TELNYX_API_KEY = "KEYintegration-telnyx-api-key"
VONAGE_APP = "5ca1ab1e-0000-4000-8000-0000000000aa"
VONAGE_SECRET = "integration-vonage-signature-secret-0123456789"
SIP_MEDIA_APPLICATION = "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9"
SIGNALWIRE_PROJECT = "6bfbbe86-a901-4197-8759-2a0de1fa319d"  # the project id form of signalwire-python's tests
SIGNALWIRE_TOKEN, SIGNALWIRE_SIGNING_KEY = "PTintegration-signalwire-api-token", "PSKintegration-signing-key"
CARRIERS = ("twilio", "plivo", "telnyx", "vonage", "chime", "signalwire")


class Outbound:
    def __init__(self, server: LocalApi, carriers: dict[str, CallControlStandIn], sim: MillisSimulator) -> None:
        self.server, self.carriers, self.sim = server, carriers, sim
        self.twilio = carriers["twilio"]
        self.http = httpx.Client(base_url=server.url, headers={"x-api-key": API_KEY}, timeout=30)
        self.from_ = "+1505555" + str(uuid.uuid4().int)[:4]
        route = self.http.put(
            f"/numbers/{self.from_}", json={"agent_id": "sales-agent", "outbound_carriers": list(CARRIERS)}
        )
        assert route.status_code in (200, 201), route.text

    def place(self, to: str, carrier: str = "twilio", **body: Any) -> httpx.Response:
        return self.http.post("/calls/outbound", json={"to": to, "from": self.from_, "carrier": carrier, **body})

    def settled(self, call_id: str, *statuses: str, seconds: float = 10) -> dict[str, Any]:
        """The call's record once its status is one of ``statuses``."""
        deadline = time.monotonic() + seconds
        while True:
            record: dict[str, Any] = self.http.get(f"/calls/{call_id}").json()
            if record.get("status") in statuses or time.monotonic() > deadline:
                return record
            time.sleep(0.05)


@pytest.fixture
def outbound(
    make_api: Callable[..., ModuleType],
    make_inbound: Callable[..., ModuleType],
    make_sma: Callable[..., ModuleType],
    sim: MillisSimulator,
) -> Iterator[Outbound]:
    twilio = TwilioStandIn(ACCOUNT, TWILIO_AUTH_TOKEN)
    plivo = PlivoStandIn(PLIVO_AUTH_ID, PLIVO_AUTH_TOKEN)
    telnyx = TelnyxStandIn(TELNYX_ACCOUNT, TELNYX_API_KEY, LOCAL_KEYS.telnyx_key)
    pem, public = vonage_key()
    vonage = VonageStandIn(VONAGE_APP, public, VONAGE_SECRET)
    functions: dict[str, ModuleType] = {}
    chime = ChimeStandIn(SIP_MEDIA_APPLICATION, lambda e, c: functions["sma"].lambda_handler(e, c))
    signalwire = SignalWireStandIn(SIGNALWIRE_PROJECT, SIGNALWIRE_TOKEN, SIGNALWIRE_SIGNING_KEY)
    with twilio.running(), plivo.running(), telnyx.running(), vonage.running(), chime.running(), signalwire.running():
        server = LocalApi(
            lambda e, c: functions["api"].lambda_handler(e, c),
            api_key=API_KEY,
            port=0,
            functions={"InboundFunction": lambda e, c: functions["inbound"].lambda_handler(e, c)},
        )
        settings = {
            "PUBLIC_BASE_URL": server.url,
            "OUTBOUND_ALLOWED_PREFIXES": "+1",
            "OUTBOUND_MAX_RINGING": "50",
            "TWILIO_ACCOUNT_SID": ACCOUNT,
            # The Twilio credential's secret holds SignalWire's signing key on its own line, as docs/carriers/twilio.md
            # says: its callbacks are checked with it.
            "TWILIO_AUTH_TOKEN": f"{TWILIO_AUTH_TOKEN}\n{SIGNALWIRE_SIGNING_KEY}",
            "TWILIO_API_URL": twilio.url,
            "SIGNALWIRE_SPACE_URL": signalwire.url,
            "SIGNALWIRE_PROJECT_ID": SIGNALWIRE_PROJECT,
            "SIGNALWIRE_API_TOKEN": SIGNALWIRE_TOKEN,
            "PLIVO_AUTH_ID": PLIVO_AUTH_ID,
            "PLIVO_AUTH_TOKEN": PLIVO_AUTH_TOKEN,
            "PLIVO_API_URL": plivo.url,
            "TELNYX_ACCOUNT_SID": TELNYX_ACCOUNT,
            "TELNYX_APPLICATION_ID": "1293384261075731499",
            "TELNYX_API_KEY": TELNYX_API_KEY,
            "TELNYX_API_URL": telnyx.url,
            "TELNYX_PUBLIC_KEY": LOCAL_KEYS.env()["TELNYX_PUBLIC_KEY"],
            "VONAGE_APPLICATION_ID": VONAGE_APP,
            "VONAGE_PRIVATE_KEY": pem,
            "VONAGE_API_URL": vonage.url,
            "VONAGE_SIGNATURE_SECRET": VONAGE_SECRET,
            "CHIME_SIP_MEDIA_APPLICATION_ID": SIP_MEDIA_APPLICATION,
            "AWS_ENDPOINT_URL_CHIME_SDK_VOICE": chime.url,  # botocore's endpoint for chime-sdk-voice
        }
        functions["api"] = make_api(**settings)
        functions["inbound"] = make_inbound(**settings)
        functions["sma"] = make_sma(**settings)
        stand_ins = {
            "twilio": twilio,
            "plivo": plivo,
            "telnyx": telnyx,
            "vonage": vonage,
            "chime": chime,
            "signalwire": signalwire,
        }
        with server:
            yield Outbound(server, stand_ins, sim)


def to(suffix: str = "") -> str:
    number = "+1415" + str(uuid.uuid4().int)[:7]
    return number[: len(number) - len(suffix)] + suffix if suffix else number


# What each carrier was asked for machine detection (docs/outbound.md, "Machines").
DETECTION: dict[str, tuple[str, dict[str, Any]]] = {
    "twilio": ("MachineDetection", {"hangup": ["Enable"], "message": ["DetectMessageEnd"]}),
    "plivo": ("machine_detection", {"hangup": "hangup", "message": "true"}),
    "telnyx": ("MachineDetection", {"hangup": "Enable", "message": "DetectMessageEnd"}),
    "vonage": ("machine_detection", {"hangup": "hangup", "message": "continue"}),
    "signalwire": ("MachineDetection", {"hangup": ["Enable"], "message": ["DetectMessageEnd"]}),
}
DETECTING = tuple(carrier for carrier in CARRIERS if carrier in DETECTION)  # Chime has no machine detection
MACHINE_WORD = {
    "twilio": "machine_start",
    "plivo": "machine",
    "telnyx": "machine",
    "vonage": "machine",
    "signalwire": "machine_start",
}


@pytest.mark.parametrize("carrier", CARRIERS)
def test_a_person_answers_is_bridged_to_millis_and_the_record_closes_with_the_duration(
    outbound: Outbound, carrier: str
) -> None:
    stand_in = outbound.carriers[carrier]
    placed = outbound.place(to(), carrier, metadata={"order": "A-17"})
    assert placed.status_code == 202, placed.text
    call = placed.json()
    assert (call["status"], call["direction"], call["carrier"]) == ("queued", "outbound", carrier)
    assert call["from"] == outbound.from_
    if carrier == "telnyx":  # Telnyx's answer names no call id: its first status callback brings it
        assert call["carrier_call_id"] is None
    [registration] = outbound.sim.registrations()[-1:]
    assert registration.body["agent_id"] == "sales-agent"
    assert registration.body["metadata"]["order"] == "A-17"
    assert registration.body["metadata"]["direction"] == "outbound"
    record = outbound.settled(call["call_id"], "ended")
    assert record["status"] == "ended", (record, stand_in.answers)
    # Twilio's dial action names the Millis leg's duration; Plivo's hangup URL the call's (answer to hang-up).
    talked = {
        "twilio": stand_in.talk_seconds,
        "plivo": stand_in.talk_seconds + 1,
        "telnyx": stand_in.talk_seconds,
        "vonage": stand_in.talk_seconds,
        "signalwire": stand_in.talk_seconds,
        "chime": 0,  # Chime reports no duration: the stack's own clock, bridged to hung up (the stand-in's pause)
    }
    assert record["duration_seconds"] == talked[carrier]
    assert record["ringing_at"] and record["answered_at"] and record["bridged_at"]
    played = stand_in.calls[record["carrier_call_id"]]
    # The carrier was told to dial the registration's SIP URI (Chime: its user part, through the Voice Connector).
    dialed = call["sip_uri"].removeprefix("sip:").split("@")[0] if carrier == "chime" else call["sip_uri"]
    assert f"dialed {dialed}" in played.events


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize(("suffix", "status"), [("0000", "no_answer"), ("1111", "busy")])
def test_nobody_answering_or_a_busy_line_closes_the_record(
    outbound: Outbound, carrier: str, suffix: str, status: str
) -> None:
    if carrier == "chime":
        status = "no_answer"  # Chime's HANGUP says nothing more of a call nobody answered
    call = outbound.place(to(suffix), carrier).json()
    record = outbound.settled(call["call_id"], status)
    assert record["status"] == status and record["ended_at"], record


@pytest.mark.parametrize("carrier", DETECTING)
def test_a_machine_is_hung_up_on_when_asked_and_told_to_the_agent_otherwise(outbound: Outbound, carrier: str) -> None:
    stand_in, (field, asked), word = outbound.carriers[carrier], DETECTION[carrier], MACHINE_WORD[carrier]
    hang = outbound.place(to("2222"), carrier, machine_detection="hangup").json()
    record = outbound.settled(hang["call_id"], "machine")
    assert (record["status"], record["answered_by"]) == ("machine", word), (record, stand_in.answers)
    assert stand_in.requests_of(record["carrier_call_id"])[field] == asked["hangup"]
    message = outbound.place(to("2222"), carrier, machine_detection="message").json()
    record = outbound.settled(message["call_id"], "ended")
    assert (record["status"], record["answered_by"]) == ("ended", word), record
    assert stand_in.requests_of(record["carrier_call_id"])[field] == asked["message"]
    person = outbound.place(to(), carrier, machine_detection="hangup").json()
    assert outbound.settled(person["call_id"], "ended")["answered_by"] == "human"


@pytest.mark.parametrize("carrier", CARRIERS)
def test_a_ringing_call_is_canceled_and_an_answered_one_cannot_be(outbound: Outbound, carrier: str) -> None:
    ringing = outbound.place(to("3333"), carrier).json()
    carrier_call_id = outbound.settled(ringing["call_id"], "ringing")["carrier_call_id"]
    canceled = outbound.http.delete(f"/calls/{ringing['call_id']}")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert outbound.settled(ringing["call_id"], "canceled")["reason"] == "canceled_by_api"
    played = outbound.carriers[carrier].calls[carrier_call_id]
    deadline = time.monotonic() + 5
    while "canceled" not in played.events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "canceled" in played.events  # the carrier was told: it hung up the ringing call
    done = outbound.place(to(), carrier).json()
    outbound.settled(done["call_id"], "ended")
    refused = outbound.http.delete(f"/calls/{done['call_id']}")
    assert (refused.status_code, refused.json()["error"]) == (409, "call_not_cancelable")


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"to": "+442071838750"}, 403, "destination_not_allowed"),
        ({"to": "4155550123"}, 400, "invalid_request"),
        ({"from": "+15055559999"}, 403, "from_not_allowed"),
        ({"carrier": "sms"}, 400, "invalid_request"),
        ({"carrier": "chime", "machine_detection": "hangup"}, 422, "machine_detection_unavailable"),
        ({"carrier": "plivo", "from": "+15055559999"}, 403, "from_not_allowed"),
    ],
)
def test_refused_requests_send_nothing_anywhere(
    outbound: Outbound, body: dict[str, str], status: int, error: str
) -> None:
    before = (len(outbound.sim.registrations()), *(len(c.requests) for c in outbound.carriers.values()))
    answer = outbound.http.post(
        "/calls/outbound", json={"to": to(), "from": outbound.from_, "carrier": "twilio", **body}
    )
    assert (answer.status_code, answer.json()["error"]) == (status, error), answer.text
    assert (len(outbound.sim.registrations()), *(len(c.requests) for c in outbound.carriers.values())) == before


@pytest.mark.parametrize(
    ("carrier", "code"),
    [
        ("twilio", "20003"),
        ("plivo", None),
        ("telnyx", "10009"),
        ("vonage", "unauthorized"),
        ("chime", "AccessDeniedException"),
        ("signalwire", "20003"),
    ],
)
def test_a_carrier_refusing_the_credentials_is_a_502_and_the_record_is_closed(
    outbound: Outbound, carrier: str, code: str | None
) -> None:
    stand_in = outbound.carriers[carrier]
    if carrier == "vonage":
        stand_in.public_key = vonage_key()[1]  # type: ignore[attr-defined]  # another application's key
    elif carrier == "chime":
        stand_in.refusing = True  # type: ignore[attr-defined]  # the role without the permission
    else:
        setattr(stand_in, "api_key" if carrier == "telnyx" else "auth_token", "not-the-token")
    answer = outbound.place(to(), carrier)
    assert (answer.status_code, answer.json()["error"]) == (502, "carrier_credentials_rejected"), answer.text
    status = 403 if carrier == "chime" else 401  # AWS refuses a role without the permission with 403
    assert answer.json()["details"] == [{"carrier_status": status, "carrier_code": code}]
    registered = outbound.sim.issued[-1][0]
    assert outbound.settled(registered, "failed")["reason"] == "carrier_credentials_rejected"


def test_the_answer_url_refuses_a_call_it_was_not_given_for(outbound: Outbound) -> None:
    call = outbound.place(to("0000")).json()
    outbound.settled(call["call_id"], "no_answer")
    url = f"{outbound.server.url}/carriers/twilio/outbound?call={call['call_id']}&token=forged"
    params = {"CallSid": call["carrier_call_id"], "From": outbound.from_, "To": "+14155550123"}
    from dev.carrier_signing import twilio_signature

    signed = httpx.post(
        url, data=params, headers={"X-Twilio-Signature": twilio_signature(url, params, TWILIO_AUTH_TOKEN)}
    )
    assert signed.status_code == 403
    unsigned = httpx.post(url, data=params)
    assert unsigned.status_code == 403


def test_the_same_idempotency_key_places_one_call(outbound: Outbound) -> None:
    number = to()
    headers = {"Idempotency-Key": f"reminder-{uuid.uuid4().hex[:8]}"}
    body = {"to": number, "from": outbound.from_, "carrier": "twilio"}
    first = outbound.http.post("/calls/outbound", json=body, headers=headers)
    again = outbound.http.post("/calls/outbound", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 202), again.text
    assert again.json()["call_id"] == first.json()["call_id"]
    placed = [form for _, path, form in outbound.twilio.requests if path.endswith("/Calls.json")]
    assert [form["To"] for form in placed].count([number]) == 1

"""The answer lands before each phone system gives up, whatever Millis does short of answering: slow (no answer
for longer than the whole budget) or slow but never silent (its answer dripped one byte at a time, each byte
well within the read timeout), in one region and then in both. A Twilio call, a Vonage call and a SIP server's
GET /route go through the local API to InboundFunction, signed or keyed as each sends them; a Chime call is
SipMediaAppFunction's invocation. Each gets its dial to the healthy region, or the failure message (503 for a
SIP server), in less time than its phone system waits (``millis_sip.patience``): a deadline test, with real
time, DynamoDB Local and the Millis simulator.

Fast by construction: short Millis timeouts where failover is the point (a region costs 0.6 s), and the
template's timeouts only where the phone system's own patience must bound the answer (Vonage: 4 s, GET /route:
2 s)."""

from __future__ import annotations

import hashlib
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from dev.lambda_context import LocalContext
from dev.local_api import LocalApi
from dev.millis_simulator import Fault, MillisSimulator
from millis_sip.patience import PATIENCE
from tests.conftest import load_event
from tests.support import twiml
from tests.support.rig import TWILIO_AUTH_TOKEN

pytestmark = pytest.mark.integration
API_KEY = "deadline-key"
VONAGE_SECRET = "deadline-vonage-signature-secret"
VONAGE_APP = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
DIALED = "+15055550177"
# A region that says nothing for longer than any budget here (Twilio's, 8 s, is the longest), and one whose
# answer (about 120 bytes of body, 150 of status line and headers) would take 12-27 s to arrive in full.
SLOW = Fault(delay=10.0)
PAUSE = 0.1
QUICK_MILLIS = {"MILLIS_CONNECT_TIMEOUT": "0.3", "MILLIS_READ_TIMEOUT": "0.6"}
TEMPLATE_MILLIS = {"MILLIS_CONNECT_TIMEOUT": "1.0", "MILLIS_READ_TIMEOUT": "2.0"}  # template.yaml, both functions


@dataclass(frozen=True, slots=True)
class Millis:
    name: str
    faults: dict[str, Fault] = field(default_factory=dict)

    @property
    def healthy(self) -> str | None:
        return next((r for r in ("us-west", "eu-west") if r not in self.faults), None)


MILLIS = [
    Millis("slow in us-west", {"us-west": SLOW}),
    Millis("slow in both", {"us-west": SLOW, "eu-west": SLOW}),
    Millis("dripping in us-west", {"us-west": Fault(drip=PAUSE, drip_headers=True)}),
    Millis("dripping in both", {"us-west": Fault(drip=PAUSE, drip_headers=True), "eu-west": Fault(drip=PAUSE)}),
]
FAILED = "failure message"


def caller() -> str:
    return "+1206" + str(uuid.uuid4().int)[:7]


def region_of(sip_uri: str) -> str:
    return "eu-west" if "sip-eu-west" in sip_uri else "us-west" if "sip-us-west" in sip_uri else sip_uri


class LocalApiGateway:
    """The local API in front of whichever InboundFunction environment the test loaded (one server for the
    module: starting and stopping one per test would cost more than most of these calls)."""

    def __init__(self) -> None:
        self.inbound: ModuleType | None = None
        self.server = LocalApi(
            lambda e, c: e,
            api_key=API_KEY,
            port=0,
            timeout_seconds=12,  # InboundFunction's Timeout in template.yaml
            functions={"InboundFunction": self._invoke},
        )

    def _invoke(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        assert self.inbound is not None
        answer: dict[str, Any] = self.inbound.lambda_handler(event, context)
        return answer


class Phones:
    """Each phone system's first request for a new call, and what the call got: the Millis region it is dialed
    to, or the failure message; with the seconds it took."""

    def __init__(
        self, gateway: LocalApiGateway, make_inbound: Callable[..., ModuleType], make_sma: Callable[..., ModuleType]
    ) -> None:
        self._gateway, self._make_inbound, self._make_sma = gateway, make_inbound, make_sma

    def call(self, phone_system: str, millis_env: dict[str, str]) -> tuple[str, float]:
        if phone_system == "chime":
            return self._chime(self._make_sma(**millis_env))
        server = self._gateway.server
        self._gateway.inbound = self._make_inbound(
            PUBLIC_BASE_URL=server.url,
            VONAGE_SIGNATURE_SECRET=VONAGE_SECRET,
            VONAGE_APPLICATION_ID=VONAGE_APP,
            **millis_env,
        )
        with httpx.Client(base_url=server.url, timeout=60) as http:
            started = time.monotonic()
            answer = {"twilio": self._twilio, "vonage": self._vonage, "sip": self._route}[phone_system](http)
            took = time.monotonic() - started
        return self._read(phone_system, answer), took

    def _twilio(self, http: httpx.Client) -> httpx.Response:
        params = {"CallSid": f"CA{uuid.uuid4().hex}", "AccountSid": "AC" + "0" * 32, "From": caller(), "To": DIALED}
        url = str(http.base_url).rstrip("/") + "/carriers/twilio/voice"  # what Twilio requests, and signs
        signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, params)
        return http.post("/carriers/twilio/voice", data=params, headers={"X-Twilio-Signature": signature})

    def _vonage(self, http: httpx.Client) -> httpx.Response:
        params = {"to": DIALED[1:], "from": caller()[1:], "uuid": str(uuid.uuid4()), "conversation_uuid": ""}
        params["conversation_uuid"] = f"CON-{uuid.uuid4()}"
        claims = {  # a GET's payload_hash covers its query as JSON
            "iat": int(time.time()),
            "jti": str(uuid.uuid4()),
            "iss": "Vonage",
            "payload_hash": hashlib.sha256(json.dumps(params, separators=(",", ":")).encode()).hexdigest(),
            "api_key": "abcd1234",
            "application_id": VONAGE_APP,
        }
        token = jwt.encode(claims, VONAGE_SECRET, algorithm="HS256")
        return http.get("/carriers/vonage/answer", params=params, headers={"Authorization": f"Bearer {token}"})

    def _route(self, http: httpx.Client) -> httpx.Response:
        query = {"to": DIALED, "from": caller(), "call": f"{uuid.uuid4()}@pbx.example"}
        return http.get("/route", params=query, headers={"x-api-key": API_KEY, "Accept": "application/json"})

    @staticmethod
    def _read(phone_system: str, answer: httpx.Response) -> str:
        if phone_system == "sip":
            if answer.status_code == 503:
                assert answer.json()["reason"] == "millis_unavailable", answer.text
                return FAILED
            assert answer.status_code == 200, answer.text
            return region_of(answer.json()["sip_uri"])
        assert answer.status_code == 200, answer.text
        if phone_system == "twilio":
            root = twiml.parse(answer.text)
            if twiml.verbs(root) == ["Say", "Hangup"]:
                return FAILED
            assert twiml.verbs(root) == ["Dial"], answer.text
            return region_of(root[0][0].text or "")
        [action] = answer.json()
        if action["action"] == "talk":
            return FAILED
        return region_of(action["endpoint"][0]["uri"])

    @staticmethod
    def _chime(sma: ModuleType) -> tuple[str, float]:
        event = load_event("sma-new-inbound-call.json")
        event["CallDetails"]["TransactionId"] = f"deadline-{uuid.uuid4()}"
        event["CallDetails"]["Participants"][0]["From"] = caller()
        started = time.monotonic()
        answer = sma.lambda_handler(event, LocalContext(function_name="SipMediaAppFunction", timeout_seconds=8))
        took = time.monotonic() - started
        actions = [action["Type"] for action in answer["Actions"]]
        if actions == ["Speak", "Hangup"]:
            assert answer["TransactionAttributes"]["failure_reason"] == "millis_unavailable", answer
            return FAILED, took
        assert actions[0] == "CallAndBridge", answer
        return answer["TransactionAttributes"]["millis_region"], took


@pytest.fixture(scope="module")
def local_api() -> Iterator[LocalApiGateway]:
    gateway = LocalApiGateway()
    with gateway.server:
        yield gateway


@pytest.fixture
def phones(
    local_api: LocalApiGateway,
    make_inbound: Callable[..., ModuleType],
    make_sma: Callable[..., ModuleType],
    sim: MillisSimulator,
) -> Phones:
    return Phones(local_api, make_inbound, make_sma)


@pytest.mark.parametrize("millis", MILLIS, ids=lambda m: m.name)
@pytest.mark.parametrize("phone_system", ["twilio", "vonage", "chime", "sip"])
def test_the_answer_lands_before_the_phone_system_gives_up(
    phones: Phones, sim: MillisSimulator, phone_system: str, millis: Millis
) -> None:
    for region, fault in millis.faults.items():
        sim.set_fault(region, fault)
    got, took = phones.call(phone_system, QUICK_MILLIS)
    assert got == (millis.healthy or FAILED)
    assert took < PATIENCE[phone_system].seconds, f"{took:.2f} s"


@pytest.mark.parametrize("phone_system", ["vonage", "sip"])
def test_the_phone_systems_patience_bounds_the_answer_with_the_templates_millis_timeouts(
    phones: Phones, sim: MillisSimulator, phone_system: str
) -> None:
    sim.set_fault("us-west", Fault(drip=PAUSE, drip_headers=True))  # 2 s (the read timeout), then cut off
    sim.set_fault("eu-west", SLOW)  # what is left of the budget
    got, took = phones.call(phone_system, TEMPLATE_MILLIS)
    assert got == FAILED
    assert took < PATIENCE[phone_system].seconds, f"{took:.2f} s"


def test_the_simulator_drips_from_the_status_line_or_from_the_body(sim: MillisSimulator) -> None:
    host, port = urlsplit(sim.base_url("us-west")).netloc.split(":")
    for region, drip in (("us-west", {"drip": 0.2, "drip_headers": True}), ("eu-west", {"drip": 0.2})):
        assert httpx.post(f"http://{host}:{port}/_sim/faults/{region}", json=drip).status_code == 204
    body = b'{"agent_id": "a"}'
    request = b"POST /%s/register_sip_call HTTP/1.1\r\nHost: sim\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n%s"
    firsts = {}
    for region in ("us-west", "eu-west"):
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(request % (region.encode(), sim.api_key.encode(), len(body), body))
            firsts[region] = [conn.recv(4096) for _ in range(2)]
    assert firsts["us-west"] == [b"H", b"T"]  # the status line, a byte at a time
    head, first_of_body = firsts["eu-west"]
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n") and first_of_body == b"{"

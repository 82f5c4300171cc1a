"""The carriers' own requests, end to end: every file of tests/fixtures/carriers/ (each names its source; SOURCES.md
lists them) is signed as its carrier signs it (tests/support/carrier_requests.py: twilio's RequestValidator, an
Ed25519 key, a Vonage HS256 JWT, the plivo SDK) and sent through the local API to InboundFunction, against DynamoDB
Local and the Millis simulator. What each gets:

- an inbound call (a voice or answer request): a dial to Millis, with the caller's and the dialed number in
  Millis' metadata in E.164 (Plivo's and Vonage's 14155550100 included), and no number for a withheld caller or a
  SIP user;
- the end of a bridged call (a Dial action, Plivo's hangup URL, a Vonage leg event): an acknowledgement, and the
  call's record closed with the carrier's duration; a failed leg: a dial to the other Millis region;
- a status callback that is not about the leg to Millis: an acknowledgement that changes nothing;
- digits keyed in at the PIN prompt: checked (the documented digits are no registration's PIN: asked again);
- a documented placeholder id that is not in the carrier's documented id format (Twilio's ``CAXXXX...`` and
  ``CA1234567890ABCDE``): 400, before the router sees it. The same request with the placeholder filled in in the
  documented format then gets its answer as above.

The documented ids are sent as they are; the markers an earlier test left for the same id are removed first
(several files of one carrier document the same call)."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from dev.local_api import LocalApi
from dev.millis_simulator import MillisSimulator
from millis_sip.adapters.dynamodb.store import DynamoCallStore
from millis_sip.core.calls import OPEN, CallerVerification, CallRecord, CallStatus, Direction
from millis_sip.core.clock import SystemClock
from millis_sip.core.outbound import ANSWER_PURPOSE
from millis_sip.core.ports import transaction_key
from millis_sip.core.sip import parse_sip_uri
from tests.support import twiml
from tests.support.carrier_requests import CarrierRequests, inbound_server, pending_registration
from tests.support.rig import STACK_KEYS, TABLE

pytestmark = pytest.mark.integration
CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "carriers"
RETRY_PROMPT = "That PIN was not right."  # PIN_RETRY_PROMPT's default, before the prompt asked again

VOICE = {
    "twilio": "/carriers/twilio/voice",
    "signalwire": "/carriers/twilio/voice",
    "telnyx": "/carriers/telnyx/voice",
    "vonage": "/carriers/vonage/answer",
    "plivo": "/carriers/plivo/answer",
}
STATUS = {
    "twilio": "/carriers/twilio/status",
    "signalwire": "/carriers/twilio/status",
    "telnyx": "/carriers/telnyx/status",
    "vonage": "/carriers/vonage/event",
    "plivo": "/carriers/plivo/status",
}
CALL_ID = {"twilio": "CallSid", "signalwire": "CallSid", "telnyx": "CallSid", "vonage": "conversation_uuid"}
CALLER, DIALED = {"vonage": "from"}, {"vonage": "to"}
# Twilio's placeholders (SOURCES.md, "Formats"): CA/AC and 30 X (the trusted-calling page), and the 17-character
# CallSid of the webhooks-security example. Filled in as Twilio's format says, in hex; under SignalWire's
# signature the CallSid is a UUID.
PLACEHOLDERS = {"CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "CA1234567890ABCDE"}


@dataclass(frozen=True)
class Fixture:
    name: str  # "<carrier>/<file>"
    method: str
    fields: dict[str, Any]

    @property
    def carrier(self) -> str:
        return self.name.split("/")[0]

    @property
    def call_id(self) -> str:
        return str(self.fields[CALL_ID.get(self.carrier, "CallUUID")])

    def field(self, names: Mapping[str, str], default: str) -> Any:
        return self.fields.get(names.get(self.carrier, default))

    def filled(self) -> Fixture:
        """The request with Twilio's placeholder ids written in the documented formats."""
        signalwire = self.carrier == "signalwire"

        def fill(value: Any) -> Any:
            if value not in PLACEHOLDERS:
                return value
            if signalwire:
                return str(uuid.uuid4())
            return value[:2].upper() + uuid.uuid4().hex

        return replace(self, fields={name: fill(value) for name, value in self.fields.items()})


def load(name: str) -> Fixture:
    data = json.loads((CORPUS / f"{name}.json").read_text())
    assert data["source"], name  # every file names where it comes from
    return Fixture(name, data["method"], dict(data.get("params") or data.get("json") or {}))


class Corpus:
    def __init__(self, server: LocalApi, store: DynamoCallStore, sim: MillisSimulator, dynamodb: Any) -> None:
        self.server, self.store, self.sim, self.dynamodb = server, store, sim, dynamodb
        self.http = httpx.Client(base_url=server.url, timeout=30)
        self.requests = CarrierRequests(server.url, self.http)
        self.registrations: list[CallRecord] = []

    def send(self, fixture: Fixture, path: str | None = None) -> httpx.Response:
        """The fixture, signed as its carrier signs it, to ``path`` (else the route its kind of request goes to)."""
        carrier, fields = fixture.carrier, fixture.fields
        if path is None:
            status = any(word in fixture.name for word in ("dial-action", "status", "hangup"))
            path = (STATUS if status or "status" in fields else VOICE)[carrier]  # a Vonage event has a status
        if carrier in ("twilio", "signalwire"):
            return self.requests.twilio(path, fields, signalwire=carrier == "signalwire")
        if carrier == "telnyx":
            return self.requests.telnyx(path, fields, method=fixture.method)
        if carrier == "vonage":
            return self.requests.vonage(path, fields, method=fixture.method)
        return self.requests.plivo(path, fields)

    def ring(self, fixture: Fixture) -> httpx.Response:
        """The inbound call the fixture is about: its voice (answer) request, from its ids and numbers."""
        carrier = fixture.carrier
        names = {
            "twilio": ("CallSid", "AccountSid", "From", "To"),
            "signalwire": ("CallSid", "AccountSid", "From", "To"),
            "telnyx": ("CallSid", "ConnectionId", "From", "To"),
            "vonage": ("conversation_uuid", "uuid", "from", "to"),
            "plivo": ("CallUUID", "From", "To"),
        }[carrier]
        fields = {name: fixture.fields[name] for name in names if name in fixture.fields}
        answer = self.send(Fixture(f"{carrier}/voice", "POST", fields), VOICE[carrier])
        assert answer.status_code == 200, answer.text
        return answer

    def forget(self, fixture: Fixture) -> None:
        """Remove the markers earlier tests left for the fixture's documented call id."""
        carrier = "twilio" if fixture.carrier == "signalwire" else fixture.carrier
        for attempt in (1, 2):
            key = transaction_key(carrier, fixture.call_id, attempt)
            self.dynamodb.delete_item(TableName=TABLE, Key={"call_id": {"S": key}})

    def pending(self, number: str, verification: CallerVerification) -> CallRecord:
        """A registration a backend made for ``number``, as POST /calls stores it (closed after the test)."""
        record = pending_registration(self.store, number, verification)
        self.registrations.append(record)
        return record

    def record(self, sip_uri: str) -> CallRecord:
        found = self.store.get(sip_uri.removeprefix("sip:call-").split("@")[0])
        assert found is not None, sip_uri
        return found

    def close(self) -> None:
        now = SystemClock().now()
        for record in self.registrations:
            self.store.transition(
                replace(record, ended_at=now, reason="test_over"), CallStatus.ENDED, allowed_from=OPEN, now=now
            )
        self.http.close()


@pytest.fixture
def corpus(make_inbound: Callable[..., ModuleType], sim: MillisSimulator, dynamodb: Any) -> Iterator[Corpus]:
    with inbound_server(make_inbound, "corpus-key") as server:
        built = Corpus(server, DynamoCallStore(dynamodb, TABLE, keys=STACK_KEYS), sim, dynamodb)
        yield built
        built.close()


# --- reading the answers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dial:
    sip_uri: str
    status_url: str
    caller_id: str | None  # callerId (TwiML, Plivo XML), or Vonage's from


def dial_of(carrier: str, response: httpx.Response) -> Dial:
    assert response.status_code == 200, response.text
    if carrier == "vonage":
        [connect] = response.json()
        assert connect["action"] == "connect", connect
        return Dial(connect["endpoint"][0]["uri"], connect["eventUrl"][0], connect.get("from"))
    root = twiml.parse(response.text) if carrier != "plivo" else ET.fromstring(response.text)  # noqa: S314
    [dial] = list(root)
    assert dial.tag == "Dial", response.text
    uri = (dial[0].text or "").strip().partition("?")[0]
    return Dial(uri, dial.attrib["action"], dial.attrib.get("callerId"))


def acknowledged(carrier: str, response: httpx.Response) -> bool:
    if carrier == "vonage":
        return response.status_code == 204
    root = ET.fromstring(response.text)  # noqa: S314 - the stack's own answer
    return response.status_code == 200 and [child.tag for child in root] == ["Hangup"] and not root[0].attrib


def prompt_of(carrier: str, response: httpx.Response) -> str:
    """The PIN prompt's text (the answer must be a prompt)."""
    assert response.status_code == 200, response.text
    if carrier == "vonage":
        talk, listen = response.json()
        assert (talk["action"], listen["action"]) == ("talk", "input")
        return str(talk["text"])
    root = ET.fromstring(response.text)  # noqa: S314 - the stack's own answer
    assert [child.tag for child in root] in (["Gather", "Redirect"], ["GetInput", "Redirect"]), response.text
    return root[0][0].text or ""


def metadata(corpus: Corpus) -> dict[str, Any]:
    registration = corpus.sim.registrations()[-1]
    body: dict[str, Any] = registration.body["metadata"]
    return body


# --- every file has its expected answer ------------------------------------------------------------------------

# Inbound calls: (caller, dialed) as Millis' metadata must carry them (None: no number), and the carrier's other ids.
INBOUND: dict[str, tuple[str | None, str | None, dict[str, str]]] = {
    "twilio/voice-inbound": ("+12222222222", "+15555555555", {}),
    "twilio/voice-anonymous-caller": (None, "+15555555555", {}),  # +266696687: ANONYMOUS on a keypad
    "twilio/voice-anonymous-caller-alpha": (None, "+15555555555", {}),
    "twilio/voice-sip-originated": (None, None, {}),  # sip:jack@example.com to sip:alice@...: SIP users
    "signalwire/voice-inbound": (
        "+15551234567",
        "+18005559876",
        {"twilio_account_sid": "b3877c40-da60-4998-90ad-b792e98472af"},
    ),
    "telnyx/voice-inbound-post": ("+13122010091", "+13122010090", {"telnyx_connection_id": "1568109700606592442"}),
    "telnyx/gather-digits": (None, "+12132045020", {}),  # From a SIP address; Digits with no prompt pending
    "vonage/answer-get": (
        "+447700900000",
        "+442079460000",
        {"vonage_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"},
    ),
    "vonage/answer-post": ("+442079460000", "+447700900000", {}),
    "plivo/answer": ("+14157654321", "+14153464321", {}),
    "plivo/answer-outbound-sip": ("+19792014278", None, {}),  # To a sip: URI of Plivo's own
}
# The end of a bridged call: the record's duration afterwards (the carrier's, or 0 when it sends none).
ENDS: dict[str, int] = {
    "twilio/dial-action-completed": 12,
    "signalwire/dial-action-completed": 12,
    "telnyx/dial-action-completed": 120,
    "plivo/dial-action-completed": 0,  # DialBLegDuration is not among the documented Dial action parameters
    "plivo/hangup": 60,
    "vonage/event-cancelled": 0,  # the caller hung up while the agent's leg rang
    "vonage/tutorial-outbound-app-leg-completed": 5,
}
# A failed leg to Millis: the other region, once.
FAILURES = [
    "twilio/dial-action-no-answer",
    "plivo/dial-action-no-answer",
    "vonage/event-busy",
    "vonage/event-failed",
    "vonage/event-rejected",
    "vonage/event-timeout",
    "vonage/event-unanswered",
]
# Callbacks that are not about the leg to Millis (call progress, the caller's own leg): acknowledged, nothing moves.
ACKNOWLEDGED = [
    "signalwire/inbound-call-status-callback",
    "signalwire/status-callback-busy-sip",
    # Its doc placeholders that are not UUIDs (…98472pa, …984re01) are ParentCallSid and RecordingSid: fields the
    # edge does not read, so they are not held to a form; its CallSid is a well-formed UUID.
    "signalwire/status-callback-completed",
    "signalwire/status-callback-no-answer-sip",
    # ParentCallSid "v3:parent-call-id", the docs' placeholder, is not read (and has Telnyx's id form anyway).
    "telnyx/status-answered",
    "telnyx/status-completed-hangup-verb",
    "telnyx/status-initiated",
    "telnyx/status-ringing",
    "vonage/event-answered",  # direction inbound: the caller's own leg
    "vonage/event-completed",
    "vonage/event-disconnected",
    "vonage/event-ringing",
    "vonage/event-started",
    "vonage/tutorial-inbound-answered",
    "vonage/tutorial-inbound-completed",
    "vonage/tutorial-inbound-ringing",
    "vonage/tutorial-inbound-started",
]
# Digits keyed in at the PIN prompt of a registration waiting for the caller: the documented digits are no PIN.
DIGITS = ["twilio/gather-digits", "signalwire/gather-digits", "plivo/getinput-digits", "vonage/input-dtmf"]
# Twilio's documented requests with placeholder ids outside Twilio's format (SignalWire's SDK test reuses
# Twilio's 17-character CallSid, not a SignalWire UUID): refused as sent.
REFUSED = [
    "twilio/dial-action-completed",
    "twilio/dial-action-no-answer",
    "twilio/gather-digits",
    "twilio/voice-anonymous-caller",
    "twilio/voice-anonymous-caller-alpha",
    "twilio/voice-inbound",
    "twilio/voice-sip-originated",
    "twilio/voice-with-stir",
    "signalwire/gather-digits",
]
# Requests about a call the stack placed (docs/outbound.md), sent to the carrier's outbound status URL for a
# ringing outbound call: acknowledged, and the record's status afterwards.
OUTBOUND_STATUS: dict[str, CallStatus] = {
    # Asynchronous detection, which the stack does not ask for: read, and nothing moves (the hangup URL ends it).
    "plivo/machine-detection": CallStatus.RINGING,
}
OTHERS = {
    "twilio/voice-with-stir": "an attested caller claims its registration",
    "vonage/input-speech": "speech at the PIN prompt: nothing keyed in, the call goes on",
    "telnyx/voice-inbound": "an instruction fetch by GET: no route (the query is not signed)",
}


def test_every_file_of_the_corpus_has_its_expected_answer() -> None:
    files = {str(path.relative_to(CORPUS).with_suffix("")) for path in CORPUS.glob("*/*.json")}
    answered = {*INBOUND, *ENDS, *FAILURES, *ACKNOWLEDGED, *DIGITS, *OUTBOUND_STATUS, *OTHERS}
    assert answered == files
    assert set(REFUSED) <= files
    kinds = (INBOUND, ENDS, FAILURES, ACKNOWLEDGED, DIGITS, OUTBOUND_STATUS, OTHERS)
    assert len(answered) == sum(len(kind) for kind in kinds)


@pytest.mark.parametrize("name", REFUSED)
def test_a_documented_placeholder_id_outside_the_format_is_refused(corpus: Corpus, name: str) -> None:
    fixture = load(name)
    answer = corpus.send(fixture)
    assert answer.status_code == 400, answer.text
    assert answer.text.startswith("Bad request: CallSid is missing or malformed: ")
    assert corpus.sim.registrations() == []


def sendable(name: str) -> Fixture:
    """The fixture as documented, or with Twilio's placeholders filled in when it has any."""
    fixture = load(name)
    return fixture.filled() if name in REFUSED else fixture


@pytest.mark.parametrize("name", sorted(INBOUND))
def test_an_inbound_call_is_dialed_to_millis_with_its_numbers_in_e164(corpus: Corpus, name: str) -> None:
    fixture = sendable(name)
    corpus.forget(fixture)
    caller, dialed, context = INBOUND[name]
    dial = dial_of(fixture.carrier, corpus.send(fixture))
    assert dial.sip_uri.startswith("sip:call-sim-")
    sent = metadata(corpus)
    assert (sent.get("caller_number"), sent.get("dialed_number")) == (caller, dialed)
    assert sent["carrier_call_id"] == fixture.call_id
    assert {key: sent[key] for key in context} == context
    if fixture.carrier == "vonage":  # Vonage's from: the caller's digits (else the dialed number's), no +
        assert dial.caller_id == (caller or dialed or "").removeprefix("+")
    else:
        assert dial.caller_id == caller
    if name == "twilio/voice-sip-originated":
        assert sent["caller_supplied"] == {"sip_x_myotherheader": "bar"}
    if name == "vonage/answer-get":
        assert sent["caller_supplied"] == {"sip_x_userid": "1938ND9"}
    record = corpus.record(dial.sip_uri)
    assert (record.caller_number, record.dialed_number, record.transaction_id) == (caller, dialed, fixture.call_id)


def test_a_withheld_caller_never_claims_a_registration_for_the_placeholder_number(corpus: Corpus) -> None:
    fixture = sendable("twilio/voice-anonymous-caller")
    waiting = corpus.pending("+266696687", CallerVerification.TRUST_CALLER_ID)
    dial = dial_of("twilio", corpus.send(fixture))
    assert dial.sip_uri != str(waiting.sip_uri)
    assert corpus.record(str(waiting.sip_uri)).status is CallStatus.REGISTERED


def test_an_attested_caller_claims_its_registration(corpus: Corpus) -> None:
    fixture = sendable("twilio/voice-with-stir")  # StirVerstat TN-Validation-Passed-A
    waiting = corpus.pending("+12222222222", CallerVerification.ATTESTATION)
    dial = dial_of("twilio", corpus.send(fixture))
    assert dial.sip_uri == str(waiting.sip_uri)
    assert corpus.sim.registrations() == []  # claimed: no fresh registration


@pytest.mark.parametrize("name", sorted(ENDS))
def test_the_end_of_a_bridged_call_is_acknowledged_and_closes_its_record(corpus: Corpus, name: str) -> None:
    fixture = sendable(name)
    corpus.forget(fixture)
    dial = dial_of(fixture.carrier, corpus.ring(fixture))
    assert acknowledged(fixture.carrier, corpus.send(fixture))
    record = corpus.record(dial.sip_uri)
    assert (record.status, record.duration_seconds) == (CallStatus.ENDED, ENDS[name])


@pytest.mark.parametrize("name", FAILURES)
def test_a_failed_leg_is_dialed_to_the_other_region(corpus: Corpus, name: str) -> None:
    fixture = sendable(name)
    corpus.forget(fixture)
    first = dial_of(fixture.carrier, corpus.ring(fixture))
    second = dial_of(fixture.carrier, corpus.send(fixture))
    assert "sip-us-west" in first.sip_uri and "sip-eu-west" in second.sip_uri
    assert "?attempt=2&token=" in second.status_url
    status = fixture.fields.get("DialCallStatus") or fixture.fields.get("DialStatus") or fixture.fields.get("status")
    failed = corpus.record(first.sip_uri)
    assert (failed.status, failed.reason) == (CallStatus.FAILED, f"dial_{status}")


@pytest.mark.parametrize("name", ACKNOWLEDGED)
def test_a_callback_not_about_the_leg_to_millis_is_acknowledged_and_changes_nothing(corpus: Corpus, name: str) -> None:
    fixture = sendable(name)
    corpus.forget(fixture)
    dial = dial_of(fixture.carrier, corpus.ring(fixture))
    answer = corpus.send(fixture)
    assert acknowledged(fixture.carrier, answer), answer.text
    assert corpus.record(dial.sip_uri).status is CallStatus.CLAIMED
    assert len(corpus.sim.registrations()) == 1


@pytest.mark.parametrize("name", DIGITS)
def test_digits_keyed_at_the_pin_prompt_are_checked(corpus: Corpus, name: str) -> None:
    fixture = sendable(name)
    corpus.forget(fixture)
    number = "+" + str(fixture.field(CALLER, "From")).removeprefix("+")
    corpus.pending(number, CallerVerification.PIN)
    assert not prompt_of(fixture.carrier, corpus.ring(fixture)).startswith(RETRY_PROMPT)
    again = prompt_of(fixture.carrier, corpus.send(fixture))  # the documented digits are not its PIN
    assert again.startswith(RETRY_PROMPT)
    assert corpus.sim.registrations() == []


def test_speech_at_the_pin_prompt_is_nothing_keyed_in(corpus: Corpus) -> None:
    fixture = load("vonage/input-speech")  # dtmf.digits null
    corpus.forget(fixture)
    waiting = corpus.pending("+15551234567", CallerVerification.PIN)
    prompt_of("vonage", corpus.ring(fixture))
    dial = dial_of("vonage", corpus.send(fixture))
    assert dial.sip_uri != str(waiting.sip_uri)  # the call goes on without the registration
    assert metadata(corpus)["caller_number"] == "+15551234567"


def test_a_telnyx_instruction_fetch_by_get_has_no_route(corpus: Corpus) -> None:
    # Telnyx's signature covers the body: a GET's query would be unsigned, so the stack serves TeXML over POST
    # only (the template has no GET route; API Gateway's answer).
    answer = corpus.send(load("telnyx/voice-inbound"))
    assert (answer.status_code, answer.json()) == (403, {"message": "Missing Authentication Token"})
    assert corpus.sim.registrations() == []


@pytest.mark.parametrize("name", sorted(OUTBOUND_STATUS))
def test_a_callback_about_an_outbound_call_is_read_as_documented(corpus: Corpus, name: str) -> None:
    fixture = sendable(name)
    now, call_id = SystemClock().now(), f"out-{uuid.uuid4().hex[:12]}"
    record = CallRecord(
        call_id,
        parse_sip_uri(f"sip:call-{call_id}@sip-us-west.millis-simulator.test"),
        "us-west",
        CallStatus.RINGING,
        now,
        now + timedelta(hours=1),
        direction=Direction.OUTBOUND,
        carrier=fixture.carrier,
        carrier_call_id=str(fixture.fields.get("RequestUUID") or fixture.call_id),
    )
    corpus.store.put_new(record)
    corpus.registrations.append(record)
    query = urlencode({"call": call_id, "token": STACK_KEYS.action_token(ANSWER_PURPOSE, fixture.carrier, call_id)})
    answer = corpus.send(fixture, f"/carriers/{fixture.carrier}/outbound/status?{query}")
    assert acknowledged(fixture.carrier, answer), answer.text
    stored = corpus.store.get(call_id)
    assert stored is not None and stored.status is OUTBOUND_STATUS[name]

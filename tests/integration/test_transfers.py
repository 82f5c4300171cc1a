"""Transfers end to end (docs/transfers.md): a Twilio or Telnyx call the stack answered (its voice webhook signed
as the carrier signs it, both functions behind the local API, DynamoDB Local, the Millis simulator) moved to a
person with POST /calls/{call_id}/transfer; each carrier played by its stand-in (dev/carrier_api.py), which takes
the call update as the carrier does and plays the new TwiML (TeXML): the whisper URL for a warm transfer, then
the <Dial>'s action. Every guard, and a target that does not answer."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

from dev.carrier_api import (
    CallControlStandIn,
    ChimeStandIn,
    PlivoStandIn,
    TelnyxStandIn,
    TwilioStandIn,
    VonageStandIn,
)
from dev.carrier_signing import LOCAL_KEYS, SignedCarrier
from dev.local_api import LocalApi
from dev.millis_simulator import MillisSimulator
from tests.support.carrier_requests import vonage_key

pytestmark = pytest.mark.integration
API_KEY = "transfer-key"
ACCOUNT = "AC" + "7" * 32
ALLOWED = "+1415555,sip:pbx.example.com"
TELNYX_ACCOUNT = "f5586561-8ff0-4291-a51b-c7dfe4139ff9"
VONAGE_APP = "5ca1ab1e-0000-4000-8000-0000000000bb"
VONAGE_SECRET = "transfers-vonage-signature-secret-0123456789"
PLIVO_AUTH_ID = "MAZDQ1ZWYXNJAXNZTRAN"
CARRIERS = ("twilio", "telnyx")


def record_when(
    http: httpx.Client, call_id: str, ready: Callable[[dict[str, Any]], bool], seconds: float
) -> dict[str, Any]:
    """The call's record (GET /calls/{call_id}) once ``ready`` says so, or as it reads after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        record: dict[str, Any] = http.get(f"/calls/{call_id}").json()
        if ready(record) or time.monotonic() > deadline:
            return record
        time.sleep(0.05)


class Transfers:
    def __init__(self, server: LocalApi, carriers: dict[str, CallControlStandIn], sim: MillisSimulator) -> None:
        self.server, self.carriers, self.sim = server, carriers, sim
        self.twilio = carriers["twilio"]
        self.http = httpx.Client(base_url=server.url, headers={"x-api-key": API_KEY}, timeout=30)
        self.carrier = SignedCarrier(server.url, httpx.Client(base_url=server.url, timeout=30))
        self.number = "+1505555" + str(uuid.uuid4().int)[:4]
        route = self.http.put(f"/numbers/{self.number}", json={"agent_id": "support-agent"})
        assert route.status_code in (200, 201), route.text

    def answered_call(self, carrier: str = "twilio") -> tuple[str, str]:
        """A caller rings the number at the carrier; the stack answers with a dial to Millis. (call_id, CallSid)"""
        if carrier == "vonage":
            leg = str(uuid.uuid4())
            payload = {"to": self.number[1:], "from": "14155550123", "uuid": leg, "conversation_uuid": "CON-" + leg}
            answer = self.carrier.vonage("/carriers/vonage/answer", payload, secret=VONAGE_SECRET, app=VONAGE_APP)
            assert answer.status_code == 200 and '"connect"' in answer.text, answer.text
            return self.sim.issued[-1][0], leg
        if carrier == "plivo":
            call_uuid = str(uuid.uuid4())
            params = {"CallUUID": call_uuid, "From": "14155550123", "To": self.number[1:], "Direction": "inbound"}
            answer = self.carrier.plivo("/carriers/plivo/answer", {**params, "CallStatus": "in-progress"})
            assert answer.status_code == 200 and "<Dial" in answer.text, answer.text
            return self.sim.issued[-1][0], call_uuid
        if carrier == "telnyx":
            sid = "v3:" + secrets.token_urlsafe(30)
            fields = {"CallSid": sid, "AccountSid": TELNYX_ACCOUNT, "From": "+14155550123", "To": self.number}
            answer = self.carrier.telnyx("/carriers/telnyx/voice", {**fields, "ConnectionId": "1568109700606592442"})
            assert answer.status_code == 200 and "<Dial" in answer.text, answer.text
            return self.sim.issued[-1][0], sid
        sid = "CA" + uuid.uuid4().hex
        params = {"CallSid": sid, "AccountSid": ACCOUNT, "From": "+14155550123", "To": self.number}
        answer = self.carrier.twilio("/carriers/twilio/voice", params)
        assert answer.status_code == 200 and "<Dial" in answer.text, answer.text
        return self.sim.issued[-1][0], sid

    def transfer(self, call_id: str, **body: Any) -> httpx.Response:
        return self.http.post(f"/calls/{call_id}/transfer", json=body)

    def settled(self, call_id: str, *statuses: str, seconds: float = 10) -> dict[str, Any]:
        return record_when(self.http, call_id, lambda r: (r.get("transfer") or {}).get("status") in statuses, seconds)


@pytest.fixture
def transfers(
    make_api: Callable[..., ModuleType], make_inbound: Callable[..., ModuleType], sim: MillisSimulator
) -> Iterator[Transfers]:
    twilio = TwilioStandIn(ACCOUNT, LOCAL_KEYS.twilio_auth_token)
    telnyx = TelnyxStandIn(TELNYX_ACCOUNT, "KEY-transfers", LOCAL_KEYS.telnyx_key)
    pem, public = vonage_key()
    vonage = VonageStandIn(VONAGE_APP, public, VONAGE_SECRET)
    plivo = PlivoStandIn(PLIVO_AUTH_ID, LOCAL_KEYS.plivo_auth_token)
    with twilio.running(), telnyx.running(), vonage.running(), plivo.running():
        functions: dict[str, ModuleType] = {}
        server = LocalApi(
            lambda e, c: functions["api"].lambda_handler(e, c),
            api_key=API_KEY,
            port=0,
            functions={"InboundFunction": lambda e, c: functions["inbound"].lambda_handler(e, c)},
        )
        settings = {
            "PUBLIC_BASE_URL": server.url,
            "TRANSFER_ALLOWED_TARGETS": ALLOWED,
            "TWILIO_ACCOUNT_SID": ACCOUNT,
            "TWILIO_AUTH_TOKEN": LOCAL_KEYS.twilio_auth_token,
            "TWILIO_API_URL": twilio.url,
            "TELNYX_ACCOUNT_SID": TELNYX_ACCOUNT,
            "TELNYX_APPLICATION_ID": "1293384261075731499",
            "TELNYX_API_KEY": "KEY-transfers",
            "TELNYX_API_URL": telnyx.url,
            "TELNYX_PUBLIC_KEY": LOCAL_KEYS.env()["TELNYX_PUBLIC_KEY"],
            "VONAGE_APPLICATION_ID": VONAGE_APP,
            "VONAGE_PRIVATE_KEY": pem,
            "VONAGE_API_URL": vonage.url,
            "VONAGE_SIGNATURE_SECRET": VONAGE_SECRET,
            "PLIVO_AUTH_ID": PLIVO_AUTH_ID,
            "PLIVO_AUTH_TOKEN": LOCAL_KEYS.plivo_auth_token,
            "PLIVO_API_URL": plivo.url,
            "OUTBOUND_ALLOWED_PREFIXES": "+1",
        }
        functions["api"] = make_api(**settings)
        functions["inbound"] = make_inbound(**settings)
        with server:
            yield Transfers(server, {"twilio": twilio, "telnyx": telnyx, "vonage": vonage, "plivo": plivo}, sim)


def answers_to(carrier: CallControlStandIn, route: str, call_id: str) -> list[tuple[str, int, str]]:
    """What the stack answered the carrier's requests to ``route`` for ``call_id`` (the stand-in notes an answer
    just after the stack has stored what it did, so wait a moment for it)."""
    deadline = time.monotonic() + 5
    while not (found := [a for a in carrier.answers if route in a[0] and call_id in a[0]]):
        if time.monotonic() > deadline:
            return found
        time.sleep(0.02)
    return found


def redirected(transfers: Transfers, sid: str, carrier: str = "twilio") -> ElementTree.Element:
    [twiml] = [twiml for call, twiml in transfers.carriers[carrier].redirects if call == sid]
    return ElementTree.fromstring(twiml)  # noqa: S314 - the stack's own TwiML


@pytest.mark.parametrize("carrier", CARRIERS)
def test_a_warm_transfer_whispers_the_summary_then_connects(transfers: Transfers, carrier: str) -> None:
    call_id, sid = transfers.answered_call(carrier)
    summary = "Ana, order A-17, wants the yearly plan."
    answer = transfers.transfer(
        call_id, to="+14155550199", mode="warm", summary=summary, announce="Putting you through."
    )
    assert answer.status_code == 202, answer.text
    transfer = answer.json()["transfer"]
    assert (transfer["to"], transfer["mode"], transfer["status"], transfer["requested_by"]) == (
        "+14155550199",
        "warm",
        "in_progress",
        "api",
    )
    twiml = redirected(transfers, sid, carrier)
    assert twiml.findtext("Say") == "Putting you through."
    number = twiml.find("Dial/Number")
    assert number is not None and number.text == "+14155550199"
    assert f"/carriers/{carrier}/transfer/whisper?call=" in number.attrib["url"]
    record = transfers.settled(call_id, "connected")
    assert record["transfer"]["status"] == "connected" and record["transfer"]["ended_at"], record
    events = transfers.carriers[carrier].calls[sid].events
    assert any(event.startswith("whispered:") and summary in event for event in events), events


def test_a_cold_transfer_to_a_sip_uri_and_a_target_that_does_not_answer(transfers: Transfers) -> None:
    call_id, sid = transfers.answered_call()
    assert transfers.transfer(call_id, to="sip:sales@pbx.example.com").status_code == 202
    twiml = redirected(transfers, sid)
    sip = twiml.find("Dial/Sip")
    assert sip is not None and sip.text == "sip:sales@pbx.example.com" and "url" not in sip.attrib
    assert transfers.settled(call_id, "connected")["transfer"]["status"] == "connected"

    other_id, _ = transfers.answered_call()
    assert transfers.transfer(other_id, to="+14155550000").status_code == 202  # nobody answers
    assert transfers.settled(other_id, "failed")["transfer"]["status"] == "failed"
    [(_, status, said)] = answers_to(transfers.twilio, "/transfer/status", other_id)
    assert status == 200 and "<Say" in said and "<Hangup" in said  # the caller hears the failure message


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"to": "+442071838750"}, 403, "transfer_target_not_allowed"),
        ({"to": "sip:agent@elsewhere.example"}, 403, "transfer_target_not_allowed"),
        ({"to": "4155550199"}, 400, "invalid_request"),
        ({"to": "+14155550199", "mode": "hot"}, 400, "invalid_request"),
        ({"to": "+14155550199", "summary": "x" * 1001}, 400, "invalid_request"),
    ],
)
def test_refused_transfers_send_nothing(transfers: Transfers, body: dict[str, Any], status: int, error: str) -> None:
    call_id, _ = transfers.answered_call()
    before = len(transfers.twilio.redirects)
    answer = transfers.transfer(call_id, **body)
    assert (answer.status_code, answer.json()["error"]) == (status, error), answer.text
    assert len(transfers.twilio.redirects) == before


def test_only_a_live_call_and_one_transfer_at_a_time(transfers: Transfers) -> None:
    assert transfers.transfer("no-such-call", to="+14155550199").status_code == 404
    unused = transfers.http.post("/calls", json={"agent_id": "support-agent"}).json()["call_id"]
    answer = transfers.transfer(unused, to="+14155550199")  # registered, never reached by a phone call
    assert (answer.status_code, answer.json()["error"]) == (409, "call_not_transferable")
    transfers.twilio.pause = 1.0  # the first transfer stays under way a while
    call_id, _ = transfers.answered_call()
    assert transfers.transfer(call_id, to="+14155550199").status_code == 202
    again = transfers.transfer(call_id, to="+14155550198")
    assert (again.status_code, again.json()["error"]) == (409, "transfer_in_progress")


def test_the_transfer_urls_refuse_a_call_they_were_not_given_for(transfers: Transfers) -> None:
    call_id, _ = transfers.answered_call()
    for route in ("whisper", "status"):
        path = f"/carriers/twilio/transfer/{route}?call={call_id}&token=forged"
        answer = transfers.carrier.twilio(path, {"CallSid": "CA" + "a" * 32, "DialCallStatus": "completed"})
        assert answer.status_code == 403, answer.text


def test_a_numbers_own_transfer_targets_are_stored_and_take_the_place_of_the_stacks(transfers: Transfers) -> None:
    route = transfers.http.put(
        f"/numbers/{transfers.number}", json={"agent_id": "support-agent", "transfer_targets": ["sip:desk.example.com"]}
    )
    assert route.status_code == 200 and route.json()["transfer_targets"] == ["sip:desk.example.com"], route.text
    assert transfers.http.get(f"/numbers/{transfers.number}").json()["transfer_targets"] == ["sip:desk.example.com"]
    call_id, _ = transfers.answered_call()
    refused = transfers.transfer(call_id, to="+14155550199")  # the stack allows it; the number does not
    assert (refused.status_code, refused.json()["error"]) == (403, "transfer_target_not_allowed")
    assert transfers.transfer(call_id, to="sip:ana@desk.example.com").status_code == 202
    wrong = transfers.http.put(f"/numbers/{transfers.number}", json={"agent_id": "a", "transfer_targets": ["*"]})
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_request")


def test_a_registration_a_backend_made_and_a_twilio_call_claimed_is_transferable(transfers: Transfers) -> None:
    """POST /calls, then the caller's Twilio call claims it (trust_caller_id): the claim records the carrier, so
    the transfer knows where to move the call."""
    caller = "+1415555" + str(uuid.uuid4().int)[:4]
    made = transfers.http.post(
        "/calls", json={"agent_id": "support-agent", "lookup_key": caller, "caller_verification": "trust_caller_id"}
    )
    assert made.status_code == 201, made.text
    sid = "CA" + uuid.uuid4().hex
    params = {"CallSid": sid, "AccountSid": ACCOUNT, "From": caller, "To": transfers.number}
    rung = transfers.carrier.twilio("/carriers/twilio/voice", params)
    assert made.json()["sip_uri"] in rung.text, rung.text  # the registration was claimed
    call_id = made.json()["call_id"]
    assert transfers.http.get(f"/calls/{call_id}").json()["status"] == "claimed"
    assert transfers.transfer(call_id, to="+14155550199").status_code == 202
    assert transfers.settled(call_id, "connected")["transfer"]["status"] == "connected"
    assert redirected(transfers, sid) is not None


def test_a_vonage_call_is_moved_to_a_new_ncco_and_the_person_hears_the_summary(transfers: Transfers) -> None:
    call_id, leg = transfers.answered_call("vonage")
    summary = "Ana, order A-17."
    answer = transfers.transfer(call_id, to="+14155550199", mode="warm", summary=summary, announce="One moment.")
    assert answer.status_code == 202, answer.text
    [ncco] = [json.loads(n) for call, n in transfers.carriers["vonage"].redirects if call == leg]
    talk, connect = ncco
    assert (talk["action"], talk["text"]) == ("talk", "One moment.")
    assert connect["endpoint"][0]["number"] == "14155550199" and connect["from"] == transfers.number[1:]
    assert "/carriers/vonage/transfer/whisper?call=" in connect["endpoint"][0]["onAnswer"]["url"]
    record = transfers.settled(call_id, "connected")
    assert record["transfer"]["status"] == "connected", record
    events = transfers.carriers["vonage"].calls[leg].events
    assert any(event.startswith("whispered:") and summary in event for event in events), events
    other_id, _ = transfers.answered_call("vonage")
    assert transfers.transfer(other_id, to="sip:sales@pbx.example.com", mode="warm", summary=summary).status_code == 202
    other = transfers.settled(other_id, "connected")
    assert other["transfer"]["status"] == "connected", other


def test_a_plivo_call_is_moved_to_the_transfer_answer_url_and_plays_its_xml(transfers: Transfers) -> None:
    """Plivo's transfer takes a URL (aleg_url): Plivo fetches the stack's transfer document there, signed, and
    runs it on the caller's leg; warm, the person hears the summary (confirmSound) before the caller is joined."""
    plivo = transfers.carriers["plivo"]
    call_id, call_uuid = transfers.answered_call("plivo")
    summary = "Ana, order A-17."
    answer = transfers.transfer(call_id, to="+14155550199", mode="warm", summary=summary, announce="One moment.")
    assert answer.status_code == 202, answer.text
    [(method, _, fields)] = [r for r in plivo.requests if r[1].endswith(f"/Call/{call_uuid}/")]
    assert method == "POST" and (fields["legs"], fields["aleg_method"]) == ("aleg", "POST")
    assert "/carriers/plivo/transfer/answer?call=" in fields["aleg_url"]
    record = transfers.settled(call_id, "connected")
    assert record["transfer"]["status"] == "connected", record
    document = redirected(transfers, call_uuid, "plivo")
    assert document.findtext("Speak") == "One moment."
    dial = document.find("Dial")
    assert dial is not None and dial.findtext("Number") == "14155550199"
    assert "/carriers/plivo/transfer/whisper?call=" in dial.attrib["confirmSound"]
    assert "/carriers/plivo/transfer/status?call=" in dial.attrib["action"]
    events = plivo.calls[call_uuid].events
    assert any(event.startswith("whispered:") and summary in event for event in events), events

    cold_id, cold_uuid = transfers.answered_call("plivo")
    assert transfers.transfer(cold_id, to="sip:sales@pbx.example.com").status_code == 202
    assert transfers.settled(cold_id, "connected")["transfer"]["status"] == "connected"
    cold = redirected(transfers, cold_uuid, "plivo")
    assert cold.findtext("Dial/User") == "sip:sales@pbx.example.com" and cold.find("Speak") is None
    assert "confirmSound" not in cold.attrib


def test_a_plivo_transfer_nobody_answers_ends_with_the_failure_message(transfers: Transfers) -> None:
    plivo = transfers.carriers["plivo"]
    call_id, _ = transfers.answered_call("plivo")
    assert transfers.transfer(call_id, to="+14155550000").status_code == 202
    assert transfers.settled(call_id, "failed")["transfer"]["status"] == "failed"
    [(_, status, said)] = answers_to(plivo, "/transfer/status", call_id)
    assert status == 200 and "<Speak" in said and "<Hangup" in said  # the caller hears the failure message
    for route in ("answer", "whisper", "status"):  # a forged token is refused, signature or not
        forged = transfers.carrier.plivo(f"/carriers/plivo/transfer/{route}?call={call_id}&token=forged", {})
        assert forged.status_code == 403, forged.text


def test_a_placed_plivo_call_is_transferred_by_its_call_uuid(transfers: Transfers) -> None:
    """Plivo names a placed call by its request_uuid until it is answered; the transfer takes the CallUUID the
    answer brought."""
    plivo = transfers.carriers["plivo"]
    plivo.pause = 0.5  # the person and the agent talk a while
    route = transfers.http.put(
        f"/numbers/{transfers.number}", json={"agent_id": "support-agent", "outbound_carriers": ["plivo"]}
    )
    assert route.status_code == 200, route.text
    placed = transfers.http.post(
        "/calls/outbound", json={"to": "+14155550142", "from": transfers.number, "carrier": "plivo"}
    )
    assert placed.status_code == 202, placed.text
    call_id = placed.json()["call_id"]
    deadline = time.monotonic() + 10
    while transfers.http.get(f"/calls/{call_id}").json()["status"] not in ("answered", "bridged"):
        assert time.monotonic() < deadline, "the placed call was never answered"
        time.sleep(0.02)
    [call] = {id(call): call for call in plivo.calls.values()}.values()  # known by its request_uuid and CallUUID
    record = transfers.http.get(f"/calls/{call_id}").json()
    assert record["carrier_call_id"] == call.request["call_uuid"] != call.sid  # the CallUUID, not the request_uuid
    assert transfers.transfer(call_id, to="+14155550199").status_code == 202
    assert any(path.endswith(f"/Call/{call.request['call_uuid']}/") for _, path, _ in plivo.requests)


# --- REFER: the Millis leg asks Twilio (its <Dial referUrl>), Twilio asks the stack ------------------------


def answered_with_refer_url(transfers: Transfers) -> tuple[str, str, str]:
    """A Twilio call the stack answered: (call_id, CallSid, the <Dial>'s referUrl)."""
    sid = "CA" + uuid.uuid4().hex
    params = {"CallSid": sid, "AccountSid": ACCOUNT, "From": "+14155550123", "To": transfers.number}
    answer = transfers.carrier.twilio("/carriers/twilio/voice", params)
    dial = ElementTree.fromstring(answer.text).find("Dial")  # noqa: S314 - the stack's own TwiML
    assert dial is not None and dial.attrib["referMethod"] == "POST", answer.text
    call_id = transfers.sim.issued[-1][0]
    assert dial.attrib["referUrl"] == f"{transfers.server.url}/carriers/twilio/refer?call={call_id}"
    return call_id, sid, dial.attrib["referUrl"]


def test_a_refer_to_an_allowed_number_is_answered_with_a_dial_to_it(transfers: Transfers) -> None:
    """The agent's SIP leg sends REFER; Twilio requests the <Dial>'s referUrl with ReferTransferTarget; the stack
    answers the transfer's TwiML, and the transfer leg's report closes the record's transfer."""
    call_id, sid, url = answered_with_refer_url(transfers)
    answer = transfers.twilio.refer(sid, url, "<sip:+14155550199@sip-us-west.millis.example;user=phone>")  # type: ignore[attr-defined]
    assert answer.status_code == 200, answer.text
    number = ElementTree.fromstring(answer.text).find("Dial/Number")  # noqa: S314
    assert number is not None and number.text == "+14155550199"
    record = transfers.settled(call_id, "connected")
    transfer = record["transfer"]
    assert (transfer["to"], transfer["mode"], transfer["requested_by"], transfer["status"]) == (
        "+14155550199",
        "cold",
        "refer",
        "connected",
    )


@pytest.mark.parametrize(
    ("refer_to", "status", "error"),
    [
        ("<tel:+442071838750>", 403, "transfer_target_not_allowed"),
        ("<sip:agent@elsewhere.example>", 403, "transfer_target_not_allowed"),
        ("<mailto:agent@pbx.example.com>", 403, "transfer_target_not_allowed"),
    ],
)
def test_a_refer_the_guards_refuse_is_declined_and_the_call_stays_with_the_agent(
    transfers: Transfers, refer_to: str, status: int, error: str
) -> None:
    call_id, sid, url = answered_with_refer_url(transfers)
    answer = transfers.twilio.refer(sid, url, refer_to)  # type: ignore[attr-defined]
    assert answer.status_code == status and error in answer.text, answer.text
    record = transfers.http.get(f"/calls/{call_id}").json()
    assert record["transfer"] is None and record["status"] == "claimed", record  # still with the agent
    assert not [twiml for call, twiml in transfers.twilio.redirects if call == sid]


def test_a_refer_for_another_call_or_twice_is_refused(transfers: Transfers) -> None:
    call_id, sid, url = answered_with_refer_url(transfers)
    other = transfers.twilio.refer("CA" + uuid.uuid4().hex, url, "<tel:+14155550199>")  # type: ignore[attr-defined]
    assert other.status_code == 404, other.text  # the URL names a call the REFER did not come on
    transfers.twilio.pause = 1.0  # the first transfer stays under way a while
    assert transfers.twilio.refer(sid, url, "<tel:+14155550199>").status_code == 200  # type: ignore[attr-defined]
    again = transfers.twilio.refer(sid, url, "<tel:+14155550198>")  # type: ignore[attr-defined]
    assert again.status_code == 409 and "transfer_in_progress" in again.text, again.text
    unsigned = transfers.http.post(url.removeprefix(transfers.server.url), data={"ReferTransferTarget": "<tel:+1>"})
    assert unsigned.status_code == 403
    assert call_id


# --- Chime (docs/transfers.md, "What happens at Chime") -------------------------------------------------------
# ApiFunction's ChimeCalls speaks botocore to the Chime stand-in (AWS_ENDPOINT_URL_CHIME_SDK_VOICE, SigV4), which
# plays the CALL_UPDATE_REQUESTED sequence to SipMediaAppFunction as Chime does; both functions over DynamoDB Local.

SIP_MEDIA_APPLICATION = "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9"


class ChimeTransfers:
    def __init__(self, server: LocalApi, chime: ChimeStandIn) -> None:
        self.server, self.chime = server, chime
        self.http = httpx.Client(base_url=server.url, headers={"x-api-key": API_KEY}, timeout=30)
        self.number = "+1505555" + str(uuid.uuid4().int)[:4]
        route = self.http.put(
            f"/numbers/{self.number}", json={"agent_id": "support-agent", "outbound_carriers": ["chime"]}
        )
        assert route.status_code in (200, 201), route.text

    def inbound_call(self) -> tuple[str, str]:
        """A caller rings the stack's Chime number; the call is bridged to its agent. (call_id, TransactionId)"""
        tx = self.chime.ring_in("+14155550123", self.number)
        attributes = self.chime.calls[tx].request["attributes"]
        return attributes["millis_call_id"], tx

    def outbound_call(self) -> tuple[str, str]:
        """The stack calls a person (a number ending 2222 stays with the agent until transferred)."""
        person = "+1415" + str(uuid.uuid4().int)[:3] + "2222"
        placed = self.http.post("/calls/outbound", json={"to": person, "from": self.number, "carrier": "chime"})
        assert placed.status_code == 202, placed.text
        call_id = placed.json()["call_id"]
        record = self.status(call_id, "bridged")
        assert record["status"] == "bridged", record
        [tx] = [sid for sid, call in self.chime.calls.items() if call.request.get("ToPhoneNumber") == person]
        return call_id, tx

    def transfer(self, call_id: str, **body: Any) -> httpx.Response:
        return self.http.post(f"/calls/{call_id}/transfer", json=body)

    def status(self, call_id: str, *statuses: str, seconds: float = 10) -> dict[str, Any]:
        return record_when(self.http, call_id, lambda r: r.get("status") in statuses, seconds)

    def settled(self, call_id: str, *statuses: str, seconds: float = 10) -> dict[str, Any]:
        return record_when(self.http, call_id, lambda r: (r.get("transfer") or {}).get("status") in statuses, seconds)


@pytest.fixture
def chime_transfers(
    make_api: Callable[..., ModuleType], make_sma: Callable[..., ModuleType], sim: MillisSimulator
) -> Iterator[ChimeTransfers]:
    functions: dict[str, ModuleType] = {}
    chime = ChimeStandIn(SIP_MEDIA_APPLICATION, lambda e, c: functions["sma"].lambda_handler(e, c))
    with chime.running():
        server = LocalApi(lambda e, c: functions["api"].lambda_handler(e, c), api_key=API_KEY, port=0)
        settings = {
            "PUBLIC_BASE_URL": server.url,
            "TRANSFER_ALLOWED_TARGETS": ALLOWED,
            "OUTBOUND_ALLOWED_PREFIXES": "+1",
            "CHIME_SIP_MEDIA_APPLICATION_ID": SIP_MEDIA_APPLICATION,
            "AWS_ENDPOINT_URL_CHIME_SDK_VOICE": chime.url,
        }
        functions["api"] = make_api(**settings)
        functions["sma"] = make_sma(**settings)
        with server:
            yield ChimeTransfers(server, chime)


def chime_invocations(chime: ChimeStandIn, tx: str) -> list[str]:
    return chime.calls[tx].events


def test_a_chime_inbound_call_is_transferred_cold_to_a_number(chime_transfers: ChimeTransfers) -> None:
    call_id, tx = chime_transfers.inbound_call()
    answer = chime_transfers.transfer(call_id, to="+14155550199", announce="Putting you through.")
    assert answer.status_code == 202, answer.text
    assert answer.json()["transfer"]["status"] == "in_progress"
    record = chime_transfers.settled(call_id, "connected", "failed")
    assert record["transfer"]["status"] == "connected", record
    events = chime_invocations(chime_transfers.chime, tx)
    assert events[:3] == ["millis leg hung up", "transferred to +14155550199", "person answered"], events
    # what SipMediaAppFunction answered to the update, the Hangup's result and the bridge's, in Chime's order
    answered = [(kind, [a["Type"] for a in reply["Actions"]]) for kind, reply in chime_transfers.chime.invocations]
    assert ("CALL_UPDATE_REQUESTED", ["Hangup"]) in answered
    assert ("ACTION_SUCCESSFUL", ["Speak", "CallAndBridge"]) in answered
    ended = chime_transfers.status(call_id, "ended")
    assert (ended["status"], ended["reason"]) == ("ended", "transfer_target_hung_up"), ended


def test_a_chime_outbound_call_is_transferred_cold(chime_transfers: ChimeTransfers) -> None:
    call_id, tx = chime_transfers.outbound_call()
    answer = chime_transfers.transfer(call_id, to="+14155550199")
    assert answer.status_code == 202, answer.text
    record = chime_transfers.settled(call_id, "connected", "failed")
    assert record["transfer"]["status"] == "connected", record
    assert "transferred to +14155550199" in chime_invocations(chime_transfers.chime, tx)


def test_a_chime_target_that_does_not_answer_fails_the_transfer_and_the_caller_hears_the_failure_message(
    chime_transfers: ChimeTransfers,
) -> None:
    call_id, tx = chime_transfers.inbound_call()
    assert chime_transfers.transfer(call_id, to="+14155550000").status_code == 202
    record = chime_transfers.settled(call_id, "failed", "connected")
    assert record["transfer"]["status"] == "failed", record
    events = chime_invocations(chime_transfers.chime, tx)
    deadline = time.monotonic() + 5
    while "hung up" not in events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events[-3:] == ["Speak", "Hangup", "hung up"], events  # the failure message, then the hang-up


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"to": "+14155550199", "mode": "warm", "summary": "Ana"}, 422, "transfer_unavailable"),  # no whisper
        ({"to": "sip:sales@pbx.example.com"}, 422, "transfer_unavailable"),  # SIP only through a Voice Connector
        ({"to": "+447700900123"}, 403, "transfer_target_not_allowed"),
    ],
)
def test_chime_refusals_send_nothing(
    chime_transfers: ChimeTransfers, body: dict[str, Any], status: int, error: str
) -> None:
    call_id, _ = chime_transfers.inbound_call()
    seen = len(chime_transfers.chime.invocations)
    answer = chime_transfers.transfer(call_id, **body)
    assert (answer.status_code, answer.json()["error"]) == (status, error), answer.text
    assert chime_transfers.http.get(f"/calls/{call_id}").json().get("transfer") is None
    assert len(chime_transfers.chime.invocations) == seen  # nothing reached Chime, nor the function


def test_a_chime_call_that_is_over_is_not_transferable(chime_transfers: ChimeTransfers) -> None:
    call_id, tx = chime_transfers.inbound_call()
    chime_transfers.chime.calls[tx].events.append("hung up")  # Chime's transaction is over (NotFoundException)
    answer = chime_transfers.transfer(call_id, to="+14155550199")
    assert (answer.status_code, answer.json()["error"]) == (409, "call_not_transferable"), answer.text
    assert chime_transfers.http.get(f"/calls/{call_id}").json()["transfer"]["status"] == "failed"

"""Telnyx TeXML, Vonage and Plivo end to end, through the local API server (InboundFunction behind the
template's routes) against DynamoDB Local and the Millis simulator. Each carrier's webhooks are signed the
way the carrier signs them, with its own library where it has one: an Ed25519 key pair (PyNaCl, what Telnyx's
SDK verifies with) for Telnyx, PyJWT HS256 tokens with a payload_hash (what vonage-jwt verifies) for Vonage,
the plivo SDK's signature_v3 helpers for Plivo. Answers are parsed as their formats define them: TeXML as
TwiML, NCCO as JSON checked against the documented actions, Plivo XML element by element."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import jwt
import pytest
from nacl.signing import SigningKey
from plivo.utils.signature_v3 import (  # type: ignore[import-untyped]
    construct_post_url,
    get_signature_v3,
    validate_v3_signature,
)

from dev.local_api import LocalApi
from dev.millis_simulator import Fault, MillisSimulator
from millis_sip.adapters.dynamodb.store import DynamoCallStore, DynamoNumberRoutes
from millis_sip.core.calls import CallerVerification, CallStatus
from millis_sip.core.numbers import NumberRoute
from millis_sip.core.ports import TransactionState, transaction_key
from tests.support import twiml
from tests.support.carrier_requests import (
    PLIVO_TOKEN,
    TELNYX_KEY,
    CarrierRequests,
    inbound_server,
    pending_registration,
)
from tests.support.rig import NUMBERS_TABLE, STACK_KEYS, TABLE

pytestmark = pytest.mark.integration
DIALED = "+15055550144"


class Carriers(CarrierRequests):
    """The local API with InboundFunction, and each carrier signing as it signs (tests/support/carrier_requests.py)."""

    def __init__(self, server: LocalApi, store: DynamoCallStore, sim: MillisSimulator) -> None:
        super().__init__(server.url, httpx.Client(base_url=server.url, timeout=30))
        self.server, self.store, self.sim = server, store, sim

    def vonage_get(self, path: str, params: dict[str, str], **signer: Any) -> httpx.Response:
        return self.vonage(path, params, method="GET", **signer)

    def vonage_post(self, path: str, event: dict[str, Any], **signer: Any) -> httpx.Response:
        return self.vonage(path, event, **signer)

    def record(self, sip_uri: str) -> Any:
        return self.store.get(sip_uri.removeprefix("sip:call-").split("@")[0].split("?")[0])


@pytest.fixture
def carriers(make_inbound: Callable[..., ModuleType], sim: MillisSimulator, dynamodb: Any) -> Iterator[Carriers]:
    with inbound_server(make_inbound, "more-carriers-key") as server:
        carriers = Carriers(server, DynamoCallStore(dynamodb, TABLE, keys=STACK_KEYS), sim)
        yield carriers
        carriers.http.close()


def caller() -> str:
    return "+1206" + str(uuid.uuid4().int)[:7]


def sip_parts(uri_with_headers: str) -> tuple[str, dict[str, str]]:
    uri, _, headers = uri_with_headers.partition("?")
    return uri, dict(parse_qsl(headers))


# --- Telnyx TeXML ----------------------------------------------------------------------------------------------


def telnyx_call(number: str, **extra: str) -> dict[str, str]:
    return {"CallSid": f"v3:{uuid.uuid4().hex}", "From": number, "To": DIALED, "ConnectionId": "1494404757140276705"}


def test_a_telnyx_call_is_answered_with_texml_that_dials_millis_with_the_headers(carriers: Carriers) -> None:
    params = {**telnyx_call(caller()), "SipHeader_X-Customer-Id": "c-42"}
    answer = carriers.telnyx("/carriers/telnyx/voice", params)
    assert answer.status_code == 200, answer.text
    root = twiml.parse(answer.text)
    assert twiml.verbs(root) == ["Dial"]
    dial = root[0]
    assert dial.attrib["callerId"] == params["From"]  # the caller's number reaches Millis
    assert dial.attrib["action"] == f"{carriers.server.url}/carriers/telnyx/status"
    uri, headers = sip_parts((dial[0].text or "").strip())
    millis_id = uri.removeprefix("sip:call-").split("@")[0]
    assert headers == {"X-Millis-Call-Id": millis_id, "X-Carrier": "telnyx", "X-Carrier-Call-Id": params["CallSid"]}
    [registration] = carriers.sim.registrations()
    assert registration.body["metadata"]["caller_supplied"]["sip_x_customer_id"] == "c-42"
    assert registration.body["metadata"]["carrier"] == "telnyx"


@pytest.mark.parametrize("forgery", ["tampered", "other_key", "stale", "future", "missing"])
def test_a_telnyx_request_that_is_not_signed_right_is_refused(carriers: Carriers, forgery: str) -> None:
    params = telnyx_call(caller())
    if forgery == "tampered":
        body = urlencode(params).encode()
        timestamp = str(int(time.time()))
        signature = base64.b64encode(TELNYX_KEY.sign(f"{timestamp}|".encode() + body).signature).decode()
        altered = urlencode({**params, "From": "+14155550100"})
        answer = carriers.http.post(
            "/carriers/telnyx/voice",
            content=altered,
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "telnyx-signature-ed25519": signature,
                "telnyx-timestamp": timestamp,
            },
        )
    elif forgery == "other_key":
        answer = carriers.telnyx("/carriers/telnyx/voice", params, key=SigningKey(b"\x09" * 32))
    elif forgery == "stale":
        answer = carriers.telnyx("/carriers/telnyx/voice", params, signed_at=time.time() - 301)
    elif forgery == "future":
        answer = carriers.telnyx("/carriers/telnyx/voice", params, signed_at=time.time() + 301)
    else:
        answer = carriers.http.post("/carriers/telnyx/voice", data=params)
    assert answer.status_code == 403, answer.text
    assert carriers.sim.registrations() == []


def test_a_telnyx_dial_action_closes_the_record(carriers: Carriers) -> None:
    params = telnyx_call(caller())
    answer = carriers.telnyx("/carriers/telnyx/voice", params)
    uri = (twiml.parse(answer.text)[0][0].text or "").strip()
    done = carriers.telnyx(
        "/carriers/telnyx/status", {**params, "DialCallStatus": "completed", "DialCallDuration": "17"}
    )
    assert twiml.verbs(twiml.parse(done.text)) == ["Hangup"]
    record = carriers.record(uri)
    assert (record.status, record.duration_seconds) == (CallStatus.ENDED, 17)


def pending(carriers: Carriers, number: str, verification: CallerVerification) -> str:
    """The backend's registration for ``number``, made directly in the store as POST /calls stores it."""
    return pending_registration(carriers.store, number, verification).call_id


def test_a_telnyx_caller_attested_a_claims_its_registration(carriers: Carriers) -> None:
    number = caller()
    call_id = pending(carriers, number, CallerVerification.ATTESTATION)
    attested = {**telnyx_call(number), "ShakenStirAttestation": "A", "ShakenStirValidated": "true"}
    answer = carriers.telnyx("/carriers/telnyx/voice", attested)
    uri, _ = sip_parts((twiml.parse(answer.text)[0][0].text or "").strip())
    assert uri == f"sip:call-{call_id}@sip-us-west.millis-simulator.test"
    assert carriers.sim.registrations() == []


# --- Vonage ----------------------------------------------------------------------------------------------------

# The NCCO actions this product answers with, as the NCCO reference defines them (only documented fields).
NCCO_ACTIONS: dict[str, set[str]] = {
    "connect": {"action", "endpoint", "from", "randomFromNumber", "eventType", "eventUrl", "eventMethod"},
    "talk": {"action", "text", "language", "bargeIn"},
    "input": {"action", "type", "dtmf", "eventUrl", "eventMethod"},
}


def ncco(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    actions: list[dict[str, Any]] = response.json()
    assert isinstance(actions, list)
    for action in actions:
        assert set(action) <= NCCO_ACTIONS[action["action"]], action
        if action["action"] == "connect":
            [endpoint] = action["endpoint"]
            assert endpoint["type"] == "sip" and endpoint["uri"].startswith("sip:")
            assert isinstance(action["eventUrl"], list)  # an array, even for one URL
            assert "from" not in action or str(action["from"]).isdigit()  # E.164 digits without the +
            assert all(not name.lower().startswith("x-") for name in endpoint["headers"])  # Vonage adds X-
        if action["action"] == "talk":
            assert 0 < len(action["text"]) <= 1500
        if action["action"] == "input":
            assert action["type"] == ["dtmf"] and 1 <= action["dtmf"]["maxDigits"] <= 20
    return actions


def vonage_call(number: str) -> dict[str, str]:
    return {
        "to": DIALED.removeprefix("+"),
        "from": number.removeprefix("+"),
        "uuid": str(uuid.uuid4()),
        "conversation_uuid": f"CON-{uuid.uuid4()}",
    }


def test_a_vonage_answer_url_get_is_answered_with_a_connect_to_millis(carriers: Carriers) -> None:
    params = vonage_call(caller())
    [connect] = ncco(carriers.vonage_get("/carriers/vonage/answer", params))
    assert connect["action"] == "connect"
    assert connect["from"] == params["from"]
    [endpoint] = connect["endpoint"]
    millis_id = endpoint["uri"].removeprefix("sip:call-").split("@")[0]
    assert endpoint["headers"] == {
        "Millis-Call-Id": millis_id,
        "Carrier": "vonage",
        "Carrier-Call-Id": params["conversation_uuid"],
    }
    assert connect["eventUrl"] == [f"{carriers.server.url}/carriers/vonage/event"]  # the first attempt: no query
    [registration] = carriers.sim.registrations()
    assert registration.body["metadata"]["caller_number"] == "+" + params["from"]


def test_a_vonage_answer_url_post_works_too_and_a_retry_registers_once(carriers: Carriers) -> None:
    params = vonage_call(caller())
    first = ncco(carriers.vonage_post("/carriers/vonage/answer", params))
    again = ncco(carriers.vonage_post("/carriers/vonage/answer", params))
    assert first == again
    assert len(carriers.sim.registrations()) == 1


@pytest.mark.parametrize("forgery", ["tampered", "other_secret", "other_application", "alg_none", "missing"])
def test_a_vonage_request_that_is_not_signed_right_is_refused(carriers: Carriers, forgery: str) -> None:
    params = vonage_call(caller())
    path = "/carriers/vonage/answer"
    if forgery == "tampered":
        payload = json.dumps(params, separators=(",", ":")).encode()
        token = carriers.vonage_token(payload)
        answer = carriers.http.get(
            path, params={**params, "from": "14155550100"}, headers={"Authorization": f"Bearer {token}"}
        )
    elif forgery == "other_secret":
        answer = carriers.vonage_get(path, params, secret="another-accounts-signature-secret")
    elif forgery == "other_application":
        answer = carriers.vonage_get(path, params, app="ffffffff-bbbb-cccc-dddd-eeeeeeeeeeee")
    elif forgery == "alg_none":
        payload = json.dumps(params, separators=(",", ":")).encode()
        claims = {"iat": int(time.time()), "payload_hash": hashlib.sha256(payload).hexdigest()}
        unsigned = jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]
        answer = carriers.http.get(path, params=params, headers={"Authorization": f"Bearer {unsigned}"})
    else:
        answer = carriers.http.get(path, params=params)
    assert answer.status_code == 403, answer.text
    assert carriers.sim.registrations() == []


def test_vonage_leg_events_bridge_and_close_the_record(carriers: Carriers) -> None:
    params = vonage_call(caller())
    [connect] = ncco(carriers.vonage_get("/carriers/vonage/answer", params))
    uri = connect["endpoint"][0]["uri"]
    leg = {"uuid": str(uuid.uuid4()), "conversation_uuid": params["conversation_uuid"], "direction": "outbound"}
    event = connect["eventUrl"][0].removeprefix(carriers.server.url)
    assert carriers.vonage_post(event, {**leg, "status": "answered"}).status_code == 204
    assert carriers.record(uri).status is CallStatus.BRIDGED
    done = carriers.vonage_post(event, {**leg, "status": "completed", "duration": "33"})
    assert done.status_code == 204
    record = carriers.record(uri)
    assert (record.status, record.leg_b_call_id, record.duration_seconds) == (CallStatus.ENDED, leg["uuid"], 33)


def test_a_failed_vonage_leg_is_answered_with_a_connect_to_the_other_region(carriers: Carriers) -> None:
    params = vonage_call(caller())
    [first] = ncco(carriers.vonage_get("/carriers/vonage/answer", params))
    leg = {"uuid": str(uuid.uuid4()), "conversation_uuid": params["conversation_uuid"], "direction": "outbound"}
    [second] = ncco(carriers.vonage_post("/carriers/vonage/event", {**leg, "status": "failed"}))
    assert "sip-us-west" in first["endpoint"][0]["uri"] and "sip-eu-west" in second["endpoint"][0]["uri"]
    assert second["from"] == first["from"] == params["from"]  # the call's caller ID, not the leg event's (none)
    [event_url] = second["eventUrl"]
    assert event_url.startswith(f"{carriers.server.url}/carriers/vonage/event?attempt=2&token=")
    assert carriers.record(first["endpoint"][0]["uri"]).status is CallStatus.FAILED


def test_the_callers_own_leg_events_change_nothing(carriers: Carriers) -> None:
    params = vonage_call(caller())
    ncco(carriers.vonage_get("/carriers/vonage/answer", params))
    inbound = {"uuid": params["uuid"], "conversation_uuid": params["conversation_uuid"], "direction": "inbound"}
    assert carriers.vonage_post("/carriers/vonage/event", {**inbound, "status": "completed"}).status_code == 204


def test_millis_down_over_vonage_talks_the_failure_message(carriers: Carriers) -> None:
    carriers.sim.set_fault("us-west", Fault(status=503))
    carriers.sim.set_fault("eu-west", Fault(status=503))
    [talk] = ncco(carriers.vonage_get("/carriers/vonage/answer", vonage_call(caller())))
    assert talk["action"] == "talk" and "Sorry" in talk["text"]


# --- Plivo -----------------------------------------------------------------------------------------------------

PLIVO_ELEMENTS: dict[str, set[str]] = {
    "Response": set(),
    "Dial": {"action", "method", "redirect", "callerId", "timeout"},
    "User": {"sipHeaders", "sendDigits", "sendOnPreanswer"},
    "GetInput": {
        "action",
        "method",
        "inputType",
        "numDigits",
        "finishOnKey",
        "digitEndTimeout",
        "executionTimeout",
        "log",
    },
    "Speak": {"voice", "language", "loop"},
    "Redirect": {"method"},
    "Hangup": {"reason", "schedule"},
}


def plivo_xml(response: httpx.Response) -> ET.Element:
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.text)  # noqa: S314 - the product's own answer, in a test
    assert root.tag == "Response"
    for element in root.iter():
        assert set(element.attrib) <= PLIVO_ELEMENTS[element.tag], element.tag
        if element.tag == "User":
            for pair in element.attrib["sipHeaders"].split(","):
                name, value = pair.split("=")
                assert name.isalnum() and len(name) <= 24
                assert all(c.isalnum() or c == "%" for c in value) and len(value) <= 120
    return root


def plivo_call(number: str) -> dict[str, str]:
    return {
        "CallUUID": str(uuid.uuid4()),
        "From": number,
        "To": DIALED,
        "Direction": "inbound",
        "CallStatus": "ringing",
    }


def test_a_plivo_call_dials_millis_with_the_headers_plivo_allows(carriers: Carriers) -> None:
    params = {**plivo_call(caller()), "X-PH-Account": "acme"}
    root = plivo_xml(carriers.plivo("/carriers/plivo/answer", params))
    [dial] = root
    assert dial.attrib["callerId"] == params["From"]
    [user] = dial
    millis_id = (user.text or "").removeprefix("sip:call-").split("@")[0]
    headers = dict(pair.split("=") for pair in user.attrib["sipHeaders"].split(","))
    assert headers["MillisCallId"].replace("%2D", "-") == millis_id
    assert headers["Carrier"] == "plivo"
    assert headers["CarrierCallId"].replace("%2D", "-") == params["CallUUID"]
    [registration] = carriers.sim.registrations()
    assert registration.body["metadata"]["caller_supplied"]["sip_x_ph_account"] == "acme"


def test_a_plivo_subaccounts_call_is_checked_against_the_main_accounts_signature(carriers: Carriers) -> None:
    # A subaccount's call carries V3 (subaccount token) and Ma-V3 (main account token); this stack holds the main.
    params, nonce = plivo_call(caller()), "98765432109876543210"
    url = construct_post_url(f"{carriers.server.url}/carriers/plivo/answer", params).decode()
    headers = {
        "X-Plivo-Signature-V3": get_signature_v3("U3ViYWNjb3VudFRva2VuMTIzNDU2Nzg5MA", url, nonce).decode(),
        "X-Plivo-Signature-Ma-V3": get_signature_v3(PLIVO_TOKEN, url, nonce).decode(),
        "X-Plivo-Signature-V3-Nonce": nonce,
    }
    answer = carriers.http.post("/carriers/plivo/answer", data=params, headers=headers)
    [dial] = plivo_xml(answer)
    assert dial.tag == "Dial"
    headers["X-Plivo-Signature-Ma-V3"] = headers["X-Plivo-Signature-V3"]  # neither signed by a token held here
    assert carriers.http.post("/carriers/plivo/answer", data=params, headers=headers).status_code == 403


@pytest.mark.parametrize("forgery", ["tampered", "other_token", "missing"])
def test_a_plivo_request_that_is_not_signed_right_is_refused(carriers: Carriers, forgery: str) -> None:
    params = plivo_call(caller())
    if forgery == "tampered":
        nonce = "12345678901234567890"
        url = f"{carriers.server.url}/carriers/plivo/answer"
        signature = get_signature_v3(PLIVO_TOKEN, construct_post_url(url, params).decode(), nonce).decode()
        answer = carriers.http.post(
            "/carriers/plivo/answer",
            data={**params, "From": "+14155550100"},
            headers={"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce},
        )
    elif forgery == "other_token":
        answer = carriers.plivo("/carriers/plivo/answer", params, token="YW5vdGhlci1hY2NvdW50cy10b2tlbg")
    else:
        answer = carriers.http.post("/carriers/plivo/answer", data=params)
    assert answer.status_code == 403, answer.text
    assert carriers.sim.registrations() == []


def test_the_plivo_hangup_url_closes_the_record(carriers: Carriers) -> None:
    params = plivo_call(caller())
    [dial] = plivo_xml(carriers.plivo("/carriers/plivo/answer", params))
    uri = (dial[0].text or "").strip()
    carriers.plivo("/carriers/plivo/status", {**params, "HangupCause": "NORMAL_CLEARING", "Duration": "48"})
    record = carriers.record(uri)
    assert (record.status, record.duration_seconds) == (CallStatus.ENDED, 48)


def test_a_failed_plivo_dial_dials_the_other_region(carriers: Carriers) -> None:
    params = plivo_call(caller())
    [first] = plivo_xml(carriers.plivo("/carriers/plivo/answer", params))
    [second] = plivo_xml(carriers.plivo("/carriers/plivo/status", {**params, "DialStatus": "failed"}))
    assert "sip-us-west" in (first[0].text or "") and "sip-eu-west" in (second[0].text or "")
    assert second.attrib["action"].startswith(f"{carriers.server.url}/carriers/plivo/status?attempt=2&token=")


# --- ids and fields in their documented forms ----------------------------------------------------------------


def test_a_field_moved_into_the_calluuid_keeps_plivos_signature_but_is_refused(carriers: Carriers) -> None:
    # Plivo's V3 signature joins the POST fields as name+value with no boundary: Direction=inbound moved into the
    # CallUUID's value signs the same, and Plivo's own validator accepts it. A CallUUID is a UUID: refused.
    params, nonce = plivo_call(caller()), "24680135792468013579"
    url = f"{carriers.server.url}/carriers/plivo/answer"
    signature = get_signature_v3(PLIVO_TOKEN, construct_post_url(url, params).decode(), nonce).decode()
    variant = {k: v for k, v in params.items() if k != "Direction"}
    variant["CallUUID"] += "Directioninbound"
    assert validate_v3_signature("POST", url, nonce, PLIVO_TOKEN, signature, variant)
    headers = {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}
    answer = carriers.http.post("/carriers/plivo/answer", data=variant, headers=headers)
    assert (answer.status_code, answer.text) == (
        400,
        "Bad request: CallUUID is missing or malformed: Plivo's CallUUID is a UUID.",
    )
    assert carriers.sim.registrations() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("CallSid", "v3:parent call id"),
        ("CallSid", "CA" + "0" * 32),  # Twilio's, not Telnyx's
        ("ConnectionId", "conn-1"),
        ("ShakenStirAttestation", "a"),
        ("ShakenStirValidated", "yes"),
        ("Digits", "1 2"),
    ],
)
def test_telnyxs_fields_are_read_only_in_their_documented_forms(carriers: Carriers, field: str, value: str) -> None:
    answer = carriers.telnyx("/carriers/telnyx/voice", {**telnyx_call(caller()), field: value})
    assert answer.status_code == 400 and answer.text.startswith(f"Bad request: {field} is missing or malformed")
    assert carriers.sim.registrations() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("conversation_uuid", "CON-not-a-uuid"),
        ("conversation_uuid", "a8527b6d-331b-44e3-b320-d3b6fa814adex"),
        ("uuid", "leg-1"),
        ("dtmf", {"digits": "12ab", "timed_out": False}),
        ("dtmf", ["1", "2"]),
    ],
)
def test_vonages_fields_are_read_only_in_their_documented_forms(carriers: Carriers, field: str, value: Any) -> None:
    answer = carriers.vonage_post("/carriers/vonage/answer", {**vonage_call(caller()), field: value})
    assert answer.status_code == 400, answer.text
    assert answer.text.startswith(f"Bad request: {field}")
    assert carriers.sim.registrations() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("DialStatus", "no_answer"), ("DialBLegDuration", "-1"), ("CallUUID", "97ceeb52-58b6-11e1-86da-77300b68f8bZ")],
)
def test_plivos_dial_action_is_read_only_in_its_documented_forms(carriers: Carriers, field: str, value: str) -> None:
    params = plivo_call(caller())
    [dial] = plivo_xml(carriers.plivo("/carriers/plivo/answer", params))
    refused = carriers.plivo("/carriers/plivo/status", {**params, "DialStatus": "failed", field: value})
    assert refused.status_code == 400 and field in refused.text
    assert carriers.record((dial[0].text or "").strip()).status is CallStatus.CLAIMED  # nothing moved
    assert len(carriers.sim.registrations()) == 1  # and no failover


# --- numbers as the carriers write them --------------------------------------------------------------------------


def test_a_plivo_call_to_a_routed_number_written_without_plus_reaches_the_route(
    carriers: Carriers, dynamodb: Any
) -> None:
    routes = DynamoNumberRoutes(dynamodb, NUMBERS_TABLE)
    routes.put(NumberRoute("+14155550100", agent_id="plivo-sales", metadata={"team": "sales"}))
    try:
        params = {**plivo_call("14155550123"), "To": "14155550100"}  # as Plivo writes numbers: no +
        [dial] = plivo_xml(carriers.plivo("/carriers/plivo/answer", params))
        assert dial.attrib["callerId"] == "+14155550123"  # the canonical number
        [registration] = carriers.sim.registrations()
        assert registration.body["agent_id"] == "plivo-sales"
        metadata = registration.body["metadata"]
        assert (metadata["team"], metadata["caller_number"], metadata["dialed_number"]) == (
            "sales",
            "+14155550123",
            "+14155550100",
        )
    finally:
        routes.delete("+14155550100")


def test_a_telnyx_caller_that_is_a_sip_address_has_no_number(carriers: Carriers) -> None:
    params = {**telnyx_call(caller()), "From": "Defaultj35z6@sip.telnyx.com"}
    [dial] = twiml.parse(carriers.telnyx("/carriers/telnyx/voice", params).text)
    assert "callerId" not in dial.attrib
    [registration] = carriers.sim.registrations()
    assert "caller_number" not in registration.body["metadata"]


# --- the state in this stack's action URLs -------------------------------------------------------------------


def test_a_telnyx_attempt_one_failure_replayed_to_the_second_attempts_url_changes_nothing(carriers: Carriers) -> None:
    # Telnyx signs the body, not the query: the first attempt's DialCallStatus=failed, replayed within 300 s to
    # ?attempt=2, would mark the live second attempt failed. Only the second attempt's URL, with its token, may.
    params = telnyx_call(caller())
    carriers.telnyx("/carriers/telnyx/voice", params)
    failed = {**params, "DialCallStatus": "failed"}
    [second] = twiml.parse(carriers.telnyx("/carriers/telnyx/status", failed).text)
    uri = (second[0].text or "").strip()
    action = second.attrib["action"]
    assert action.startswith(f"{carriers.server.url}/carriers/telnyx/status?attempt=2&token=")
    replayed = carriers.telnyx("/carriers/telnyx/status?attempt=2", failed)
    assert (replayed.status_code, replayed.text) == (
        403,
        "Forbidden: attempt=2 without this stack's token for this call.",
    )
    other = telnyx_call(caller())
    carriers.telnyx("/carriers/telnyx/voice", other)
    other_action = twiml.parse(carriers.telnyx("/carriers/telnyx/status", {**other, "DialCallStatus": "busy"}).text)
    other_token = other_action[0].attrib["action"].rpartition("token=")[2]
    with_other_token = carriers.telnyx(f"/carriers/telnyx/status?attempt=2&token={other_token}", failed)
    assert with_other_token.status_code == 403  # another call's token
    assert carriers.record(uri).status is CallStatus.CLAIMED  # the live second attempt is untouched
    done = carriers.telnyx(action.removeprefix(carriers.server.url), {**params, "DialCallStatus": "completed"})
    assert twiml.verbs(twiml.parse(done.text)) == ["Hangup"]
    assert carriers.record(uri).status is CallStatus.ENDED


def test_a_vonage_event_for_the_second_attempt_needs_its_token(carriers: Carriers) -> None:
    params = vonage_call(caller())
    ncco(carriers.vonage_get("/carriers/vonage/answer", params))
    leg = {"uuid": str(uuid.uuid4()), "conversation_uuid": params["conversation_uuid"], "direction": "outbound"}
    [second] = ncco(carriers.vonage_post("/carriers/vonage/event", {**leg, "status": "failed"}))
    refused = carriers.vonage_post("/carriers/vonage/event?attempt=2", {**leg, "status": "failed"})
    assert refused.status_code == 403, refused.text
    assert carriers.record(second["endpoint"][0]["uri"]).status is CallStatus.CLAIMED
    event = second["eventUrl"][0].removeprefix(carriers.server.url)
    assert carriers.vonage_post(event, {**leg, "status": "answered"}).status_code == 204
    assert carriers.record(second["endpoint"][0]["uri"]).status is CallStatus.BRIDGED


def test_a_plivo_status_for_the_second_attempt_needs_its_token(carriers: Carriers) -> None:
    params = plivo_call(caller())
    plivo_xml(carriers.plivo("/carriers/plivo/answer", params))
    [second] = plivo_xml(carriers.plivo("/carriers/plivo/status", {**params, "DialStatus": "failed"}))
    refused = carriers.plivo("/carriers/plivo/status?attempt=2", {**params, "DialStatus": "failed"})
    assert refused.status_code == 403, refused.text
    assert carriers.record((second[0].text or "").strip()).status is CallStatus.CLAIMED


def test_a_vonage_answer_payload_is_not_an_event_and_an_event_is_not_an_answer(carriers: Carriers) -> None:
    # The JWT says nothing of the URL it was for: the answer request's own token, replayed to the event URL, must
    # not count as an event (and an event's, replayed to the answer URL, not as a call).
    params = vonage_call(caller())
    ncco(carriers.vonage_post("/carriers/vonage/answer", params))
    at_event = carriers.vonage_post("/carriers/vonage/event", params)
    assert at_event.status_code == 400 and "status is missing or malformed" in at_event.text
    event = {**params, "status": "failed", "direction": "outbound"}
    at_answer = carriers.vonage_post("/carriers/vonage/answer", event)
    assert (at_answer.status_code, at_answer.text) == (
        400,
        "Bad request: an event payload (it has a status) is not an answer or an input's result.",
    )
    undocumented = carriers.vonage_post("/carriers/vonage/event", {**event, "status": "transferred"})
    assert undocumented.status_code == 400
    assert len(carriers.sim.registrations()) == 1


def test_a_vonage_body_is_read_only_after_its_signature(carriers: Carriers) -> None:
    unsigned = carriers.http.post(
        "/carriers/vonage/event", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert (unsigned.status_code, unsigned.text) == (403, "Forbidden: missing authorization.")
    body = b"{not json"
    headers = {"Authorization": f"Bearer {carriers.vonage_token(body)}", "content-type": "application/json"}
    signed = carriers.http.post("/carriers/vonage/event", content=body, headers=headers)
    assert (signed.status_code, signed.text) == (400, "Bad request: the body is not JSON.")


# --- requests the router does not answer again ---------------------------------------------------------------


def test_a_vonage_answer_replayed_after_its_call_ended_gets_an_empty_ncco(carriers: Carriers) -> None:
    params = vonage_call(caller())
    [connect] = ncco(carriers.vonage_get("/carriers/vonage/answer", params))
    leg = {"uuid": str(uuid.uuid4()), "conversation_uuid": params["conversation_uuid"], "direction": "outbound"}
    carriers.vonage_post("/carriers/vonage/event", {**leg, "status": "completed", "duration": 20})
    assert carriers.record(connect["endpoint"][0]["uri"]).status is CallStatus.ENDED
    assert ncco(carriers.vonage_get("/carriers/vonage/answer", params)) == []
    conflict = {**vonage_call(caller()), "conversation_uuid": params["conversation_uuid"]}
    assert ncco(carriers.vonage_get("/carriers/vonage/answer", conflict)) == []
    assert len(carriers.sim.registrations()) == 1


def test_a_telnyx_or_plivo_request_the_router_does_not_answer_again_gets_a_hang_up(carriers: Carriers) -> None:
    telnyx = telnyx_call(caller())
    carriers.telnyx("/carriers/telnyx/voice", telnyx)
    conflict = carriers.telnyx("/carriers/telnyx/voice", {**telnyx, "From": caller()})
    assert twiml.verbs(twiml.parse(conflict.text)) == ["Hangup"]
    plivo = plivo_call(caller())
    plivo_xml(carriers.plivo("/carriers/plivo/answer", plivo))
    carriers.plivo("/carriers/plivo/status", {**plivo, "HangupCause": "NORMAL_CLEARING", "Duration": "9"})
    [hangup] = plivo_xml(carriers.plivo("/carriers/plivo/answer", plivo))
    assert (hangup.tag, hangup.attrib) == ("Hangup", {})
    assert len(carriers.sim.registrations()) == 2


def test_a_failed_vonage_sip_leg_is_routed_again_for_the_number_the_caller_dialed(
    carriers: Carriers, dynamodb: Any
) -> None:
    # The event of the leg to Millis names that leg's own ends: its "to" is the SIP URI dialed. The other region
    # serves the same call: the number the caller dialed, and its route.
    routes = DynamoNumberRoutes(dynamodb, NUMBERS_TABLE)
    routes.put(NumberRoute(DIALED, agent_id="vonage-sales"))
    try:
        params = vonage_call(caller())
        [first] = ncco(carriers.vonage_get("/carriers/vonage/answer", params))
        leg = {
            "uuid": str(uuid.uuid4()),
            "conversation_uuid": params["conversation_uuid"],
            "direction": "outbound",
            "from": params["from"],
            "to": first["endpoint"][0]["uri"],
        }
        [second] = ncco(carriers.vonage_post("/carriers/vonage/event", {**leg, "status": "failed"}))
        assert "sip-eu-west" in second["endpoint"][0]["uri"]
        assert second["from"] == params["from"]
        retried = carriers.sim.registrations()[-1].body
        assert retried["agent_id"] == "vonage-sales"
        assert (retried["metadata"]["caller_number"], retried["metadata"]["dialed_number"]) == (
            "+" + params["from"],
            DIALED,
        )
    finally:
        routes.delete(DIALED)


def test_a_vonage_pin_answer_meets_its_challenge_whichever_spelling_of_the_conversation_it_carries(
    carriers: Carriers,
) -> None:
    # The answer request carries CON-<uuid>; the NCCO reference's input results show the bare UUID. Both are one
    # call: the PIN keyed in must reach the challenge the answer started.
    number = caller()
    call_id = pending(carriers, number, CallerVerification.PIN)
    params = vonage_call(number)
    talk, prompt = ncco(carriers.vonage_get("/carriers/vonage/answer", params))
    assert (talk["action"], prompt["action"]) == ("talk", "input")
    bare = params["conversation_uuid"].removeprefix("CON-").upper()
    keyed = {**params, "conversation_uuid": bare, "dtmf": {"digits": STACK_KEYS.pin(call_id), "timed_out": False}}
    [connect] = ncco(carriers.vonage_post("/carriers/vonage/answer", keyed))
    assert connect["endpoint"][0]["uri"] == f"sip:call-{call_id}@sip-us-west.millis-simulator.test"
    assert carriers.sim.registrations() == []
    mark = carriers.store.transaction_mark(transaction_key("vonage", params["conversation_uuid"], 1))
    assert mark is not None and (mark.state, mark.millis_call_id) == (TransactionState.DONE, call_id)

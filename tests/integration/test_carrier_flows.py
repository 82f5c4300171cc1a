"""Carriers and SIP servers end to end, through the local API server (ApiFunction and InboundFunction behind
the template's routes) against DynamoDB Local and the Millis simulator. Twilio's own library signs every
webhook (twilio.request_validator.RequestValidator, as Twilio signs them); its answers are parsed as the
TwiML the docs define."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from dev.carrier_signing import twilio_signature
from dev.local_api import LocalApi
from dev.millis_simulator import Fault, MillisSimulator
from millis_sip.adapters.dynamodb.store import DynamoCallStore
from millis_sip.core.calls import CallStatus
from millis_sip.core.ports import transaction_key
from tests.support import twiml
from tests.support.carrier_requests import CarrierRequests
from tests.support.rig import STACK_KEYS, TABLE, TWILIO_AUTH_TOKEN
from tests.unit.carriers.test_twilio_signature import MultiDict

pytestmark = pytest.mark.integration
API_KEY = "carrier-flow-key"
DIALED = "+15055550123"


class Phone:
    """The local API with both functions, and a Twilio that signs its webhooks with the account's token
    (``dev/carrier_signing.py``, through twilio's own RequestValidator)."""

    def __init__(self, server: LocalApi, store: DynamoCallStore, sim: MillisSimulator) -> None:
        self.server, self.store, self.sim = server, store, sim
        self.http = httpx.Client(base_url=server.url, timeout=30)
        self.carrier = CarrierRequests(server.url, self.http)  # Twilio signs with the rig's auth token

    def twilio_post(
        self, path: str, params: dict[str, str], *, token: str | None = None, signed_url: str | None = None
    ) -> httpx.Response:
        return self.carrier.twilio(path, params, token=token, signed_url=signed_url)

    def ring(self, caller: str, sid: str | None = None, **extra: str) -> tuple[httpx.Response, dict[str, str]]:
        params = {
            "CallSid": sid or f"CA{uuid.uuid4().hex}",
            "AccountSid": "AC" + "0" * 32,
            "From": caller,
            "To": DIALED,
            "Direction": "inbound",
            "CallStatus": "ringing",
            **extra,
        }
        return self.twilio_post("/carriers/twilio/voice", params), params

    def api(self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, headers={"x-api-key": API_KEY, **(headers or {})}, **kwargs)


@pytest.fixture
def phone(
    make_api: Callable[..., ModuleType],
    make_inbound: Callable[..., ModuleType],
    sim: MillisSimulator,
    dynamodb: Any,
) -> Iterator[Phone]:
    functions: dict[str, ModuleType] = {}
    server = LocalApi(
        lambda e, c: functions["api"].lambda_handler(e, c),
        api_key=API_KEY,
        port=0,
        functions={"InboundFunction": lambda e, c: functions["inbound"].lambda_handler(e, c)},
    )
    functions["api"] = make_api()
    functions["inbound"] = make_inbound(PUBLIC_BASE_URL=server.url)  # what Twilio is configured to call
    with server:
        phone = Phone(server, DynamoCallStore(dynamodb, TABLE, keys=STACK_KEYS), sim)
        yield phone
        phone.http.close()


def caller() -> str:
    return "+1206" + str(uuid.uuid4().int)[:7]


def dial(response: httpx.Response) -> tuple[str, str]:
    """The SIP URI and the action URL of a <Dial><Sip> answer (the X- headers it carries are checked here)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    root = twiml.parse(response.text)
    assert twiml.verbs(root) == ["Dial"], response.text
    dial_verb = root[0]
    assert dial_verb.attrib["answerOnBridge"] == "true"
    [sip] = list(dial_verb)
    uri, _, headers = (sip.text or "").strip().partition("?")
    millis_id = uri.removeprefix("sip:call-").split("@")[0]
    assert dict(parse_qsl(headers)) == {
        "X-Millis-Call-Id": millis_id,
        "X-Carrier": "twilio",
        "X-Carrier-Call-Id": dict(parse_qsl(response.request.content.decode()))["CallSid"],
    }
    return uri, dial_verb.attrib["action"]


# --- Twilio: a call in, TwiML out ----------------------------------------------------------------------------


def test_a_signed_call_is_bridged_to_a_fresh_registration_and_recorded(phone: Phone) -> None:
    answer, params = phone.ring(caller())
    uri, action = dial(answer)
    [registration] = phone.sim.registrations()
    assert uri.startswith("sip:call-sim-") and uri.endswith("millis-simulator.test")
    assert action == f"{phone.server.url}/carriers/twilio/status"
    body = registration.body
    assert body["agent_id"] == "phone-agent"
    assert body["metadata"] == {
        "caller_number": params["From"],
        "dialed_number": DIALED,
        "carrier": "twilio",
        "carrier_call_id": params["CallSid"],
        "twilio_account_sid": params["AccountSid"],
    }
    record = phone.store.get(uri.split("call-", 1)[1].split("@")[0])
    assert record is not None
    assert (record.status, record.source, record.transaction_id) == (CallStatus.CLAIMED, "twilio", params["CallSid"])


def test_a_retried_webhook_gets_the_same_answer_and_never_a_second_registration(phone: Phone) -> None:
    number = caller()
    first, params = phone.ring(number)
    again, _ = phone.ring(number, sid=params["CallSid"])
    assert dial(first) == dial(again)
    assert len(phone.sim.registrations()) == 1


@pytest.mark.parametrize("forgery", ["tampered", "wrong_url", "missing", "old_token"])
def test_a_request_twilio_did_not_sign_is_refused_and_changes_nothing(phone: Phone, forgery: str) -> None:
    params = {"CallSid": f"CA{uuid.uuid4().hex}", "From": caller(), "To": DIALED}
    path, url = "/carriers/twilio/voice", f"{phone.server.url}/carriers/twilio/voice"
    if forgery == "tampered":
        signature = twilio_signature(url, {**params, "From": "+14155550100"}, TWILIO_AUTH_TOKEN)
        answer = phone.http.post(path, data=params, headers={"X-Twilio-Signature": signature})
    elif forgery == "wrong_url":
        signature = twilio_signature("https://elsewhere.example/carriers/twilio/voice", params, TWILIO_AUTH_TOKEN)
        answer = phone.http.post(path, data=params, headers={"X-Twilio-Signature": signature})
    elif forgery == "missing":
        answer = phone.http.post(path, data=params)
    else:  # signed with a token this stack no longer holds (rotated out)
        answer = phone.twilio_post(path, params, token="an-auth-token-rotated-out")
    assert answer.status_code == 403, answer.text
    assert phone.sim.registrations() == []
    assert phone.store.transaction_mark(transaction_key("twilio", params["CallSid"], 1)) is None


def test_a_request_signed_for_localhost_is_told_which_url_the_stack_checks(phone: Phone) -> None:
    """Signed for http://localhost:PORT while the stack is given http://127.0.0.1:PORT: refused all the same, with
    both URLs named, instead of a bare signature mismatch."""
    params = {"CallSid": f"CA{uuid.uuid4().hex}", "From": caller(), "To": DIALED}
    port = phone.server.url.rsplit(":", 1)[1]
    signed = twilio_signature(f"http://localhost:{port}/carriers/twilio/voice", params, TWILIO_AUTH_TOKEN)
    headers = {"X-Twilio-Signature": signed, "host": f"localhost:{port}"}
    answer = phone.http.post("/carriers/twilio/voice", data=params, headers=headers)
    assert answer.status_code == 403, answer.text
    assert f"signed for http://localhost:{port}" in answer.text and phone.server.url in answer.text, answer.text
    assert phone.sim.registrations() == []
    wrong = twilio_signature(f"http://localhost:{port}/carriers/twilio/voice", params, "not-the-token")
    other = phone.http.post("/carriers/twilio/voice", data=params, headers={**headers, "X-Twilio-Signature": wrong})
    assert other.status_code == 403 and "localhost" not in other.text  # not signed for either: no hint


def test_signalwire_laml_signs_under_its_own_header_name(phone: Phone) -> None:
    # SignalWire's validator is Twilio's (signalwire-python delegates to it) over the project's signing key.
    params = {"CallSid": f"{uuid.uuid4()}", "AccountSid": str(uuid.uuid4()), "From": caller(), "To": DIALED}
    signature = twilio_signature(f"{phone.server.url}/carriers/twilio/voice", params, TWILIO_AUTH_TOKEN)
    answer = phone.http.post("/carriers/twilio/voice", data=params, headers={"X-SignalWire-Signature": signature})
    assert dial(answer)[0].startswith("sip:call-sim-")


def test_the_dial_action_closes_the_record_with_twilios_duration(phone: Phone) -> None:
    answer, params = phone.ring(caller())
    uri, _ = dial(answer)
    done = phone.twilio_post(
        "/carriers/twilio/status",
        {**params, "DialCallStatus": "completed", "DialCallDuration": "42", "DialCallSid": "CA" + "1" * 32},
    )
    assert twiml.verbs(twiml.parse(done.text)) == ["Hangup"]
    record = phone.store.get(uri.split("call-", 1)[1].split("@")[0])
    assert record is not None
    assert (record.status, record.duration_seconds, record.reason) == (CallStatus.ENDED, 42, "call_completed")
    assert record.bridged_at is not None and record.ended_at is not None


def test_a_failed_bridge_dials_the_other_region_once_then_says_goodbye(phone: Phone) -> None:
    answer, params = phone.ring(caller())
    first_uri, _ = dial(answer)
    failed = phone.twilio_post("/carriers/twilio/status", {**params, "DialCallStatus": "failed"})
    second_uri, action = dial(failed)
    assert "sip-us-west" in first_uri and "sip-eu-west" in second_uri
    assert action.startswith(f"{phone.server.url}/carriers/twilio/status?attempt=2&token=")
    again = phone.twilio_post(action.removeprefix(phone.server.url), {**params, "DialCallStatus": "no-answer"})
    assert twiml.verbs(twiml.parse(again.text)) == ["Say", "Hangup"]
    first = phone.store.get(first_uri.split("call-", 1)[1].split("@")[0])
    assert first is not None and (first.status, first.reason) == (CallStatus.FAILED, "dial_failed")


def test_a_field_moved_into_the_callsid_keeps_twilios_signature_but_is_refused(phone: Phone) -> None:
    # Twilio signs names and values with no boundary: CallStatus=ringing moved into the CallSid's value signs the
    # same, and Twilio's own validator accepts it. Read as a CallSid it would be another call (a new Millis session
    # per variant); a CallSid is CA and 32 hex digits, so the variant is refused before the router sees it.
    params = {"CallSid": f"CA{uuid.uuid4().hex}", "From": caller(), "To": DIALED, "CallStatus": "ringing"}
    url = f"{phone.server.url}/carriers/twilio/voice"
    signature = twilio_signature(url, params, TWILIO_AUTH_TOKEN)
    variant = {"CallSid": params["CallSid"] + "CallStatusringing", "From": params["From"], "To": DIALED}
    from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

    assert RequestValidator(TWILIO_AUTH_TOKEN).validate(url, variant, signature)  # Twilio's own check says yes
    answer = phone.http.post("/carriers/twilio/voice", data=variant, headers={"X-Twilio-Signature": signature})
    assert (answer.status_code, answer.text) == (
        400,
        "Bad request: CallSid is missing or malformed: Twilio's CallSid is CA and 32 hex digits.",
    )
    assert phone.sim.registrations() == []
    assert phone.store.transaction_mark(transaction_key("twilio", variant["CallSid"], 1)) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("CallSid", "CA1234567890ABCDE"),  # Twilio's documented example: 17 characters
        ("CallSid", "CA" + "X" * 32),  # the docs' placeholder: not hex
        ("AccountSid", "AC" + "0" * 31),
        ("StirVerstat", "TN-Validation-Passed-AFromCity"),
        ("Digits", "12To"),
        ("CallSid", "ca" + "0" * 32 + "\n"),
    ],
)
def test_twilios_fields_are_read_only_in_their_documented_forms(phone: Phone, field: str, value: str) -> None:
    params = {"CallSid": f"CA{uuid.uuid4().hex}", "From": caller(), "To": DIALED, field: value}
    answer = phone.twilio_post("/carriers/twilio/voice", params)
    assert answer.status_code == 400, answer.text
    assert answer.text.startswith(f"Bad request: {field} is missing or malformed")
    assert phone.sim.registrations() == []


@pytest.mark.parametrize(("field", "value"), [("DialCallStatus", "no_answer"), ("DialCallDuration", "12.5")])
def test_a_dial_action_is_read_only_in_its_documented_words(phone: Phone, field: str, value: str) -> None:
    answer, params = phone.ring(caller())
    uri, _ = dial(answer)
    refused = phone.twilio_post("/carriers/twilio/status", {**params, "DialCallStatus": "completed", field: value})
    assert refused.status_code == 400 and field in refused.text
    record = phone.store.get(uri.split("call-", 1)[1].split("@")[0])
    assert record is not None and record.status is CallStatus.CLAIMED  # nothing moved


def test_a_field_sent_twice_is_refused(phone: Phone) -> None:
    sid = f"CA{uuid.uuid4().hex}"
    pairs = [("CallSid", sid), ("From", caller()), ("To", DIALED), ("To", "+15055550999")]
    url = f"{phone.server.url}/carriers/twilio/voice"
    signature = twilio_signature(url, MultiDict(pairs), TWILIO_AUTH_TOKEN)
    headers = {"X-Twilio-Signature": signature, "content-type": "application/x-www-form-urlencoded"}
    answer = phone.http.post("/carriers/twilio/voice", content=urlencode(pairs), headers=headers)
    assert (answer.status_code, answer.text) == (400, "Bad request: To is missing or malformed: sent more than once.")


def test_a_signalwire_call_is_read_with_signalwires_ids(phone: Phone) -> None:
    # Under X-SignalWire-Signature the ids are SignalWire's (UUIDs): a Twilio CallSid is not one.
    url = f"{phone.server.url}/carriers/twilio/voice"
    params = {"CallSid": f"CA{uuid.uuid4().hex}", "From": caller(), "To": DIALED}
    headers = {"X-SignalWire-Signature": twilio_signature(url, params, TWILIO_AUTH_TOKEN)}
    answer = phone.http.post("/carriers/twilio/voice", data=params, headers=headers)
    assert (answer.status_code, answer.text) == (
        400,
        "Bad request: CallSid is missing or malformed: SignalWire's CallSid is a UUID.",
    )


# --- numbers as Twilio writes them ------------------------------------------------------------------------------


def test_a_withheld_caller_id_is_no_number_and_claims_nothing(phone: Phone) -> None:
    # Twilio writes a withheld caller as the keypad digits of ANONYMOUS: no caller's number, not +266696687's.
    register(phone, "+266696687", caller_verification="trust_caller_id")
    answer, _ = phone.ring("+266696687")
    uri, _ = dial(answer)
    assert "callerId" not in twiml.parse(answer.text)[0].attrib
    _, registration = phone.sim.registrations()  # the backend's, then the default agent's
    assert "caller_number" not in registration.body["metadata"]
    assert registration.body["agent_id"] == "phone-agent"
    record = phone.store.get(uri.split("call-", 1)[1].split("@")[0])
    assert record is not None and record.caller_number is None


def test_a_sip_caller_reaches_millis_without_a_number(phone: Phone) -> None:
    answer, _ = phone.ring("sip:alice@example.com")
    dial(answer)
    [registration] = phone.sim.registrations()
    assert "caller_number" not in registration.body["metadata"]
    assert registration.body["metadata"]["dialed_number"] == DIALED


# --- the state in this stack's action URLs ------------------------------------------------------------------------


def test_a_pin_declined_without_this_stacks_token_is_refused(phone: Phone) -> None:
    number = caller()
    register(phone, number, caller_verification="pin")
    asked, params = phone.ring(number)
    redirect = twiml.parse(asked.text)[1].text or ""
    other = phone.twilio_post("/carriers/twilio/voice", {**params, "CallSid": f"CA{uuid.uuid4().hex}"})
    other_token = (twiml.parse(other.text)[1].text or "").rpartition("token=")[2]
    for query in ("pin=none", f"pin=none&token={other_token}"):  # none, and another call's
        refused = phone.twilio_post(f"/carriers/twilio/voice?{query}", params)
        assert refused.status_code == 403, refused.text
        assert refused.text == "Forbidden: pin=none without this stack's token for this call."
    assert len(phone.sim.registrations()) == 1  # only the backend's: nothing went on without the PIN
    assert dial(phone.twilio_post(redirect.removeprefix(phone.server.url), params))  # the stack's own URL works


# --- requests the router does not answer again -------------------------------------------------------------------


def test_a_voice_webhook_replayed_after_its_call_ended_gets_a_hang_up(phone: Phone) -> None:
    answer, params = phone.ring(caller())
    dial(answer)
    done = phone.twilio_post("/carriers/twilio/status", {**params, "DialCallStatus": "completed"})
    assert twiml.verbs(twiml.parse(done.text)) == ["Hangup"]
    replayed = phone.twilio_post("/carriers/twilio/voice", params)
    assert twiml.verbs(twiml.parse(replayed.text)) == ["Hangup"]  # no failure message, no second session
    assert len(phone.sim.registrations()) == 1


def test_a_call_id_asked_again_for_other_numbers_gets_a_hang_up(phone: Phone) -> None:
    answer, params = phone.ring(caller())
    dial(answer)
    conflict = phone.twilio_post("/carriers/twilio/voice", {**params, "From": caller()})
    assert twiml.verbs(twiml.parse(conflict.text)) == ["Hangup"]
    assert len(phone.sim.registrations()) == 1


def test_millis_down_says_the_failure_message_and_hangs_up(phone: Phone) -> None:
    phone.sim.set_fault("us-west", Fault(status=503))
    phone.sim.set_fault("eu-west", Fault(status=503))
    answer, _ = phone.ring(caller())
    root = twiml.parse(answer.text)
    assert twiml.verbs(root) == ["Say", "Hangup"]
    assert root[0].attrib["voice"] == "Polly.Joanna-Neural"


# --- caller verification over Twilio -------------------------------------------------------------------------


def register(phone: Phone, number: str, **fields: Any) -> dict[str, Any]:
    created = phone.api("POST", "/calls", json={"agent_id": "crm-agent", "lookup_key": number, **fields})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def test_a_pin_is_asked_for_then_unlocks_the_callers_registration(phone: Phone) -> None:
    number = caller()
    registered = register(phone, number, caller_verification="pin")
    answer, params = phone.ring(number)
    root = twiml.parse(answer.text)
    assert twiml.verbs(root) == ["Gather", "Redirect"]  # nothing keyed in: the next verb says so
    gather, declined = root
    assert (gather.attrib["numDigits"], gather.attrib["action"]) == ("6", f"{phone.server.url}/carriers/twilio/voice")
    assert (declined.text or "").startswith(f"{phone.server.url}/carriers/twilio/voice?pin=none&token=")
    keyed = phone.twilio_post("/carriers/twilio/voice", {**params, "Digits": registered["pin"]})
    uri, _ = dial(keyed)
    assert uri == registered["sip_uri"]
    assert len(phone.sim.registrations()) == 1  # only the backend's


def test_a_wrong_pin_is_asked_again(phone: Phone) -> None:
    number = caller()
    registered = register(phone, number, caller_verification="pin")
    _, params = phone.ring(number)
    wrong = "0" * 6 if registered["pin"] != "0" * 6 else "1" * 6
    again = phone.twilio_post("/carriers/twilio/voice", {**params, "Digits": wrong})
    assert twiml.verbs(twiml.parse(again.text)) == ["Gather", "Redirect"]


def test_no_pin_keyed_in_goes_on_to_the_default_agent(phone: Phone) -> None:
    number = caller()
    registered = register(phone, number, caller_verification="pin")
    asked, params = phone.ring(number)
    redirect = twiml.parse(asked.text)[1].text or ""  # the prompt's "nothing keyed in" URL, with its token
    declined = phone.twilio_post(redirect.removeprefix(phone.server.url), params)
    uri, _ = dial(declined)
    assert uri != registered["sip_uri"]
    assert phone.sim.registrations()[-1].body["agent_id"] == "phone-agent"


@pytest.mark.parametrize(("verstat", "claims"), [("TN-Validation-Passed-A", True), ("TN-Validation-Passed-B", False)])
def test_an_attested_caller_claims_its_registration(phone: Phone, verstat: str, claims: bool) -> None:
    number = caller()
    registered = register(phone, number)  # caller_verification attestation, the default
    answer, _ = phone.ring(number, StirVerstat=verstat)
    uri, _ = dial(answer)
    assert (uri == registered["sip_uri"]) is claims


def test_a_number_route_names_the_agent(phone: Phone) -> None:
    route = phone.api("PUT", f"/numbers/{DIALED}", json={"agent_id": "sales-agent", "metadata": {"team": "sales"}})
    assert route.status_code in (200, 201), route.text
    try:
        answer, _ = phone.ring(caller())
        dial(answer)
        [registration] = phone.sim.registrations()
        assert registration.body["agent_id"] == "sales-agent"
        assert registration.body["metadata"]["team"] == "sales"
    finally:
        assert phone.api("DELETE", f"/numbers/{DIALED}").status_code == 204


# --- SIP servers: GET /route -----------------------------------------------------------------------------------


def test_route_answers_json_and_is_idempotent_on_the_call_id(phone: Phone) -> None:
    query = {"to": DIALED, "from": caller(), "call": f"{uuid.uuid4()}@pbx.example"}
    first = phone.api("GET", "/route", params=query)
    again = phone.api("GET", "/route", params=query)
    assert first.status_code == 200, first.text
    assert first.json() == again.json()
    body = first.json()
    assert body["sip_uri"].startswith("sip:call-sim-")
    assert body["headers"] == {
        "X-Millis-Call-Id": body["call_id"],
        "X-Carrier": "sip",
        "X-Carrier-Call-Id": query["call"],
    }
    assert len(phone.sim.registrations()) == 1


def test_route_answers_one_line_of_text_for_sip_servers(phone: Phone) -> None:
    query = {"to": DIALED, "from": caller(), "call": f"{uuid.uuid4()}@pbx.example"}
    answer = phone.api("GET", "/route", params=query, headers={"Accept": "text/plain"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    [line] = answer.text.splitlines()
    uri, _, headers = line.partition("?")
    assert uri.startswith("sip:call-sim-") and headers.startswith("X-Millis-Call-Id=")


def test_route_without_an_agent_is_404_and_needs_the_api_key(
    phone: Phone, make_inbound: Callable[..., ModuleType]
) -> None:
    query = {"to": "+15055550000", "from": caller(), "call": f"{uuid.uuid4()}@pbx.example"}
    assert phone.http.get("/route", params=query).status_code == 403  # API Gateway: no key
    assert phone.api("GET", "/route", params={"to": DIALED}).status_code == 400  # no call id
    quiet = make_inbound(DEFAULT_AGENT_ID="", PUBLIC_BASE_URL=phone.server.url)
    with LocalApi(lambda e, c: e, api_key=API_KEY, port=0, functions={"InboundFunction": quiet.lambda_handler}) as s:
        refused = httpx.get(f"{s.url}/route", params=query, headers={"x-api-key": API_KEY})
    assert refused.status_code == 404
    assert refused.json()["reason"] == "no_agent"
    assert phone.sim.registrations() == []


def test_route_503_asks_for_a_retry_that_registers_once_millis_is_back(phone: Phone) -> None:
    query = {"to": DIALED, "from": caller(), "call": f"{uuid.uuid4()}@pbx.example"}
    for region in ("us-west", "eu-west"):
        phone.sim.set_fault(region, Fault(status=503, times=1))
    refused = phone.api("GET", "/route", params=query)
    assert (refused.status_code, refused.headers.get("retry-after")) == (503, "1")
    assert refused.json() == {"error": "unavailable", "reason": "millis_unavailable"}
    retried = phone.api("GET", "/route", params=query)  # as Retry-After asks: Millis has recovered
    assert retried.status_code == 200, retried.text
    assert phone.api("GET", "/route", params=query).json() == retried.json()  # and that answer now stays
    assert len(phone.sim.issued) == 1  # the refused attempts got no call_id; the retry got one


def test_route_502_for_a_fault_a_retry_will_not_cure(phone: Phone) -> None:
    query = {"to": DIALED, "from": caller(), "call": f"{uuid.uuid4()}@pbx.example"}
    for region in ("us-west", "eu-west"):
        phone.sim.set_fault(region, Fault(status=401))  # the Millis key is rejected: an operator must act
    refused = phone.api("GET", "/route", params=query, headers={"Accept": "text/plain"})
    assert (refused.status_code, refused.text) == (502, "bridge_fault: millis_key_rejected\n")
    assert "retry-after" not in refused.headers


def test_route_429_once_the_numbers_hourly_cap_is_reached(phone: Phone) -> None:
    capped = "+15055550777"
    route = phone.api("PUT", f"/numbers/{capped}", json={"agent_id": "sales-agent", "max_calls_per_hour": 1.0})
    assert route.status_code in (200, 201) and route.json()["max_calls_per_hour"] == 1  # 1.0 is 1
    try:
        queries = [{"to": capped, "from": caller(), "call": f"{uuid.uuid4()}@pbx.example"} for _ in range(2)]
        assert phone.api("GET", "/route", params=queries[0]).status_code == 200
        refused = phone.api("GET", "/route", params=queries[1], headers={"Accept": "text/plain"})
        assert (refused.status_code, refused.text) == (429, "over_hourly_cap: over_hourly_cap\n")
        assert "retry-after" not in refused.headers
        half = phone.api("PUT", f"/numbers/{capped}", json={"agent_id": "sales-agent", "max_calls_per_hour": 1.5})
        assert half.status_code == 400 and "max_calls_per_hour" in half.json()["message"]
    finally:
        phone.api("DELETE", f"/numbers/{capped}")


def test_route_reads_numbers_in_any_spelling_a_sip_server_writes(phone: Phone) -> None:
    route = phone.api("PUT", f"/numbers/{DIALED}", json={"agent_id": "sales-agent"})
    assert route.status_code in (200, 201), route.text
    try:
        query = {"to": DIALED.removeprefix("+"), "from": "sip:alice@example.com", "call": f"{uuid.uuid4()}@pbx"}
        first = phone.api("GET", "/route", params=query)
        assert first.status_code == 200, first.text
        [registration] = phone.sim.registrations()
        assert registration.body["agent_id"] == "sales-agent"  # 15055550123 is +15055550123
        metadata = registration.body["metadata"]
        assert metadata["dialed_number"] == DIALED and "caller_number" not in metadata  # a SIP user: no number
        again = phone.api("GET", "/route", params={**query, "to": f"sip:{DIALED}@pbx.example;user=phone"})
        assert again.json() == first.json()  # the same call, the same numbers: the same answer
    finally:
        phone.api("DELETE", f"/numbers/{DIALED}")


def test_route_refuses_a_plus_sent_as_a_space_and_unknown_parameters(phone: Phone) -> None:
    call = f"{uuid.uuid4()}@pbx.example"
    spaced = phone.api("GET", f"/route?to=+15055550123&from=%2B14155550155&call={call}")  # a raw + reads as a space
    assert spaced.status_code == 400
    assert spaced.json() == {
        "error": "invalid_request",
        "message": "to starts with a space: a '+' in a query string reads as a space; "
        "URL-encode it as %2B (to=%2B14155550100)",
    }
    typo = phone.api("GET", "/route", params={"to": DIALED, "call": call, "form": "text"})
    assert typo.status_code == 400
    assert typo.json()["message"] == (
        "Unknown query parameter 'form': /route takes these query parameters: attestation, call, format, from, pin, to"
    )
    twice = phone.api("GET", f"/route?to=%2B15055550123&to=%2B15055550999&call={call}")
    assert (twice.status_code, twice.json()["message"]) == (400, "to is given more than once")
    assert phone.sim.registrations() == []


def test_route_answers_409_for_a_call_id_asked_for_other_numbers_or_a_call_that_is_over(phone: Phone) -> None:
    query = {"to": DIALED, "from": caller(), "call": f"{uuid.uuid4()}@pbx.example"}
    first = phone.api("GET", "/route", params=query)
    assert first.status_code == 200, first.text
    conflict = phone.api("GET", "/route", params={**query, "to": "+15055550999"})
    assert conflict.status_code == 409
    assert conflict.json() == {
        "error": "call_conflict",
        "reason": "call_conflict",
        "message": "this call id was first asked for other numbers: do not relay the call",
    }
    record = phone.store.get(first.json()["call_id"])
    assert record is not None
    phone.store.transition(  # Millis' session webhook closed the call
        replace(record, ended_at=record.created_at, reason="millis_ended"),
        CallStatus.ENDED,
        allowed_from=(CallStatus.CLAIMED,),
        now=record.created_at,
    )
    replayed = phone.api("GET", "/route", params=query, headers={"Accept": "text/plain"})
    assert (replayed.status_code, replayed.text) == (409, "call_ended: call_ended\n")
    assert len(phone.sim.registrations()) == 1


# --- claims bound to their proof, as the security review reproduced them over GET /route ----------------------


def test_route_never_gives_a_callers_registration_to_a_call_to_that_number(phone: Phone) -> None:
    # A pin and an attestation registration for a customer's number; an INVITE whose Request-URI user is that
    # number (anyone can send one) took the customer's session and moved it to claimed.
    customer = caller()
    made = [register(phone, customer, caller_verification=kind) for kind in ("pin", "attestation")]
    stranger = {"to": customer, "from": "+19995550000", "call": f"{uuid.uuid4()}@pbx.example"}
    answer = phone.api("GET", "/route", params={**stranger, "attestation": "A"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["sip_uri"] not in {m["sip_uri"] for m in made}  # the default agent, not the customer
    for registration in made:
        record = phone.store.get(registration["call_id"])
        assert record is not None and record.status is CallStatus.REGISTERED


def test_route_takes_a_dialed_number_registration_for_a_call_to_it(phone: Phone) -> None:
    line = caller()
    made = register(phone, line, caller_verification="dialed_number")
    answer = phone.api("GET", "/route", params={"to": line, "from": caller(), "call": f"{uuid.uuid4()}@pbx"})
    assert (answer.status_code, answer.json()["sip_uri"]) == (200, made["sip_uri"])
    not_a_number = phone.api("POST", "/calls", json={"lookup_key": "line-7", "caller_verification": "dialed_number"})
    assert not_a_number.status_code == 400 and "E.164" in not_a_number.json()["message"]


def test_route_pin_guesses_racing_each_other_are_counted_before_any_is_compared(phone: Phone) -> None:
    # 25 simultaneous tries (24 wrong, 1 right): each read the registration before any counted, so all 24 wrong
    # ones were counted and the right one still claimed it. Now at most MAX_PIN_FAILURES are ever compared.
    from concurrent.futures import ThreadPoolExecutor

    from millis_sip.core.calls import MAX_PIN_FAILURES

    customer = caller()
    registered = register(phone, customer, caller_verification="pin")
    wrong = [f"{(int(registered['pin']) + i) % 10**6:06d}" for i in range(1, 25)]
    guesses = [*wrong[:12], registered["pin"], *wrong[12:]]

    def guess(pin: str) -> httpx.Response:
        query = {"to": DIALED, "from": customer, "call": f"{uuid.uuid4()}@pbx.example", "pin": pin}
        with httpx.Client(base_url=phone.server.url, timeout=30) as http:
            return http.get("/route", params=query, headers={"x-api-key": API_KEY})

    with ThreadPoolExecutor(max_workers=25) as pool:
        answers = list(pool.map(guess, guesses))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    record = phone.store.get(registered["call_id"])
    assert record is not None and record.pin_failures <= MAX_PIN_FAILURES
    claimed = [a for a in answers if a.json()["sip_uri"] == registered["sip_uri"]]
    assert len(claimed) == (1 if record.status is CallStatus.CLAIMED else 0)
    assert record.pin_failures == MAX_PIN_FAILURES or record.status is CallStatus.CLAIMED


def test_route_counts_every_spelling_of_a_number_under_one_hourly_cap(phone: Phone) -> None:
    # Seven spellings of one number started 14 sessions under a cap of 2: each spelling had a counter of its own.
    capped = "+1505" + str(uuid.uuid4().int)[:7]
    route = phone.api("PUT", f"/numbers/{capped}", json={"agent_id": "sales-agent", "max_calls_per_hour": 2})
    assert route.status_code == 201, route.text
    digits = capped.removeprefix("+")
    spellings = [
        capped,
        digits,
        f"00{digits}",
        f"tel:{capped}",
        f"+{digits[0]}-{digits[1:4]}-{digits[4:7]}-{digits[7:]}",
        f"{capped};x",
        f"sip:{capped}@pbx.example;user=phone",
    ]
    try:
        answers = [
            phone.api("GET", "/route", params={"to": to, "from": caller(), "call": f"{uuid.uuid4()}@pbx"})
            for to in spellings
        ]
        assert [a.status_code for a in answers] == [200, 200, 429, 429, 429, 429, 429]
        assert len(phone.sim.registrations()) == 2
    finally:
        phone.api("DELETE", f"/numbers/{capped}")

"""Every request the stack sends a carrier's call-control API, validated by that carrier's own description:
Twilio's OpenAPI (twilio/twilio-oai) served by Prism (a request the description does not allow is answered 422
with the field named, and the test fails); for Plivo and Telnyx, the request each one's own SDK sends for the
same operation (Telnyx's is generated from Telnyx's OpenAPI description, whose whole file is beyond what can be
vendored here), both captured by a loopback server; for Vonage, its OpenAPI description of the Voice API
(Nexmo/api-specification) served by Prism, and the application JWT checked with PyJWT against the public key;
for Chime, botocore's model of chime-sdk-voice through Stubber."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import pytest

from millis_sip.adapters.call_control.chime import ChimeCalls
from millis_sip.adapters.call_control.http import CarrierApi, new_client
from millis_sip.adapters.call_control.plivo import PlivoCalls
from millis_sip.adapters.call_control.plivo import describe as plivo_describe
from millis_sip.adapters.call_control.telnyx import TelnyxCalls
from millis_sip.adapters.call_control.telnyx import describe as telnyx_describe
from millis_sip.adapters.call_control.twilio import TwilioCalls, describe
from millis_sip.adapters.call_control.vonage import VonageCalls
from millis_sip.adapters.call_control.vonage import describe as vonage_describe
from millis_sip.core.errors import (
    CallNotTransferable,
    CarrierCredentialsRejected,
    CarrierRefusedCall,
    CarrierUnavailable,
)
from millis_sip.core.ports import PlaceCall
from millis_sip.core.transfer import TransferMode, TransferPlan, TransferRequest
from tests.support.capture import Capture, Captured, capture_server
from tests.support.prism import SPECS, prism_mock

pytestmark = pytest.mark.integration
ACCOUNT = "AC" + "0" * 32


@pytest.fixture(scope="module")
def twilio_api() -> Iterator[str]:
    with prism_mock(SPECS / "twilio" / "twilio_api_v2010.calls.json") as base:
        yield base + "/2010-04-01"


def call(machine_detection: str = "off") -> PlaceCall:
    return PlaceCall(
        call_id="call-1",
        to="+14155550123",
        from_="+15055550100",
        answer_url="https://bridge.example/carriers/twilio/outbound?call=call-1&t=tok",
        status_url="https://bridge.example/carriers/twilio/outbound/status?call=call-1&t=tok",
        ring_timeout_seconds=25,
        machine_detection=machine_detection,
    )


def twilio(base: str) -> TwilioCalls:
    api = CarrierApi("twilio", new_client(), describe=describe)
    return TwilioCalls(api, account_sid=ACCOUNT, secret=lambda: "token", base_url=base)


@pytest.mark.parametrize("machine_detection", ["off", "hangup", "message"])
def test_twilio_accepts_the_calls_the_stack_places(twilio_api: str, machine_detection: str) -> None:
    placed = twilio(twilio_api).place(call(machine_detection), budget=10)
    assert (placed.carrier_call_id or "").startswith("CA")  # the sid of Twilio's documented example


def test_twilio_accepts_the_cancel(twilio_api: str) -> None:
    twilio(twilio_api).cancel("CA" + "a" * 32, budget=10)


def test_the_oracle_refuses_what_twilio_does_not_allow(twilio_api: str) -> None:
    """What a wrong request gets: Prism names the field, and the stack's error says so."""
    api = CarrierApi("twilio", new_client(), describe=describe)
    with pytest.raises(CarrierRefusedCall, match="HTTP 422"):
        api.send(
            "POST",
            f"{twilio_api}/Accounts/{ACCOUNT}/Calls.json",
            budget=10,
            auth=(ACCOUNT, "token"),
            data={"To": "+14155550123", "Timeout": "soon"},
        )


def test_a_request_without_credentials_is_refused_as_twilio_would(twilio_api: str) -> None:
    api = CarrierApi("twilio", new_client(), describe=describe)
    with pytest.raises(CarrierCredentialsRejected, match="HTTP 401"):
        api.send("POST", f"{twilio_api}/Accounts/{ACCOUNT}/Calls.json", budget=10, data={"To": "+14155550123"})


# --- Plivo: the request Plivo's own SDK sends for the same operation, captured on loopback ----------------

PLIVO_ID = "MA" + "X" * 18
PLIVO_ACCEPTED = {"api_id": "97ceeb52", "message": "call fired", "request_uuid": "75a0ab80-58b6-11e1-86da-adf28403fe48"}


def plivo_sdk_request(base: str, capture: Capture, **arguments: Any) -> Captured:
    import plivo  # type: ignore[import-untyped]
    import plivo.rest.client  # type: ignore[import-untyped]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plivo.rest.client, "API_VOICE_BASE_URI", base + "/v1/Account")
        client = plivo.RestClient(PLIVO_ID, "plivo-token")
        client.calls.create(**arguments)
    return capture.take()


@pytest.mark.parametrize("machine_detection", ["off", "hangup", "message"])
def test_plivo_calls_are_placed_as_plivos_sdk_places_them(machine_detection: str) -> None:
    capture = Capture(201, PLIVO_ACCEPTED)
    with capture_server(capture) as base:
        dialer = PlivoCalls(
            CarrierApi("plivo", new_client(), describe=plivo_describe),
            auth_id=PLIVO_ID,
            secret=lambda: "plivo-token",
            base_url=base + "/v1/Account",
        )
        placed = dialer.place(call(machine_detection), budget=10)
        ours = capture.take()
        detection: dict[str, Any] = {}
        if machine_detection != "off":
            detection = {"machine_detection": {"hangup": "hangup", "message": "true"}[machine_detection]}
        sdk = plivo_sdk_request(
            base,
            capture,
            from_="15055550100",
            to_="14155550123",
            answer_url=call().answer_url,
            answer_method="POST",
            ring_url=call().status_url,
            hangup_url=call().status_url,
            ring_timeout=25,
            **detection,
        )
    assert placed.carrier_call_id == PLIVO_ACCEPTED["request_uuid"]
    assert (ours.method, ours.path, ours.content_type) == (sdk.method, sdk.path, sdk.content_type)
    assert ours.headers["authorization"] == sdk.headers["authorization"]
    # Every field the stack sends is the SDK's, with the same value and type; the SDK adds only its defaults.
    sent, expected = ours.fields(), sdk.fields()
    assert {k: expected.get(k) for k in sent} == sent
    assert set(expected) - set(sent) <= {
        "fallback_method",
        "machine_detection_time",
        "machine_detection_method",
        "error_if_parent_not_found",
    }


def test_a_plivo_cancel_is_the_sdks_cancel() -> None:
    import plivo
    import plivo.rest.client

    capture = Capture(204, {})
    with capture_server(capture) as base:
        dialer = PlivoCalls(
            CarrierApi("plivo", new_client(), describe=plivo_describe),
            auth_id=PLIVO_ID,
            secret=lambda: "plivo-token",
            base_url=base + "/v1/Account",
        )
        dialer.cancel("75a0ab80", budget=10)
        ours = capture.take()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(plivo.rest.client, "API_VOICE_BASE_URI", base + "/v1/Account")
            plivo.RestClient(PLIVO_ID, "plivo-token").calls.cancel("75a0ab80")
        sdk = capture.take()
    assert (ours.method, ours.path, ours.body) == (sdk.method, sdk.path, sdk.body)


def test_a_plivo_transfer_is_the_sdks_transfer_of_the_a_leg() -> None:
    """Plivo's transfer moves the A leg (the caller's) to aleg_url, which the stack serves."""
    import plivo
    import plivo.rest.client

    call_uuid = "55309cee-821d-11e4-9a73-498d468c930b"
    answer_url = "https://bridge.example/carriers/plivo/transfer/answer?call=call-1&token=t"
    plan = TransferPlan(
        "call-1",
        call_uuid,
        "+14155550199",
        TransferMode.COLD,
        None,
        None,
        "https://bridge.example/carriers/plivo/transfer/status?call=call-1&token=t",
        "https://bridge.example/carriers/plivo/transfer/whisper?call=call-1&token=t",
        answer_url=answer_url,
    )
    capture = Capture(202, {"api_id": "08c94608", "message": "call transfered"})  # sic: Plivo's documented answer
    with capture_server(capture) as base:
        dialer = PlivoCalls(
            CarrierApi("plivo", new_client(), describe=plivo_describe),
            auth_id=PLIVO_ID,
            secret=lambda: "plivo-token",
            base_url=base + "/v1/Account",
        )
        dialer.transfer(plan, budget=10)
        ours = capture.take()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(plivo.rest.client, "API_VOICE_BASE_URI", base + "/v1/Account")
            client = plivo.RestClient(PLIVO_ID, "plivo-token")
            client.calls.transfer(call_uuid, legs="aleg", aleg_url=answer_url, aleg_method="POST")
        sdk = capture.take()
    assert (ours.method, ours.path, ours.content_type) == (sdk.method, sdk.path, sdk.content_type)
    assert ours.headers["authorization"] == sdk.headers["authorization"]
    # Every field the stack sends is the SDK's, with the same value; the SDK repeats the path's call_uuid too.
    sent, expected = ours.fields(), sdk.fields()
    assert {k: expected.get(k) for k in sent} == sent and set(expected) - set(sent) == {"call_uuid"}


# --- Telnyx: the request Telnyx's own SDK sends for the same operation, captured on loopback -------------

TELNYX_ACCOUNT = "f5586561-8ff0-4291-a51b-c7dfe4139ff9"  # the AccountSid of Telnyx's callback examples
TELNYX_APP = "1293384261075731499"  # the ApplicationSid example of the SDK's description
TELNYX_ACCEPTED = {"from": "+15055550100", "to": "+14155550123", "status": "queued"}  # the documented answer


def telnyx_dialer(base: str) -> TelnyxCalls:
    api = CarrierApi("telnyx", new_client(), describe=telnyx_describe)
    return TelnyxCalls(
        api, account_sid=TELNYX_ACCOUNT, application_id=TELNYX_APP, secret=lambda: "KEY-telnyx", base_url=base
    )


def telnyx_sdk() -> Any:
    import telnyx

    return telnyx


@pytest.mark.parametrize("machine_detection", ["off", "hangup", "message"])
def test_telnyx_calls_are_placed_as_telnyxs_sdk_places_them(machine_detection: str) -> None:
    capture = Capture(200, TELNYX_ACCEPTED)
    with capture_server(capture) as base:
        placed = telnyx_dialer(base).place(call(machine_detection), budget=10)
        ours = capture.take()
        client = telnyx_sdk().Telnyx(api_key="KEY-telnyx", base_url=base, max_retries=0)
        client.texml.accounts.calls.calls(TELNYX_ACCOUNT, body=ours.fields())
        sdk = capture.take()
    assert placed.carrier_call_id is None  # Telnyx's answer names none: the first status callback brings it
    assert (ours.method, ours.path, ours.content_type) == (sdk.method, sdk.path, sdk.content_type)
    assert ours.headers["authorization"] == sdk.headers["authorization"]
    assert ours.fields() == sdk.fields()
    # Every field is one the SDK's description of the operation names (its wire alias), of its type and, where
    # it lists them, one of its values; the fields it requires are there.
    fields = telnyx_body_fields()
    for name, value in ours.fields().items():
        assert name in fields, name
        kind, allowed = fields[name]
        assert isinstance(value, kind), (name, value)
        assert allowed is None or value in allowed, (name, value)
    assert ours.fields()["Url"] == call().answer_url
    assert ("MachineDetection" in ours.fields()) is (machine_detection != "off")


def telnyx_body_fields() -> dict[str, tuple[type, tuple[Any, ...] | None]]:
    """The SDK's ``BodyWithURL`` (a call whose TeXML comes from ``Url``): wire name -> (type, allowed values)."""
    import typing

    from telnyx.types.texml.accounts.call_calls_params import BodyWithURL

    fields: dict[str, tuple[type, tuple[Any, ...] | None]] = {}
    for hint in typing.get_type_hints(BodyWithURL, include_extras=True).values():
        inner, *extras = typing.get_args(hint) if typing.get_origin(hint) is typing.Annotated else (hint,)
        while typing.get_origin(inner) is typing.Required:
            inner = typing.get_args(inner)[0]
            if typing.get_origin(inner) is typing.Annotated:
                inner, *extras = typing.get_args(inner)
        alias = str(next(getattr(extra, "alias", None) for extra in extras if getattr(extra, "alias", None)))
        if typing.get_origin(inner) is typing.Literal:
            values = typing.get_args(inner)
            fields[alias] = (type(values[0]), values)
        elif inner in (str, int, bool, float):
            fields[alias] = (inner, None)
    return fields


def test_a_telnyx_cancel_is_the_sdks_update_to_completed() -> None:
    capture = Capture(200, {"status": "completed"})
    with capture_server(capture) as base:
        telnyx_dialer(base).cancel("v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ", budget=10)
        ours = capture.take()
        client = telnyx_sdk().Telnyx(api_key="KEY-telnyx", base_url=base, max_retries=0)
        client.texml.accounts.calls.update(
            "v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ", account_sid=TELNYX_ACCOUNT, status="completed"
        )
        sdk = capture.take()
    assert (ours.method, ours.path, ours.content_type) == (sdk.method, sdk.path, sdk.content_type)
    assert ours.fields() == sdk.fields()


def test_telnyx_errors_are_read_as_telnyx_writes_them() -> None:
    capture = Capture(401, {"errors": [{"code": "10009", "title": "Authentication failed", "detail": "bad key"}]})
    with capture_server(capture) as base, pytest.raises(CarrierCredentialsRejected) as raised:
        telnyx_dialer(base).place(call(), budget=10)
    assert (raised.value.carrier_status, raised.value.carrier_code) == (401, "10009")


# --- Vonage: its OpenAPI description of the Voice API, served by Prism ------------------------------------

VONAGE_APP = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"


@pytest.fixture(scope="module")
def vonage_key() -> tuple[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem, key.public_key()


@pytest.fixture(scope="module")
def vonage_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import yaml

    spec = yaml.safe_load((SPECS / "vonage" / "voice.yml").read_text())
    spec["servers"] = [{"url": "https://api.nexmo.com"}]  # the server's /v1/calls moved into the paths
    spec["paths"] = {"/v1/calls" + ("" if path == "/" else path): item for path, item in spec["paths"].items()}
    for schema in spec["components"]["schemas"].values():  # "Must be `sip`", stated as the enum it is
        kind = schema.get("properties", {}).get("type", {}) if isinstance(schema, dict) else {}
        said = re.search(r"Must be `([a-z]+)`", kind.get("description", ""))
        if said:
            kind["enum"] = [said.group(1)]
    # Its own example conversation_uuid ("CON-" and a UUID) breaks its "format: uuid": Prism would refuse the
    # description's own answer.
    spec["components"]["schemas"]["conversation_uuid"].pop("format", None)
    served = tmp_path_factory.mktemp("vonage") / "voice.served.yml"
    served.write_text(yaml.safe_dump(spec, sort_keys=False))
    with prism_mock(served) as base:
        yield base


def vonage_dialer(base: str, pem: str) -> VonageCalls:
    api = CarrierApi("vonage", new_client(), describe=vonage_describe)
    return VonageCalls(api, application_id=VONAGE_APP, private_key=lambda: pem, base_url=base)


@pytest.mark.parametrize("machine_detection", ["off", "hangup", "message"])
def test_vonage_accepts_the_calls_the_stack_places(
    vonage_api: str, vonage_key: tuple[str, Any], machine_detection: str
) -> None:
    placed = vonage_dialer(vonage_api, vonage_key[0]).place(call(machine_detection), budget=10)
    assert placed.carrier_call_id  # the uuid of Vonage's documented example


def test_vonage_accepts_the_hang_up(vonage_api: str, vonage_key: tuple[str, Any]) -> None:
    vonage_dialer(vonage_api, vonage_key[0]).cancel("63f61863-4a51-4f6b-86e1-46edebcf9356", budget=10)


def test_the_oracle_refuses_what_vonage_does_not_allow(vonage_api: str, vonage_key: tuple[str, Any]) -> None:
    dialer = vonage_dialer(vonage_api, vonage_key[0])
    api = CarrierApi("vonage", new_client(), describe=vonage_describe)
    with pytest.raises(CarrierRefusedCall, match="HTTP 422"):
        api.send(
            "POST",
            f"{vonage_api}/v1/calls",
            budget=10,
            headers={"Authorization": f"Bearer {dialer.token()}"},
            json_body={"to": [{"type": "phone", "number": "+1 415"}], "answer_url": "not a list"},
        )


def test_the_application_jwt_is_the_one_vonages_sdk_makes(vonage_key: tuple[str, Any]) -> None:
    """The claims Vonage's own JWT library (vonage-jwt) puts in an application token, signed RS256 with the
    application's key: PyJWT verifies ours with the public key, and finds the same claims."""
    import jwt as pyjwt
    from vonage_jwt.jwt import JwtClient  # type: ignore[import-untyped]

    pem, public = vonage_key
    ours = pyjwt.decode(vonage_dialer("https://x", pem).token(), public, algorithms=["RS256"])
    theirs = pyjwt.decode(JwtClient(VONAGE_APP, pem).generate_application_jwt(), public, algorithms=["RS256"])
    assert set(ours) == set(theirs) and ours["application_id"] == theirs["application_id"] == VONAGE_APP
    assert abs(ours["iat"] - theirs["iat"]) <= 5 and ours["exp"] - ours["iat"] == theirs["exp"] - theirs["iat"]
    assert ours["jti"] != theirs["jti"]


# --- Chime: botocore's model of chime-sdk-voice, through Stubber ----------------------------------------

SMA = "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9"


def chime_stubbed() -> tuple[ChimeCalls, Any]:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("chime-sdk-voice", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    return ChimeCalls(SMA, lambda: client), Stubber(client)


def test_chime_calls_are_placed_with_parameters_botocores_model_accepts() -> None:
    """Stubber validates every parameter against the chime-sdk-voice model (types, patterns, lengths): a call
    the model would not allow fails here before it could reach AWS."""
    dialer, stubber = chime_stubbed()
    stubber.add_response(
        "create_sip_media_application_call",
        {"SipMediaApplicationCall": {"TransactionId": "8c9372d0-e766-4890-823a-32ca8403201a"}},
        {
            "FromPhoneNumber": "+15055550100",
            "ToPhoneNumber": "+14155550123",
            "SipMediaApplicationId": SMA,
            "ArgumentsMap": {"millis_call_id": "call-1"},
        },
    )
    stubber.add_response(
        "update_sip_media_application_call",
        {"SipMediaApplicationCall": {"TransactionId": "8c9372d0-e766-4890-823a-32ca8403201a"}},
        {
            "SipMediaApplicationId": SMA,
            "TransactionId": "8c9372d0-e766-4890-823a-32ca8403201a",
            "Arguments": {"millis_action": "cancel"},
        },
    )
    with stubber:
        placed = dialer.place(call(), budget=10)
        dialer.cancel("8c9372d0-e766-4890-823a-32ca8403201a", budget=10)
    assert placed.carrier_call_id == "8c9372d0-e766-4890-823a-32ca8403201a"
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("AccessDeniedException", 403, CarrierCredentialsRejected),
        ("ForbiddenException", 403, CarrierCredentialsRejected),
        ("BadRequestException", 400, CarrierRefusedCall),
        ("ResourceLimitExceededException", 400, CarrierRefusedCall),
        ("ThrottledClientException", 429, CarrierUnavailable),
        ("ServiceUnavailableException", 503, CarrierUnavailable),
    ],
)
def test_chimes_errors_are_mapped_as_for_every_carrier(code: str, status: int, error: type) -> None:
    dialer, stubber = chime_stubbed()
    stubber.add_client_error(
        "create_sip_media_application_call", service_error_code=code, http_status_code=status, service_message="no"
    )
    with stubber, pytest.raises(error) as raised:
        dialer.place(call(), budget=10)
    assert raised.value.carrier_code == code  # type: ignore[attr-defined]


def test_a_chime_cancel_of_a_transaction_that_is_over_is_nothing_to_do() -> None:
    dialer, stubber = chime_stubbed()
    stubber.add_client_error(
        "update_sip_media_application_call", service_error_code="NotFoundException", http_status_code=404
    )
    with stubber:
        dialer.cancel("8c9372d0-e766-4890-823a-32ca8403201a", budget=10)


def chime_transfer_plan(call_id: str = "call-1") -> TransferPlan:
    return TransferPlan(
        call_id=call_id,
        carrier_call_id="8c9372d0-e766-4890-823a-32ca8403201a",  # the call's Chime TransactionId
        to="+14155550199",
        mode=TransferMode.COLD,
        announce="Putting you through.",
        summary=None,
        status_url="https://bridge.example/unused",
        whisper_url="https://bridge.example/unused",
        caller_id="+15055550123",
    )


def test_a_chime_transfer_is_an_update_of_the_call_botocores_model_accepts() -> None:
    """UpdateSipMediaApplicationCall on the call's transaction, its Arguments (at most 20 string pairs) naming
    the call, the target, the announcement and the caller ID the SIP media application bridges with."""
    dialer, stubber = chime_stubbed()
    stubber.add_response(
        "update_sip_media_application_call",
        {"SipMediaApplicationCall": {"TransactionId": "8c9372d0-e766-4890-823a-32ca8403201a"}},
        {
            "SipMediaApplicationId": SMA,
            "TransactionId": "8c9372d0-e766-4890-823a-32ca8403201a",
            "Arguments": {
                "millis_action": "transfer",
                "millis_call_id": "call-1",
                "transfer_to": "+14155550199",
                "announce": "Putting you through.",
                "caller_id": "+15055550123",
            },
        },
    )
    with stubber:
        dialer.transfer(chime_transfer_plan(), budget=10)
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("NotFoundException", 404, CallNotTransferable),  # the transaction is over: the call is gone
        ("AccessDeniedException", 403, CarrierCredentialsRejected),
        ("ThrottledClientException", 429, CarrierUnavailable),
        ("ServiceFailureException", 500, CarrierUnavailable),
        ("BadRequestException", 400, CarrierRefusedCall),
    ],
)
def test_a_chime_transfers_errors_are_mapped(code: str, status: int, error: type) -> None:
    dialer, stubber = chime_stubbed()
    stubber.add_client_error(
        "update_sip_media_application_call", service_error_code=code, http_status_code=status, service_message="no"
    )
    with stubber, pytest.raises(error):
        dialer.transfer(chime_transfer_plan(), budget=10)


@pytest.mark.parametrize(
    ("to", "mode", "why"),
    [("sip:sales@pbx.example.com", "cold", "Voice Connector"), ("+14155550199", "warm", "cold only")],
)
def test_chime_refuses_what_its_call_and_bridge_cannot_do_before_anything_is_sent(to: str, mode: str, why: str) -> None:
    dialer, _ = chime_stubbed()
    assert why in (dialer.refusal(TransferRequest(to, TransferMode(mode))) or "")
    assert dialer.refusal(TransferRequest("+14155550199", TransferMode.COLD)) is None


# --- SignalWire: its Compatibility API is Twilio's Calls resource at the project's space -------------------

# The fields of SignalWire's CreateCallRequest (signalwire/docs@668371b217817d9037657f5079d2345945ad9331,
# specs/compatibility-api/calls/models/requests.tsp; developer.signalwire.com/compatibility-api, "Create a Call").
SIGNALWIRE_CREATE_CALL_FIELDS = {
    "Url", "ApplicationSid", "From", "To", "CallerId", "FallbackMethod", "FallbackUrl", "MachineDetection",
    "AsyncAmd", "AsyncAmdStatusCallback", "AsyncAmdStatusCallbackMethod", "AsyncAmdPartialResults",
    "MachineDetectionSilenceTimeout", "MachineDetectionSpeechThreshold", "MachineDetectionSpeechEndThreshold",
    "MachineDetectionTimeout", "MachineWordsThreshold", "MaxPricePerMinute", "Method", "Record",
    "RecordingChannels", "RecordingStatusCallback", "RecordingStatusCallbackMethod", "RecordingTrack",
    "SipAuthUsername", "SipAuthPassword", "SendDigits", "StatusCallback", "StatusCallbackEvent",
    "StatusCallbackMethod", "Timeout", "Trim",
}  # fmt: skip
SIGNALWIRE_PROJECT = "6bfbbe86-a901-4197-8759-2a0de1fa319d"


@pytest.mark.parametrize("machine_detection", ["off", "hangup", "message"])
def test_signalwire_calls_go_to_the_space_with_fields_signalwire_documents(machine_detection: str) -> None:
    capture = Capture(201, {"sid": "0703574f-b151-465d-aedb-28972eb513c7", "status": "queued"})
    with capture_server(capture) as base:
        api = CarrierApi("signalwire", new_client(), describe=describe)
        dialer = TwilioCalls(
            api, account_sid=SIGNALWIRE_PROJECT, secret=lambda: "PT-token", base_url=f"{base}/api/laml/2010-04-01"
        )
        placed = dialer.place(call(machine_detection), budget=10)
        sent = capture.take()
    assert placed.carrier_call_id == "0703574f-b151-465d-aedb-28972eb513c7"
    assert (sent.method, sent.path) == ("POST", f"/api/laml/2010-04-01/Accounts/{SIGNALWIRE_PROJECT}/Calls.json")
    assert (
        sent.headers["authorization"] == "Basic " + base64.b64encode(f"{SIGNALWIRE_PROJECT}:PT-token".encode()).decode()
    )
    assert set(sent.fields()) <= SIGNALWIRE_CREATE_CALL_FIELDS
    if machine_detection != "off":
        assert sent.fields()["MachineDetection"] in (["Enable"], ["DetectMessageEnd"], "Enable", "DetectMessageEnd")


# --- transfers: the call update, validated by Twilio's own description ---------------------------------


@pytest.mark.parametrize(
    ("to", "mode"), [("+14155550199", "cold"), ("+14155550199", "warm"), ("sip:sales@pbx.example.com", "warm")]
)
def test_twilio_accepts_the_transfer_update(twilio_api: str, to: str, mode: str) -> None:
    from millis_sip.core.transfer import TransferMode, TransferPlan

    plan = TransferPlan(
        call_id="call-1",
        carrier_call_id="CA" + "a" * 32,
        to=to,
        mode=TransferMode(mode),
        announce="Putting you through.",
        summary="Ana, order A-17, wants the yearly plan.",
        status_url="https://bridge.example/carriers/twilio/transfer/status?call=call-1&token=t",
        whisper_url="https://bridge.example/carriers/twilio/transfer/whisper?call=call-1&token=t",
    )
    twilio(twilio_api).transfer(plan, budget=10)  # Prism answers 422 for a request Twilio's description refuses


def test_a_telnyx_transfer_is_the_sdks_update_with_texml() -> None:
    from millis_sip.core.transfer import TransferMode, TransferPlan

    plan = TransferPlan(
        "call-1",
        "v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ",
        "+14155550199",
        TransferMode.WARM,
        "Putting you through.",
        "Wants the yearly plan.",
        "https://bridge.example/carriers/telnyx/transfer/status?call=call-1&token=t",
        "https://bridge.example/carriers/telnyx/transfer/whisper?call=call-1&token=t",
    )
    capture = Capture(200, {"status": "in-progress"})
    with capture_server(capture) as base:
        telnyx_dialer(base).transfer(plan, budget=10)
        ours = capture.take()
        client = telnyx_sdk().Telnyx(api_key="KEY-telnyx", base_url=base, max_retries=0)
        client.texml.accounts.calls.update(
            plan.carrier_call_id, account_sid=TELNYX_ACCOUNT, texml=ours.fields()["Texml"]
        )
        sdk = capture.take()
    assert (ours.method, ours.path, ours.content_type) == (sdk.method, sdk.path, sdk.content_type)
    assert ours.fields() == sdk.fields() and "<Dial" in ours.fields()["Texml"]


@pytest.mark.parametrize(
    ("to", "mode"), [("+14155550199", "warm"), ("sip:sales@pbx.example.com", "warm"), ("+14155550199", "cold")]
)
def test_vonage_accepts_the_transfer(vonage_api: str, vonage_key: tuple[str, Any], to: str, mode: str) -> None:
    from millis_sip.core.transfer import TransferMode, TransferPlan

    plan = TransferPlan(
        "call-1",
        "63f61863-4a51-4f6b-86e1-46edebcf9356",
        to,
        TransferMode(mode),
        "Putting you through.",
        "Wants the yearly plan.",
        "https://bridge.example/carriers/vonage/transfer/status?call=call-1&token=t",
        "https://bridge.example/carriers/vonage/transfer/whisper?call=call-1&token=t",
        caller_id="+15055550100",
    )
    # Prism answers 422 for a request Vonage's description of the call update (UpdateCallRequestTransferNcco) refuses.
    vonage_dialer(vonage_api, vonage_key[0]).transfer(plan, budget=10)

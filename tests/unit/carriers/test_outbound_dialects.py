"""Each carrier's outbound requests read as the carrier documents them (docs/outbound.md): what a status callback
says, who answered, how the dial to Millis ended. The fields are the carriers' documented names and words."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from millis_sip.core.outbound import OutboundStatus
from millis_sip.core.transfer import TransferMode, TransferPlan
from millis_sip.edges.carriers.fields import Fields, Malformed
from millis_sip.edges.carriers.plivo import PlivoOutbound
from millis_sip.edges.carriers.telnyx import TelnyxOutbound
from millis_sip.edges.carriers.twilio import TwilioOutbound
from millis_sip.edges.carriers.vonage import VonageOutbound
from millis_sip.messages import Messages

REQUEST = "9834029e-58b6-11e1-b8b7-a5bd0e4e126f"  # plivo.com/docs/voice/api/call/make-a-call's request_uuid
PLIVO = PlivoOutbound(Messages.from_env({}))
TWILIO = TwilioOutbound(Messages.from_env({}))
TELNYX = TelnyxOutbound(Messages.from_env({}))


def plivo(**fields: str) -> Fields:
    return Fields({"RequestUUID": REQUEST, "Direction": "outbound", **fields}.items())


@pytest.mark.parametrize(
    ("fields", "status", "duration"),
    [
        ({"CallStatus": "ringing"}, OutboundStatus.RINGING, 0),
        ({"CallStatus": "in-progress"}, OutboundStatus.OTHER, 0),
        ({"CallStatus": "completed", "Duration": "60", "HangupCauseCode": "4000"}, OutboundStatus.COMPLETED, 60),
        ({"CallStatus": "busy", "HangupCauseCode": "3000"}, OutboundStatus.BUSY, 0),
        ({"CallStatus": "no-answer"}, OutboundStatus.NO_ANSWER, 0),
        ({"CallStatus": "timeout"}, OutboundStatus.NO_ANSWER, 0),
        ({"CallStatus": "failed"}, OutboundStatus.FAILED, 0),
        # 1000 Canceled: "canceled using the Hangup Call API before it was answered" (hangup-causes page)
        ({"CallStatus": "completed", "HangupCauseCode": "1000"}, OutboundStatus.CANCELED, 0),
        # machine_detection=hangup: Plivo hangs up on the machine and says so at the hangup URL
        ({"CallStatus": "completed", "Machine": "true", "Duration": "3"}, OutboundStatus.MACHINE, 3),
        # asynchronous detection (not asked for by the stack): read, nothing to record
        ({"CallStatus": "in-progress", "Machine": "true", "Event": "MachineDetection"}, OutboundStatus.OTHER, 0),
    ],
)
def test_plivo_status_callbacks(fields: dict[str, str], status: OutboundStatus, duration: int) -> None:
    assert PLIVO.status(plivo(**fields)) == (status, duration)
    assert PLIVO.carrier_call_id(plivo(**fields)) == REQUEST


def test_plivo_says_who_answered_only_when_detection_ran() -> None:
    assert PLIVO.answered_by(plivo(CallStatus="in-progress")) is None
    assert PLIVO.answered_by(plivo(Machine="true")) == "machine"
    assert PLIVO.answered_by(plivo(Machine="false")) == "human"


@pytest.mark.parametrize(
    "fields",
    [
        {"CallStatus": "answered"},  # not a Plivo word
        {"CallStatus": "ringing", "Machine": "yes"},
        {"CallStatus": "completed", "HangupCauseCode": "4000CallStatusbusy"},
        {"CallStatus": "completed", "RequestUUID": "not-a-uuid"},
    ],
)
def test_plivo_fields_outside_their_documented_form_are_refused(fields: dict[str, str]) -> None:
    read = plivo(**fields)

    def both() -> None:
        PLIVO.status(read)
        PLIVO.carrier_call_id(read)

    with pytest.raises(Malformed):
        both()


def test_plivo_dial_action_names_no_duration_so_the_hangup_url_closes_the_call() -> None:
    done = plivo(DialStatus="completed", DialRingStatus="true", DialHangupCause="NORMAL_CLEARING")
    assert PLIVO.dial_result(done) == (True, None, "completed")
    assert PLIVO.dial_result(plivo(DialStatus="no-answer")) == (False, None, "no-answer")


def test_twilio_status_and_dial_results() -> None:
    sid = "CA" + "a" * 32
    completed = Fields({"CallSid": sid, "CallStatus": "completed", "CallDuration": "42"}.items())
    assert TWILIO.status(completed) == (OutboundStatus.COMPLETED, 42)
    assert TWILIO.carrier_call_id(completed) == sid
    dialed = Fields({"DialCallStatus": "completed", "DialCallDuration": "40"}.items())
    assert TWILIO.dial_result(dialed) == (True, 40, "completed")
    assert TWILIO.answered_by(Fields({"AnsweredBy": "machine_end_beep"}.items())) == "machine_end_beep"


TELNYX_SID = "v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ"  # Telnyx's callback examples' CallSid


def telnyx(**fields: str) -> Fields:
    return Fields({"CallSid": TELNYX_SID, "AccountSid": "f5586561-8ff0-4291-a51b-c7dfe4139ff9", **fields}.items())


@pytest.mark.parametrize(
    ("fields", "status", "duration"),
    [
        ({"CallStatus": "initiated"}, OutboundStatus.OTHER, 0),
        ({"CallStatus": "ringing"}, OutboundStatus.RINGING, 0),
        ({"CallStatus": "in-progress", "CallDuration": "15"}, OutboundStatus.OTHER, 15),
        ({"CallStatus": "completed", "CallDuration": "120"}, OutboundStatus.COMPLETED, 120),
        ({"CallStatus": "busy"}, OutboundStatus.BUSY, 0),
        ({"CallStatus": "no-answer"}, OutboundStatus.NO_ANSWER, 0),
        ({"CallStatus": "canceled"}, OutboundStatus.CANCELED, 0),
        ({"CallStatus": "failed"}, OutboundStatus.FAILED, 0),
    ],
)
def test_telnyx_status_callbacks(fields: dict[str, str], status: OutboundStatus, duration: int) -> None:
    assert TELNYX.status(telnyx(**fields)) == (status, duration)
    assert TELNYX.carrier_call_id(telnyx(**fields)) == TELNYX_SID


def test_a_telnyx_detection_result_is_an_answer_only_while_the_call_is_up() -> None:
    assert TELNYX.is_answer(telnyx(CallStatus="in-progress", AnsweredBy="machine"))
    assert TELNYX.is_answer(telnyx(AnsweredBy="human"))  # the AMD callback names no CallStatus
    assert not TELNYX.is_answer(telnyx(CallStatus="completed", AnsweredBy="machine"))
    assert not TELNYX.is_answer(telnyx(CallStatus="in-progress"))
    assert TELNYX.answered_by(telnyx(AnsweredBy="machine_end_beep")) == "machine_end_beep"
    with pytest.raises(Malformed):
        TELNYX.answered_by(telnyx(AnsweredBy="robot"))
    assert not PLIVO.is_answer(plivo(Machine="true")) and not TWILIO.is_answer(Fields({"AnsweredBy": "human"}.items()))


LEG = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"  # the Voice API description's uuid example form
VONAGE = VonageOutbound(Messages.from_env({}))


def vonage(**fields: object) -> Fields:
    return Fields({"uuid": LEG, "conversation_uuid": "CON-" + LEG, "direction": "outbound", **fields}.items())


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("started", OutboundStatus.OTHER),
        ("ringing", OutboundStatus.RINGING),
        ("answered", OutboundStatus.OTHER),
        ("completed", OutboundStatus.COMPLETED),
        ("busy", OutboundStatus.BUSY),
        ("cancelled", OutboundStatus.CANCELED),
        ("unanswered", OutboundStatus.NO_ANSWER),
        ("timeout", OutboundStatus.NO_ANSWER),
        ("rejected", OutboundStatus.FAILED),
        ("failed", OutboundStatus.FAILED),
        ("machine", OutboundStatus.MACHINE),
        ("human", OutboundStatus.OTHER),
    ],
)
def test_vonage_events(status: str, outcome: OutboundStatus) -> None:
    assert VONAGE.status(vonage(status=status, duration="12"))[0] is outcome
    assert VONAGE.carrier_call_id(vonage(status=status)) == LEG


def test_vonage_detection_events_name_the_call_as_call_uuid() -> None:
    machine = Fields({"call_uuid": LEG, "conversation_uuid": "CON-" + LEG, "status": "machine"}.items())
    assert (VONAGE.carrier_call_id(machine), VONAGE.answered_by(machine)) == (LEG, "machine")
    assert VONAGE.answered_by(vonage(status="ringing")) is None
    assert VONAGE.status(vonage(status="completed", duration=42)) == (OutboundStatus.COMPLETED, 42)  # a JSON number


def test_the_leg_to_millis_says_nothing_until_it_ends() -> None:
    assert VONAGE.dial_result(vonage(status="started")) is None
    assert VONAGE.dial_result(vonage(status="answered")) is None
    assert VONAGE.dial_result(vonage(status="completed", duration="33")) == (True, 33, "completed")
    assert VONAGE.dial_result(vonage(status="unanswered")) == (False, 0, "unanswered")
    with pytest.raises(Malformed):
        VONAGE.dial_result(vonage(status="bridged"))  # not a Vonage word


def test_signalwire_reads_its_own_ids() -> None:
    from millis_sip.edges.carriers.twilio import SignalWireOutbound

    signalwire = SignalWireOutbound(Messages.from_env({}))
    sid = "0703574f-b151-465d-aedb-28972eb513c7"  # captured by signalwire-python's tests
    assert signalwire.carrier_call_id(Fields({"CallSid": sid, "CallStatus": "ringing"}.items())) == sid
    with pytest.raises(Malformed):
        signalwire.carrier_call_id(Fields({"CallSid": "CA" + "a" * 32}.items()))  # a Twilio sid is not SignalWire's
    assert signalwire.answer_path == "/carriers/signalwire/outbound"


def plivo_plan(to: str, mode: str, **fields: str | None) -> TransferPlan:
    base = "https://bridge.example/carriers/plivo/transfer"
    return TransferPlan(
        call_id="call-1",
        carrier_call_id="55309cee-821d-11e4-9a73-498d468c930b",
        to=to,
        mode=TransferMode(mode),
        announce=fields.get("announce"),
        summary=fields.get("summary"),
        status_url=f"{base}/status?call=call-1&token=t",
        whisper_url=f"{base}/whisper?call=call-1&token=t",
    )


def tree(xml: str) -> list[tuple[str, dict[str, str], str]]:
    """Every element's tag, attributes and text, in document order (the declaration and layout aside)."""
    root = ET.fromstring(xml.removeprefix('<?xml version="1.0" encoding="UTF-8"?>'))  # noqa: S314
    return [(e.tag, dict(e.attrib), (e.text or "").strip()) for e in root.iter()]


@pytest.mark.parametrize(
    ("to", "mode", "summary"),
    [
        ("+14155550199", "warm", "Ana, order A-17."),
        ("sip:sales@pbx.example.com", "warm", "Ana: A-17 & more"),
        ("+14155550199", "cold", None),
    ],
)
def test_plivo_transfer_xml_is_what_plivos_sdk_builds(to: str, mode: str, summary: str | None) -> None:
    """The transfer document's elements and attributes are the ones Plivo's own XML builder (plivo.plivoxml)
    writes for the same transfer: <Speak>, then <Dial action ... confirmSound> with <Number> or <User sipHeaders>."""
    from plivo import plivoxml  # type: ignore[import-untyped]

    plan = plivo_plan(to, mode, announce="One moment.", summary=summary)
    ours = PLIVO.transfer(plan)
    messages = Messages.from_env({})
    sdk = plivoxml.ResponseElement()
    sdk.add(plivoxml.SpeakElement("One moment.", voice=messages.polly_voice, language=messages.language))
    dial = plivoxml.DialElement(
        action=plan.status_url,
        method="POST",
        redirect=True,
        timeout=30,
        confirm_sound=plan.whisper_url if mode == "warm" else None,
    )
    if to.startswith("+"):
        dial.add(plivoxml.NumberElement(to[1:]))
    else:
        encoded = "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in summary or "")
        dial.add(plivoxml.UserElement(to, sip_headers=f"TransferSummary={encoded}"))
    sdk.add(dial)
    assert tree(ours["body"]) == tree(sdk.to_string())


def test_plivo_transfer_summary_header_is_cut_to_what_plivo_takes() -> None:
    long = "é" + "word, " * 60  # non-ASCII dropped, the rest cut to 120 encoded characters
    document = ET.fromstring(PLIVO.transfer(plivo_plan("sip:desk@pbx.example.com", "warm", summary=long))["body"])  # noqa: S314
    user = document.find("Dial/User")
    assert user is not None
    name, value = user.attrib["sipHeaders"].split("=")
    assert name == "TransferSummary" and 100 < len(value) <= 120 and value.startswith("word%2C%20")
    assert "%" not in value[-2:]  # never an escape cut in half


def test_a_placed_plivo_call_is_named_by_its_call_uuid_once_answered() -> None:
    answered = plivo(CallStatus="in-progress", CallUUID="55309cee-821d-11e4-9a73-498d468c930b")
    assert PLIVO.answered_leg(answered) == "55309cee-821d-11e4-9a73-498d468c930b"
    assert PLIVO.carrier_call_id(answered) == REQUEST  # the callbacks still name it by its request_uuid


def test_the_refer_url_attributes_are_the_ones_twilios_sdk_writes() -> None:
    """<Dial referUrl referMethod> as twilio's own TwiML builder writes Dial(refer_url=..., refer_method=...)."""
    from twilio.twiml.voice_response import VoiceResponse  # type: ignore[import-untyped]

    from millis_sip.edges.carriers.twiml import refer_attributes

    ours = refer_attributes("https://b.example/carriers/twilio/refer", {"X-Millis-Call-Id": "call-1"})
    sdk = VoiceResponse()
    sdk.dial(refer_url=ours["referUrl"], refer_method="POST")
    [dial] = ET.fromstring(str(sdk))  # noqa: S314
    assert dict(dial.attrib) == ours and ours["referUrl"].endswith("/refer?call=call-1")

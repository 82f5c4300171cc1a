"""TwiML and its dialects (Telnyx TeXML, SignalWire LaML accept the same document): the answers of the carriers
that speak it (twilio.com/docs/voice/twiml)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping

from millis_sip.apigw import Request, reply
from millis_sip.config import Messages
from millis_sip.core.calls import E164
from millis_sip.core.ports import Secret
from millis_sip.core.router import Challenge, InboundCall, Routed
from millis_sip.core.sip import SipUri, with_uri_headers
from millis_sip.edges.carriers.flow import CarrierFlow, DialOutcome, DialReport, Response, route_url, whole

MAX_SIP_URI = 254  # Twilio refuses a <Sip> URI of 255 characters or more, headers included
PIN_TIMEOUT_SECONDS = "8"
DECLINED = "pin=none"  # the query of the answer URL when the caller keyed in nothing


# The <Dial> action's DialCallStatus, as what it means for the call.
DIAL_OUTCOMES = {
    "completed": DialOutcome.COMPLETED,
    "answered": DialOutcome.COMPLETED,
    "canceled": DialOutcome.CANCELED,
    "busy": DialOutcome.FAILED,
    "no-answer": DialOutcome.FAILED,
    "failed": DialOutcome.FAILED,
}


class TwimlAnswers:
    """TwiML answers for one request: ``answer_url`` and ``status_url`` are where the carrier comes back."""

    def __init__(self, messages: Messages, *, answer_url: str, status_url: str) -> None:
        self._messages = messages
        self._answer_url = answer_url
        self._status_url = status_url

    def dial(self, routed: Routed[SipUri], headers: Mapping[str, str], call: InboundCall, attempt: int) -> Response:
        action = self._status_url + ("?attempt=2" if attempt == 2 else "")
        attributes = {"answerOnBridge": "true", "action": action, "method": "POST"}
        if call.caller and E164.match(call.caller):
            attributes["callerId"] = call.caller  # the caller's number reaches Millis as From
        dial = ET.Element("Dial", attributes)
        ET.SubElement(dial, "Sip").text = with_uri_headers(str(routed.placement), headers, limit=MAX_SIP_URI)
        return document(dial)

    def ask_pin(self, challenge: Challenge, call: InboundCall) -> Response:
        prompt = self._messages.pin_prompt
        if challenge.retry:
            prompt = f"{self._messages.pin_retry} {prompt}"
        gather = ET.Element(
            "Gather",
            {
                "input": "dtmf",
                "numDigits": str(challenge.digits),
                "finishOnKey": "#",
                "timeout": PIN_TIMEOUT_SECONDS,
                "action": self._answer_url,
                "method": "POST",
            },
        )
        gather.append(self._say(prompt))
        # Nothing keyed in: Gather falls through to the next verb, which says so to the answer route.
        declined = ET.Element("Redirect", {"method": "POST"})
        declined.text = f"{self._answer_url}?{DECLINED}"
        return document(gather, declined)

    def farewell(self) -> Response:
        if not self._messages.failure:
            return document(ET.Element("Reject", {"reason": "busy"}))
        return document(self._say(self._messages.failure), ET.Element("Hangup"))

    def hang_up(self) -> Response:
        return document(ET.Element("Hangup"))

    def _say(self, text: str) -> ET.Element:
        say = ET.Element("Say", {"voice": self._messages.polly_voice, "language": self._messages.language})
        say.text = text
        return say


def document(*verbs: ET.Element) -> Response:
    root = ET.Element("Response")
    root.extend(verbs)
    body = '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")
    return reply(200, body, content_type="text/xml; charset=utf-8")


class TwimlWebhooks:
    """The two routes of a carrier that speaks TwiML: the voice webhook (also the PIN <Gather>'s action) and the
    <Dial> action. A carrier's subclass says how its requests are signed (``_fields``, which refuses before
    anything is read) and what its fields mean (``_call``)."""

    voice_path: str
    status_path: str

    def __init__(self, flow: CarrierFlow, credential: Secret | None, messages: Messages) -> None:
        self._flow = flow
        self._credential = credential
        self._messages = messages

    def voice(self, request: Request, deadline: float) -> Response:
        fields, refused = self._fields(request)
        if refused is not None:
            return refused
        call = self._call(fields, declined=request.query.get("pin") == "none")
        if call is None:
            return reply(400, "CallSid is missing or malformed.")
        return self._flow.answer(call, deadline, self._answers(request))

    def status(self, request: Request, deadline: float) -> Response:
        fields, refused = self._fields(request)
        if refused is not None:
            return refused
        call = self._call(fields, declined=False)
        if call is None:
            return reply(400, "CallSid is missing or malformed.")
        status = fields.get("DialCallStatus", "")
        outcome = DIAL_OUTCOMES.get(status, DialOutcome.OTHER)
        report = DialReport(outcome, status, whole(fields.get("DialCallDuration")))
        attempt = 2 if request.query.get("attempt") == "2" else 1
        return self._flow.report(call, attempt, report, deadline, self._answers(request))

    def fallback(self, request: Request) -> Response:
        """The answer when the function itself fails: the caller hears the failure message, not the carrier's."""
        return self._answers(request).farewell()

    def _fields(self, request: Request) -> tuple[dict[str, str], Response | None]:
        raise NotImplementedError

    def _call(self, fields: dict[str, str], *, declined: bool) -> InboundCall | None:
        raise NotImplementedError

    def _answers(self, request: Request) -> TwimlAnswers:
        own = (self.voice_path, self.status_path)
        return TwimlAnswers(
            self._messages,
            answer_url=route_url(request.url, own, self.voice_path),
            status_url=route_url(request.url, own, self.status_path),
        )

"""TwiML and its dialects (Telnyx TeXML, SignalWire LaML accept the same document): the answers of the carriers
that speak it (twilio.com/docs/voice/twiml)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from urllib.parse import urlencode

from millis_sip.apigw import Request, reply
from millis_sip.core.router import Challenge, InboundCall, Routed
from millis_sip.core.sip import SipUri, with_uri_headers
from millis_sip.edges.carriers.fields import SECONDS, Fields
from millis_sip.edges.carriers.flow import DialOutcome, DialReport, Response, route_url, whole
from millis_sip.edges.carriers.webhooks import CarrierWebhooks
from millis_sip.messages import Messages

MAX_SIP_URI = 254  # Twilio refuses a <Sip> URI of 255 characters or more, headers included
PIN_TIMEOUT_SECONDS = "8"


# The <Dial> action's DialCallStatus, every documented word (twilio.com/docs/voice/twiml/dial#action; Telnyx's
# Call Completed callback, its Dial action callback, lists completed, busy, no-answer, canceled and failed), as
# what it means for the call.
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

    def __init__(self, messages: Messages, *, answer_url: str, status_url: str, refer_url: str | None = None) -> None:
        self._messages = messages
        self._answer_url = answer_url
        self._status_url = status_url
        self._refer_url = refer_url  # where a REFER from the Millis leg is asked about (Twilio's referUrl)

    def dial(self, routed: Routed[SipUri], headers: Mapping[str, str], call: InboundCall, query: str) -> Response:
        action = self._status_url + (f"?{query}" if query else "")
        attributes = {"answerOnBridge": "true", "action": action, "method": "POST"}
        if call.caller is not None:
            attributes["callerId"] = call.caller  # the caller's number (E.164) reaches Millis as From
        if self._refer_url is not None:
            attributes |= refer_attributes(self._refer_url, headers)
        dial = ET.Element("Dial", attributes)
        ET.SubElement(dial, "Sip").text = with_uri_headers(str(routed.placement), headers, limit=MAX_SIP_URI)
        return document(dial)

    def ask_pin(self, challenge: Challenge, call: InboundCall, declined: str | None) -> Response:
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
        if declined is None:
            return document(gather)  # nothing keyed in: Gather falls through, and the call ends
        # Nothing keyed in: Gather falls through to the next verb, which says so to the answer route.
        redirect = ET.Element("Redirect", {"method": "POST"})
        redirect.text = f"{self._answer_url}?{declined}"
        return document(gather, redirect)

    def farewell(self) -> Response:
        if not self._messages.failure:
            return document(ET.Element("Reject", {"reason": "busy"}))
        return document(self._say(self._messages.failure), ET.Element("Hangup"))

    def hang_up(self) -> Response:
        return document(ET.Element("Hangup"))

    def end_call(self) -> Response:
        return document(ET.Element("Hangup"))

    def spoken(self, text: str) -> Response:
        """``text`` said on the leg that asked, then the call goes on (a warm transfer's whisper)."""
        return document(self._say(text))

    def _say(self, text: str) -> ET.Element:
        say = ET.Element("Say", {"voice": self._messages.polly_voice, "language": self._messages.language})
        say.text = text
        return say


def refer_attributes(refer_url: str, headers: Mapping[str, str]) -> dict[str, str]:
    """A <Dial>'s ``referUrl`` (Twilio requests it when the dialed SIP leg sends REFER; without it the REFER fails
    with error 13802) naming the Millis call the leg is, and its method."""
    call_id = headers.get("X-Millis-Call-Id", "")
    return {"referUrl": f"{refer_url}?{urlencode({'call': call_id})}", "referMethod": "POST"}


def document(*verbs: ET.Element) -> Response:
    root = ET.Element("Response")
    root.extend(verbs)
    body = '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")
    return reply(200, body, content_type="text/xml; charset=utf-8")


class TwimlWebhooks(CarrierWebhooks):
    """The webhooks of a carrier that speaks TwiML: the voice webhook (also the PIN <Gather>'s action) answers, the
    <Dial> action reports. A carrier's subclass says how its requests are signed (``verify``) and what its
    fields mean (``call``); the report and the answers are TwiML's."""

    voice_path: str
    status_path: str
    refer_path: str | None = None  # the <Dial>'s referUrl route (Twilio), None: the dialect has none

    def report(self, fields: Fields, request: Request) -> DialReport:
        outcome = fields.meaning("DialCallStatus", DIAL_OUTCOMES)
        duration = whole(fields.read("DialCallDuration", SECONDS))
        return DialReport(outcome or DialOutcome.OTHER, str(fields.get("DialCallStatus") or ""), duration)

    def answers(self, request: Request) -> TwimlAnswers:
        own = (self.voice_path, self.status_path)
        return TwimlAnswers(
            self._messages,
            answer_url=route_url(request.url, own, self.voice_path),
            status_url=route_url(request.url, own, self.status_path),
            refer_url=route_url(request.url, own, self.refer_path) if self.refer_path else None,
        )

"""TwiML and its dialects (Telnyx TeXML, SignalWire LaML accept the same document): the answers of the carriers
that speak it (twilio.com/docs/voice/twiml)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import replace

from millis_sip.apigw import Request, reply
from millis_sip.core.ports import Secret
from millis_sip.core.router import Challenge, InboundCall, Routed
from millis_sip.core.sip import SipUri, with_uri_headers
from millis_sip.edges.carriers import Refusal
from millis_sip.edges.carriers.fields import SECONDS, Fields
from millis_sip.edges.carriers.flow import CarrierFlow, DialOutcome, DialReport, Response, refused, route_url, whole
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

    def __init__(self, messages: Messages, *, answer_url: str, status_url: str) -> None:
        self._messages = messages
        self._answer_url = answer_url
        self._status_url = status_url

    def dial(self, routed: Routed[SipUri], headers: Mapping[str, str], call: InboundCall, query: str) -> Response:
        action = self._status_url + (f"?{query}" if query else "")
        attributes = {"answerOnBridge": "true", "action": action, "method": "POST"}
        if call.caller is not None:
            attributes["callerId"] = call.caller  # the caller's number (E.164) reaches Millis as From
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
    anything is read) and what its fields mean, in their documented forms (``_call``, which raises
    ``Malformed``). The query's own state (``pin=none``, ``attempt=2``) counts only with its token."""

    voice_path: str
    status_path: str

    def __init__(self, flow: CarrierFlow, credential: Secret | None, messages: Messages) -> None:
        self._flow = flow
        self._credential = credential
        self._messages = messages

    def voice(self, request: Request, deadline: float) -> Response:
        fields, refusal = self._fields(request)
        if refusal is not None:
            return refusal
        try:
            call = self._call(fields, request)
            if self._flow.declined(request.query_pairs, call.call_ref):
                call = replace(call, pin="")  # the prompt's redirect: nothing keyed in
        except Refusal as exc:
            return refused(exc)
        return self._flow.answer(call, deadline, self._answers(request))

    def status(self, request: Request, deadline: float) -> Response:
        fields, refusal = self._fields(request)
        if refusal is not None:
            return refusal
        try:
            call = self._call(fields, request)
            outcome = fields.meaning("DialCallStatus", DIAL_OUTCOMES)
            duration = whole(fields.read("DialCallDuration", SECONDS))
            attempt = self._flow.attempt(request.query_pairs, call.call_ref)
        except Refusal as exc:
            return refused(exc)
        status = str(fields.get("DialCallStatus") or "")
        report = DialReport(outcome or DialOutcome.OTHER, status, duration)
        return self._flow.report(call, attempt, report, deadline, self._answers(request))

    def fallback(self, request: Request) -> Response:
        """The answer when the function itself fails: the caller hears the failure message, not the carrier's."""
        return self._answers(request).farewell()

    def _fields(self, request: Request) -> tuple[Fields, Response | None]:
        raise NotImplementedError

    def _call(self, fields: Fields, request: Request) -> InboundCall:
        raise NotImplementedError

    def _answers(self, request: Request) -> TwimlAnswers:
        own = (self.voice_path, self.status_path)
        return TwimlAnswers(
            self._messages,
            answer_url=route_url(request.url, own, self.voice_path),
            status_url=route_url(request.url, own, self.status_path),
        )

"""Plivo Voice: the answer URL, the Dial action and the hangup URL in, Plivo XML out (docs/carriers/plivo.md).

Plivo's V3 webhook signature: ``X-Plivo-Signature-V3`` with ``X-Plivo-Signature-V3-Nonce``.

As the official SDK builds it (plivo-python ``plivo/utils/signature_v3.py``, ``validate_v3_signature``):

* base = ``scheme://host[:port]/path`` of the callback URL (no query, no fragment);
* query = the URL's query parameters (percent-decoded), sorted by name then value, as ``name=value``
  joined by ``&``;
* GET: Plivo's parameters are in the query already; string = base, then ``?`` + query when there is one;
* POST: string = base, then ``?`` + query when there is a query or any POST parameter, then ``.`` when
  there are both, then every POST parameter sorted by name then value as ``namevalue`` (no separators);
* signature = base64(HMAC-SHA256(key=auth token, string + ``.`` + nonce));
* the header may list several signatures separated by commas; one match is enough.
  ``X-Plivo-Signature-Ma-V3`` is the same, always signed with the main account's token.

There is no timestamp: the nonce is random per request, so replay protection would need a nonce store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, urlparse, urlunparse

from millis_sip.apigw import Request, reply
from millis_sip.core.outbound import OutboundStatus
from millis_sip.core.router import Challenge, InboundCall, Routed
from millis_sip.core.sip import SipUri
from millis_sip.core.transfer import TransferPlan
from millis_sip.edges.carriers import InvalidSignature
from millis_sip.edges.carriers.fields import SECONDS, UUID, Fields, form, one_of
from millis_sip.edges.carriers.flow import (
    DialOutcome,
    DialReport,
    Response,
    keyed_pin,
    route_url,
    whole,
)
from millis_sip.edges.carriers.webhooks import Carrier, CarrierWebhooks, WebhookRoute
from millis_sip.messages import Messages

SIGNATURE_HEADER = "X-Plivo-Signature-V3"
MAIN_ACCOUNT_SIGNATURE_HEADER = "X-Plivo-Signature-Ma-V3"
NONCE_HEADER = "X-Plivo-Signature-V3-Nonce"
_METHODS = ("GET", "POST")


def string_to_sign(method: str, url: str, params: Sequence[tuple[str, str]], nonce: str) -> str:
    """The text Plivo signs for a ``method`` request to ``url`` carrying these POST parameters."""
    parsed = urlparse(url)
    base = urlunparse((parsed.scheme, parsed.netloc, parsed.path, "", "", ""))
    query = _grouped(parse_qsl(parsed.query, keep_blank_values=True))
    if method.upper() == "GET":
        query = {**_grouped(params), **query}  # the SDK lets the URL's own value win
        text = _query_string(query)
        signed = f"{base}?{text}" if text else base
    else:
        text = _query_string(query)
        signed = f"{base}?{text}" if text or params else base
        if text and params:
            signed += "."
        signed += "".join(f"{name}{value}" for name, values in sorted(_grouped(params).items()) for value in values)
    return f"{signed}.{nonce}"


def signature(method: str, url: str, params: Sequence[tuple[str, str]], nonce: str, token: str) -> str:
    """The ``X-Plivo-Signature-V3`` value Plivo would send, signed with ``token``."""
    return base64.b64encode(_digest(string_to_sign(method, url, params, nonce), token)).decode("ascii")


def verify_v3(
    method: str,
    url: str,
    params: Sequence[tuple[str, str]],
    nonce: str | None,
    presented: str | None,
    tokens: Sequence[str],
) -> None:
    """Raise ``InvalidSignature`` unless one of the signatures in ``presented`` signs this request.

    ``url`` is the callback URL as configured in Plivo, including any query string; ``params`` are the
    form-decoded POST fields (none for a GET); ``nonce`` and ``presented`` are the two header values;
    ``tokens`` are auth tokens (account, sub-account, or a rotated one beside the current one).
    """
    if not tokens:
        raise InvalidSignature("no key configured")
    if not presented:
        raise InvalidSignature("missing signature")
    if not nonce:
        raise InvalidSignature("missing nonce")
    if method.upper() not in _METHODS:
        raise InvalidSignature("unsupported method")
    offered = [_decode(item) for item in presented.split(",")]
    data = string_to_sign(method, url, params, nonce)
    for token in tokens:
        expected = _digest(data, token)
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return
    raise InvalidSignature("signature mismatch")


def _digest(data: str, token: str) -> bytes:
    return hmac.new(token.encode(), data.encode(), hashlib.sha256).digest()


def _decode(item: str) -> bytes:
    """One offered signature as bytes; an undecodable one can only mismatch, so it becomes empty."""
    try:
        return base64.b64decode(item.strip(), validate=True)
    except ValueError:  # binascii.Error is a ValueError
        return b""


def _grouped(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Name -> sorted values, the SDK's view of repeated parameters (a dict of lists, each list sorted)."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return {name: sorted(values) for name, values in grouped.items()}


def _query_string(grouped: dict[str, list[str]]) -> str:
    return "&".join(f"{name}={value}" for name, values in sorted(grouped.items()) for value in values)


# --- the answer URL, the Dial action and the hangup URL: Plivo XML out --------------------------------------

ANSWER_PATH = "/carriers/plivo/answer"
STATUS_PATH = "/carriers/plivo/status"
CARRIER = "plivo"
PIN_TIMEOUT_SECONDS = "8"
# Plivo's call ids are UUIDs (tests/fixtures/carriers/SOURCES.md, "Formats": v1 and v4 UUIDs in plivo/plivo-go's
# test vectors, utils_test.go).
CALL_UUID = form(UUID, "Plivo's CallUUID is a UUID")
# The Dial action's DialStatus, every documented word (plivo.com/docs/voice/use-cases/dial-status-reporting;
# plivo.com/docs/voice/xml/dial, "Parameters sent to action URL"), as what it means for the call.
_DIAL_OUTCOMES = {
    "completed": DialOutcome.COMPLETED,
    "busy": DialOutcome.FAILED,
    "failed": DialOutcome.FAILED,
    "timeout": DialOutcome.FAILED,
    "no-answer": DialOutcome.FAILED,
}
_HEADER_NAMES = {
    "X-Millis-Call-Id": "MillisCallId",
    "X-Carrier": "Carrier",
    "X-Carrier-Call-Id": "CarrierCallId",
    "X-Transfer-Summary": "TransferSummary",
}


TRANSFER_RING_SECONDS = "30"
MAX_HEADER_VALUE = 120  # encoded characters Plivo takes in a sipHeaders value


def _encoded(value: str) -> str:
    return "".join(c if c.isascii() and c.isalnum() else f"%{ord(c):02X}" for c in value)


def fitted(text: str) -> str:
    """``text`` cut (whole characters, never an escape in half) so that its sipHeaders encoding fits; the ASCII
    it can carry (anything else is left out)."""
    kept = "".join(c for c in text if c.isascii() and (c.isprintable() or c == " "))
    while len(_encoded(kept)) > MAX_HEADER_VALUE:
        kept = kept[:-1]
    return kept


def sip_headers_attribute(headers: Mapping[str, str]) -> str:
    """Plivo's ``sipHeaders``: ``Name=value,...`` with alphanumeric names of at most 24 characters and values of
    letters, digits and ``%`` (anything else percent-encoded), at most 120 characters; Plivo sends each as
    ``X-PH-Name``. A header that cannot fit is left out (Plivo would drop it silently)."""
    pairs = []
    for name, value in headers.items():
        short = _HEADER_NAMES.get(name) or "".join(c for c in name.removeprefix("X-") if c.isalnum())[:24]
        encoded = _encoded(value)
        if short and len(encoded) <= MAX_HEADER_VALUE and value.isascii():
            pairs.append(f"{short}={encoded}")
    return ",".join(pairs)


class PlivoXmlAnswers:
    """Plivo's answers: Plivo XML (plivo.com/docs/voice/xml)."""

    def __init__(self, messages: Messages, *, answer_url: str, status_url: str) -> None:
        self._messages = messages
        self._answer_url = answer_url
        self._status_url = status_url

    def dial(self, routed: Routed[SipUri], headers: Mapping[str, str], call: InboundCall, query: str) -> Response:
        action = self._status_url + (f"?{query}" if query else "")
        return dial_user(routed.placement, headers, action, caller=call.caller)

    def ask_pin(self, challenge: Challenge, call: InboundCall, declined: str | None) -> Response:
        prompt = self._messages.pin_prompt
        if challenge.retry:
            prompt = f"{self._messages.pin_retry} {prompt}"
        get_input = ET.Element(
            "GetInput",
            {
                "action": self._answer_url,
                "method": "POST",
                "inputType": "dtmf",
                "numDigits": str(challenge.digits),
                "finishOnKey": "#",
                "digitEndTimeout": "5",
                "executionTimeout": "15",
                "log": "false",  # the PIN stays out of Plivo's logs
            },
        )
        get_input.append(self._speak(prompt))
        if declined is None:
            return _document(get_input)  # nothing keyed in: Plivo goes on past <GetInput>, and the call ends
        redirect = ET.Element("Redirect", {"method": "POST"})
        redirect.text = f"{self._answer_url}?{declined}"
        return _document(get_input, redirect)

    def farewell(self) -> Response:
        if not self._messages.failure:
            return _document(ET.Element("Hangup", {"reason": "busy"}))
        return _document(self._speak(self._messages.failure), ET.Element("Hangup"))

    def hang_up(self) -> Response:
        return _document(ET.Element("Hangup"))

    def end_call(self) -> Response:
        return _document(ET.Element("Hangup"))

    def spoken(self, text: str) -> Response:
        """``text`` said on the leg that asked, then the call goes on (a warm transfer's whisper)."""
        return _document(self._speak(text))

    def transfer(self, plan: TransferPlan) -> Response:
        """A transfer's call document (the Call API's ``aleg_url``; docs/transfers.md): ``announce`` said to the
        caller, then a <Dial> to the target whose action is the stack's transfer status URL. Warm, the person who
        answers first hears the summary (``confirmSound``: Plivo fetches it with POST and plays its <Speak> to
        the called party before the legs are joined), and a SIP target gets it as ``X-PH-TransferSummary``."""
        said = [self._speak(plan.announce)] if plan.announce else []
        attributes = {"action": plan.status_url, "method": "POST", "redirect": "true", "timeout": TRANSFER_RING_SECONDS}
        warm = plan.mode == "warm"
        if warm:
            attributes["confirmSound"] = plan.whisper_url
        dial = ET.Element("Dial", attributes)
        if plan.to.startswith("+"):
            ET.SubElement(dial, "Number").text = plan.to.removeprefix("+")  # Plivo writes 14155550199
        else:
            headers = {"X-Transfer-Summary": fitted(plan.summary)} if warm and plan.summary else {}
            user = ET.SubElement(dial, "User", {"sipHeaders": sip_headers_attribute(headers)} if headers else {})
            user.text = plan.to
        return _document(*said, dial)

    def _speak(self, text: str) -> ET.Element:
        speak = ET.Element("Speak", {"voice": self._messages.polly_voice, "language": self._messages.language})
        speak.text = text
        return speak


class PlivoVoice(CarrierWebhooks):
    """``POST /carriers/plivo/answer`` (the application's answer URL, and the PIN <GetInput>'s action) and
    ``POST /carriers/plivo/status`` (the <Dial> action, and the application's hangup URL). Each request's
    ``X-Plivo-Signature-V3`` (HMAC-SHA256 over the URL, the parameters and the nonce) is checked before
    anything reads it; then every field read in its documented form. The query's own state (``pin=none``,
    ``attempt=2``) counts only with its token."""

    title = "Plivo"

    def verify(self, request: Request, keys: list[str]) -> list[tuple[str, str]]:
        params = request.form() if request.method == "POST" else request.query_pairs
        signed = params if request.method == "POST" else []
        nonce = request.headers.get(NONCE_HEADER.lower())
        try:
            verify_v3(request.method, request.url, signed, nonce, request.headers.get(SIGNATURE_HEADER.lower()), keys)
        except InvalidSignature:
            # A subaccount's call also carries the main account's signature: a main account token works.
            main = request.headers.get(MAIN_ACCOUNT_SIGNATURE_HEADER.lower())
            if main is None:
                raise
            verify_v3(request.method, request.url, signed, nonce, main, keys)
        return list(params)

    def call(self, fields: Fields, request: Request) -> InboundCall:
        return _inbound(fields)

    def report(self, fields: Fields, request: Request) -> DialReport:
        if "DialStatus" in fields:  # the <Dial> action: how the leg to Millis went
            outcome = fields.meaning("DialStatus", _DIAL_OUTCOMES)
            leg = fields.read("DialBLegDuration", SECONDS) or fields.read("DialBLegBillDuration", SECONDS)
            return DialReport(outcome or DialOutcome.OTHER, str(fields["DialStatus"]), whole(leg))
        return DialReport(DialOutcome.COMPLETED, "hangup", whole(fields.read("Duration", SECONDS)))  # the hangup URL

    def answers(self, request: Request) -> PlivoXmlAnswers:
        own = (ANSWER_PATH, STATUS_PATH)
        return PlivoXmlAnswers(
            self._messages,
            answer_url=route_url(request.url, own, ANSWER_PATH),
            status_url=route_url(request.url, own, STATUS_PATH),
        )


def dial_user(uri: SipUri, headers: Mapping[str, str], action: str, *, caller: str | None = None) -> Response:
    """``<Dial>`` to the Millis SIP URI as a ``<User>``, its end reported to ``action``."""
    attributes = {"action": action, "method": "POST", "redirect": "true"}
    if caller is not None:
        attributes["callerId"] = caller  # the caller's number (E.164) reaches Millis as From
    dial = ET.Element("Dial", attributes)
    user = ET.SubElement(dial, "User", {"sipHeaders": sip_headers_attribute(headers)})
    user.text = str(uri)
    return _document(dial)


def _inbound(fields: Fields) -> InboundCall:
    """The call: its CallUUID a UUID, its numbers as Plivo writes them (``14155550100``, no ``+``) in E.164."""
    return InboundCall(
        CARRIER,
        fields.require("CallUUID", CALL_UUID),
        fields.number("From"),
        fields.number("To"),
        pin=keyed_pin(fields),
        can_challenge=True,
        sip_headers={name: str(value) for name, value in fields.items() if name.startswith("X-PH-")},
    )


def _document(*elements: ET.Element) -> Response:
    root = ET.Element("Response")
    root.extend(elements)
    body = '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")
    return reply(200, body, content_type="text/xml; charset=utf-8")


# --- outbound calls (docs/outbound.md): Plivo requests the Call API's answer_url when the person answers -------

OUTBOUND_ANSWER_PATH = "/carriers/plivo/outbound"
OUTBOUND_STATUS_PATH = "/carriers/plivo/outbound/status"
# The Call API's request_uuid, which every callback of the call carries as RequestUUID (and which cancels it).
REQUEST_UUID = form(UUID, "Plivo's RequestUUID is a UUID")
# CallStatus, as plivo.com/docs/voice/xml/request lists it: ringing (ring_url), in-progress (answer_url),
# completed, and for outbound calls busy, failed, timeout, no-answer (hangup_url).
_CALL_STATUSES = {
    "ringing": OutboundStatus.RINGING,
    "in-progress": OutboundStatus.OTHER,
    "completed": OutboundStatus.COMPLETED,
    "busy": OutboundStatus.BUSY,
    "failed": OutboundStatus.FAILED,
    "timeout": OutboundStatus.NO_ANSWER,
    "no-answer": OutboundStatus.NO_ANSWER,
}
# HangupCauseCode 1000, "Canceled: the call was canceled using the Hangup Call API before it was answered"
# (plivo.com/docs/voice/troubleshooting/hangup-causes).
CANCELED_CODE = "1000"
CAUSE_CODE = form(r"[0-9]{1,5}", "Plivo's hangup cause code: ASCII digits")
# Machine: "true" when Plivo's machine detection heard a machine (plivo.com/docs/voice/api/call/make-a-call,
# machine_detection; .../asynchronous-machine-detection: "Set to true if a machine is detected").
MACHINE = one_of("true", "false")


class PlivoOutbound:
    """Plivo's outbound requests (the Call API's answer_url, ring_url and hangup_url) and Plivo XML answers."""

    answer_path = OUTBOUND_ANSWER_PATH
    status_path = OUTBOUND_STATUS_PATH

    def __init__(self, messages: Messages) -> None:
        self._answers = PlivoXmlAnswers(messages, answer_url="", status_url="")  # no GetInput here: no URLs

    def carrier_call_id(self, fields: Fields) -> str | None:
        return fields.read("RequestUUID", REQUEST_UUID)

    def answered_by(self, fields: Fields) -> str | None:
        machine = fields.read("Machine", MACHINE)
        return None if machine is None else ("machine" if machine == "true" else "human")

    def status(self, fields: Fields) -> tuple[OutboundStatus, int]:
        status = fields.meaning("CallStatus", _CALL_STATUSES) or OutboundStatus.OTHER
        duration = whole(fields.read("Duration", SECONDS))
        if self.answered_by(fields) == "machine" and status is not OutboundStatus.OTHER:
            return OutboundStatus.MACHINE, duration  # machine_detection=hangup: Plivo hung up on the machine
        if status is not OutboundStatus.RINGING and fields.read("HangupCauseCode", CAUSE_CODE) == CANCELED_CODE:
            return OutboundStatus.CANCELED, duration
        return status, duration

    def dial_result(self, fields: Fields) -> tuple[bool, int | None, str]:
        """Plivo's Dial action names no duration (plivo.com/docs/voice/xml/dial, "Parameters sent to action
        URL"): the hangup URL's ``Duration`` closes the call."""
        status = fields.read("DialStatus", one_of(*_DIAL_OUTCOMES)) or ""
        leg = fields.read("DialBLegDuration", SECONDS) or fields.read("DialBLegBillDuration", SECONDS)
        return status == "completed", (int(leg) if leg else None), status

    def is_answer(self, fields: Fields) -> bool:
        return False

    def dial(self, uri: SipUri, headers: Mapping[str, str], action_url: str, *, caller: str | None) -> Response:
        return dial_user(uri, headers, action_url, caller=caller)

    def hang_up(self, *, speak: bool) -> Response:
        return self._answers.farewell() if speak else self._answers.hang_up()

    def acknowledge(self) -> Response:
        return self.hang_up(speak=False)  # a status callback's answer is not acted on

    def say(self, text: str) -> Response:
        return self._answers.spoken(text)

    def transfer(self, plan: TransferPlan) -> Response:
        return self._answers.transfer(plan)

    def answered_leg(self, fields: Fields) -> str | None:
        """The answered call's CallUUID: what Plivo's transfer takes (the Call API named the call by its
        request_uuid until now)."""
        return fields.read("CallUUID", CALL_UUID)


PLIVO = Carrier(
    name=CARRIER,
    title="Plivo",
    routes=(WebhookRoute("POST", ANSWER_PATH, "answer"), WebhookRoute("POST", STATUS_PATH, "status")),
    credential_variable="PLIVO_AUTH_TOKEN",
    credential_setting="plivo_auth_token_secret_arn",
    patience=CARRIER,
    webhooks=lambda flow, credential, settings, clock: PlivoVoice(flow, credential, settings.messages),
    outbound=lambda settings: PlivoOutbound(settings.messages),
    transfers=True,
    transfer_answer=True,
)

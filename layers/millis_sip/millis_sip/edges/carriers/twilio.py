"""Twilio (and the TwiML dialects): the voice webhook and the <Dial> action in, TwiML out (docs/carriers/twilio.md).

The webhook signature (``X-Twilio-Signature``), also used by SignalWire LaML (``X-SignalWire-Signature``):

The scheme, as the official SDK implements it (twilio-python ``twilio/request_validator.py``,
``RequestValidator.compute_signature`` / ``validate``):

* data = the full URL Twilio requested (scheme, host, path, query exactly as configured), then for every
  form parameter name in sorted order (code-point order), every *distinct* value of that name in sorted
  order, appended as ``name + value`` with no separator. GET webhooks carry their parameters in the URL,
  so the parameter list is empty.
* signature = base64(HMAC-SHA1(key=auth token, data)); SignalWire signs the same data with the project's
  signing key (signalwire-python ``signalwire/request_validator.py`` delegates to Twilio's validator).
* Because Twilio's signer is inconsistent about ports, the SDK accepts the URL without its port and with
  the scheme's default port added (``remove_port`` / ``add_port``); ``verify`` tries the same variants.
* JSON bodies: Twilio adds ``bodySHA256=<hex SHA-256 of the raw body>`` to the URL's query and signs the
  URL alone (no parameters). ``verify(..., body=raw)`` checks both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

from millis_sip.apigw import Request, reply
from millis_sip.core.outbound import OutboundStatus
from millis_sip.core.router import InboundCall
from millis_sip.core.sip import SipUri, with_uri_headers
from millis_sip.core.transfer import TransferPlan
from millis_sip.edges.carriers import InvalidSignature
from millis_sip.edges.carriers.fields import SECONDS, UUID, Fields, form, one_of
from millis_sip.edges.carriers.flow import Response, keyed_pin, route_url, whole, x_headers
from millis_sip.edges.carriers.twiml import (
    DIAL_OUTCOMES,
    MAX_SIP_URI,
    TwimlAnswers,
    TwimlWebhooks,
    document,
    refer_attributes,
)
from millis_sip.edges.carriers.webhooks import Carrier, WebhookRoute
from millis_sip.messages import Messages

SIGNATURE_HEADER = "X-Twilio-Signature"
SIGNALWIRE_SIGNATURE_HEADER = "X-SignalWire-Signature"
_DIGEST_SIZE = 20  # HMAC-SHA1: 28 base64 characters
_DEFAULT_PORTS = {"https": "443", "http": "80"}


def signature(url: str, params: Sequence[tuple[str, str]], token: str) -> str:
    """The ``X-Twilio-Signature`` Twilio would send for a request to ``url`` with these form parameters.

    Repeated parameters are sorted by name, then value, and identical (name, value) pairs count once: the
    SDK iterates ``sorted(set(names))`` and, within a name, ``sorted(set(values))``.
    """
    return base64.b64encode(_digest(url, params, token)).decode("ascii")


def verify(
    url: str,
    params: Sequence[tuple[str, str]],
    presented: str | None,
    tokens: Sequence[str],
    *,
    body: bytes | None = None,
) -> None:
    """Raise ``InvalidSignature`` unless ``presented`` signs this request under one of ``tokens``.

    ``url`` is the URL Twilio requested, as configured in Twilio (behind API Gateway, rebuild it from the
    public host and path plus the raw query string). ``params`` are the form-decoded POST fields, in any
    order; pass none for a GET. For a JSON body pass the raw bytes as ``body``: the URL must then carry a
    matching ``bodySHA256`` and the parameters are ignored, as in the SDK. Several tokens let a rotated
    auth token (or a SignalWire signing key beside it) keep working.
    """
    if not tokens:
        raise InvalidSignature("no key configured")
    if not presented:
        raise InvalidSignature("missing signature")
    presented_bytes = _decode_signature(presented)
    if body is not None:
        _check_body_hash(url, body)
        params = ()
    for candidate in _url_variants(url):
        for token in tokens:
            if hmac.compare_digest(_digest(candidate, params, token), presented_bytes):
                return
    raise InvalidSignature("signature mismatch")


def _digest(url: str, params: Sequence[tuple[str, str]], token: str) -> bytes:
    data = url + "".join(name + value for name, value in sorted(set(params)))
    return hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()


def _decode_signature(presented: str) -> bytes:
    """The 20 HMAC-SHA1 bytes of the header, or ``InvalidSignature`` for anything that cannot be one."""
    try:
        raw = base64.b64decode(presented.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSignature("malformed signature") from None
    if len(raw) != _DIGEST_SIZE:
        raise InvalidSignature("malformed signature")
    return raw


def _check_body_hash(url: str, body: bytes) -> None:
    """A JSON webhook's URL names the body's SHA-256 (lower-case hex) in ``bodySHA256``."""
    claimed = parse_qs(urlsplit(url).query).get("bodySHA256")
    if not claimed:
        raise InvalidSignature("missing bodySHA256")
    actual = hashlib.sha256(body).hexdigest()
    if not hmac.compare_digest(actual.encode(), claimed[0].strip().lower().encode()):
        raise InvalidSignature("body hash mismatch")


def _url_variants(url: str) -> list[str]:
    """The URL as given, without its port, and with the scheme's default port: what the SDK accepts."""
    parts = urlsplit(url)
    host, sep, port = parts.netloc.rpartition(":")
    has_port = bool(sep) and port.isascii() and port.isdigit() and not parts.netloc.endswith("]")
    variants = [url]
    if has_port:
        variants.append(parts._replace(netloc=host).geturl())
    elif parts.netloc:
        default = _DEFAULT_PORTS.get(parts.scheme.lower(), "80")
        variants.append(parts._replace(netloc=f"{parts.netloc}:{default}").geturl())
    return list(dict.fromkeys(variants))


# --- the voice webhook and the Dial action: TwiML out ---------------------------------------------------------

VOICE_PATH = "/carriers/twilio/voice"
STATUS_PATH = "/carriers/twilio/status"
REFER_PATH = "/carriers/twilio/refer"  # the <Dial>'s referUrl: the Millis leg asks for a transfer with REFER
CARRIER = "twilio"

# Twilio's ids (tests/fixtures/carriers/SOURCES.md, "Formats"): the Call resource's ``sid`` and the Account's
# (twilio/twilio-oai, spec/json/twilio_api_v2010.json: ``^CA[0-9a-fA-F]{32}$``, ``^AC[0-9a-fA-F]{32}$``; "34
# characters long, and always starts with the letters AC", twilio.com/docs/voice/twiml#request-parameters).
CALL_SID = form(r"CA[0-9a-fA-F]{32}", "Twilio's CallSid is CA and 32 hex digits")
ACCOUNT_SID = form(r"AC[0-9a-fA-F]{32}", "Twilio's AccountSid is AC and 32 hex digits")
# SignalWire's LaML, on the same route under X-SignalWire-Signature: "A Segment ID (SID) is a UUID", and its
# AccountSid is the project's id, a UUID too (signalwire/docs, platform/core/segment-ids.mdx; the TypeSpec models).
SIGNALWIRE_CALL_SID = form(UUID, "SignalWire's CallSid is a UUID")
SIGNALWIRE_ACCOUNT_SID = form(UUID, "SignalWire's AccountSid (the project id) is a UUID")
# StirVerstat, as twilio.com/docs/voice/trusted-calling-with-shakenstir lists it (the -Diverted and -Passthrough
# variants included); only a passed verification's level is an attestation.
STIR_VERSTAT = form(
    r"(?:TN-Validation-(?:Passed|Failed)-[ABC]|TN-Validation-Failed|No-TN-Validation|NULL)(?:-Diverted|-Passthrough)?",
    "one of Twilio's documented StirVerstat values",
)
_ATTESTATION = {"TN-Validation-Passed-A": "A", "TN-Validation-Passed-B": "B", "TN-Validation-Passed-C": "C"}
# What Twilio writes in From for a withheld caller ID: the alpha string on a phone keypad (ANONYMOUS, RESTRICTED,
# UNKNOWN, BLOCKED, UNAVAILABLE). Twilio's changelog of 2022-11-16 ("Upcoming changes to withheld caller ID
# behavior for <Dial> calls") says it "translates the alpha string into digits"; these digits are the keypad's
# translation, seen in many public code bases but not confirmed on a Twilio page (SOURCES.md, "Numbers"). Read
# as no number, so that no withheld caller counts as the number +266696687.
WITHHELD_CALLER_IDS = frozenset({"+266696687", "+7378742833", "+8656696", "+2562533", "+86282452253"})


class TwilioVoice(TwimlWebhooks):
    """``POST /carriers/twilio/voice`` (the number's voice webhook, and the PIN <Gather>'s action) and
    ``POST /carriers/twilio/status`` (the <Dial> action: how the bridge ended). Every request is checked against
    ``X-Twilio-Signature`` (SignalWire: ``X-SignalWire-Signature``) before anything reads it; the answers are
    TwiML."""

    title = "Twilio"
    voice_path = VOICE_PATH
    status_path = STATUS_PATH
    refer_path = REFER_PATH

    def verify(self, request: Request, keys: list[str]) -> list[tuple[str, str]]:
        params = request.form()
        presented = request.headers.get(SIGNATURE_HEADER.lower())
        if presented is None:  # SignalWire LaML signs the same way under its own name
            presented = request.headers.get(SIGNALWIRE_SIGNATURE_HEADER.lower())
        verify(request.url, params, presented, keys)
        return params

    def call(self, fields: Fields, request: Request) -> InboundCall:
        """The call, its ids in the forms of whoever signed it: SignalWire's when it names itself in
        X-SignalWire-Signature (it may send X-Twilio-Signature beside it), else Twilio's."""
        signalwire = SIGNALWIRE_SIGNATURE_HEADER.lower() in request.headers
        sid = fields.require("CallSid", SIGNALWIRE_CALL_SID if signalwire else CALL_SID)
        account = fields.read("AccountSid", SIGNALWIRE_ACCOUNT_SID if signalwire else ACCOUNT_SID)
        verstat = fields.read("StirVerstat", STIR_VERSTAT)
        return InboundCall(
            CARRIER,
            sid,
            fields.number("From", placeholders=WITHHELD_CALLER_IDS),
            fields.number("To"),
            attestation=_ATTESTATION.get(verstat or ""),
            pin=keyed_pin(fields),
            can_challenge=True,
            context={"twilio_account_sid": account} if account else {},
            sip_headers=x_headers(fields, "SipHeader_"),
        )


# --- outbound calls (docs/outbound.md): Twilio requests the Calls resource's Url when the person answers ----------

OUTBOUND_ANSWER_PATH = "/carriers/twilio/outbound"
OUTBOUND_STATUS_PATH = "/carriers/twilio/outbound/status"
# AnsweredBy, as twilio.com/docs/voice/answering-machine-detection lists it.
ANSWERED_BY = one_of(
    "human", "machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax", "unknown"
)
# The Calls resource's status callback CallStatus (twilio.com/docs/voice/api/call-resource#statuscallback).
CALL_STATUS = one_of(
    "queued", "initiated", "ringing", "in-progress", "completed", "busy", "no-answer", "canceled", "failed"
)
_CALL_STATUSES = {
    "ringing": OutboundStatus.RINGING,
    "completed": OutboundStatus.COMPLETED,
    "busy": OutboundStatus.BUSY,
    "no-answer": OutboundStatus.NO_ANSWER,
    "canceled": OutboundStatus.CANCELED,
    "failed": OutboundStatus.FAILED,
}


class TwilioOutbound:
    """Twilio's outbound requests and TwiML answers."""

    answer_path = OUTBOUND_ANSWER_PATH
    status_path = OUTBOUND_STATUS_PATH
    refer_path: str | None = REFER_PATH  # the dial to Millis takes REFER (referUrl)

    def __init__(self, messages: Messages) -> None:
        self._answers = TwimlAnswers(messages, answer_url="", status_url="")  # no Gather here: no URLs

    def carrier_call_id(self, fields: Fields) -> str | None:
        return fields.read("CallSid", CALL_SID)

    def answered_by(self, fields: Fields) -> str | None:
        return fields.read("AnsweredBy", ANSWERED_BY)

    def status(self, fields: Fields) -> tuple[OutboundStatus, int]:
        status = fields.require("CallStatus", CALL_STATUS)
        return _CALL_STATUSES.get(status, OutboundStatus.OTHER), whole(fields.read("CallDuration", SECONDS))

    def dial_result(self, fields: Fields) -> tuple[bool, int, str]:
        status = fields.read("DialCallStatus", one_of(*DIAL_OUTCOMES)) or ""
        return status in ("completed", "answered"), whole(fields.read("DialCallDuration", SECONDS)), status

    def is_answer(self, fields: Fields) -> bool:
        return False

    def dial(self, uri: SipUri, headers: Mapping[str, str], action_url: str, *, caller: str | None) -> Response:
        attributes = {"action": action_url, "method": "POST"}
        if self.refer_path is not None:
            attributes |= refer_attributes(route_url(action_url, (self.status_path,), self.refer_path), headers)
        dial = ET.Element("Dial", attributes)
        ET.SubElement(dial, "Sip").text = with_uri_headers(str(uri), headers, limit=MAX_SIP_URI)
        return document(dial)

    def transfer(self, plan: TransferPlan) -> Response:
        """A transfer's TwiML, as the answer to a REFER's referUrl (the call update's, docs/transfers.md). Imported
        here: only a REFER loads the call-control module, never the phone path's cold start."""
        from millis_sip.adapters.call_control.twilio import transfer_twiml

        return reply(200, transfer_twiml(plan), content_type="text/xml; charset=utf-8")

    def hang_up(self, *, speak: bool) -> Response:
        return self._answers.farewell() if speak else self._answers.hang_up()

    def acknowledge(self) -> Response:
        return self.hang_up(speak=False)  # a status callback's answer is not acted on

    def say(self, text: str) -> Response:
        return self._answers.spoken(text)


# SignalWire's Compatibility API places calls as Twilio's does, at the project's space; its requests are signed the
# Twilio way under X-SignalWire-Signature, with the project's signing key (in the Twilio credential's secret).
SIGNALWIRE = "signalwire"
SIGNALWIRE_OUTBOUND_ANSWER_PATH = "/carriers/signalwire/outbound"
SIGNALWIRE_OUTBOUND_STATUS_PATH = "/carriers/signalwire/outbound/status"


class SignalWireOutbound(TwilioOutbound):
    """SignalWire's outbound LaML requests: Twilio's fields and TwiML answers, SignalWire's ids (UUIDs)."""

    answer_path = SIGNALWIRE_OUTBOUND_ANSWER_PATH
    status_path = SIGNALWIRE_OUTBOUND_STATUS_PATH
    refer_path = None  # SignalWire documents no referUrl

    def carrier_call_id(self, fields: Fields) -> str | None:
        return fields.read("CallSid", SIGNALWIRE_CALL_SID)


TWILIO = Carrier(
    name=CARRIER,
    title="Twilio",
    routes=(WebhookRoute("POST", VOICE_PATH, "answer"), WebhookRoute("POST", STATUS_PATH, "status")),
    credential_variable="TWILIO_AUTH_TOKEN",
    credential_setting="twilio_auth_token_secret_arn",
    patience=CARRIER,
    webhooks=lambda flow, credential, settings, clock: TwilioVoice(flow, credential, settings.messages),
    also=(SIGNALWIRE_SIGNATURE_HEADER, "signalwire"),  # SignalWire LaML reaches the same routes
    outbound=lambda settings: TwilioOutbound(settings.messages),
    transfers=True,
    refer_path=REFER_PATH,
)


# SignalWire has no inbound routes of its own (its LaML webhooks reach Twilio's, above): this descriptor gives its
# outbound calls their answer and status URLs, checked with the same credential.
SIGNALWIRE_CARRIER = Carrier(
    name=SIGNALWIRE,
    title="SignalWire",
    routes=(),
    credential_variable="TWILIO_AUTH_TOKEN",
    credential_setting="twilio_auth_token_secret_arn",
    patience=SIGNALWIRE,
    webhooks=lambda flow, credential, settings, clock: TwilioVoice(flow, credential, settings.messages),
    outbound=lambda settings: SignalWireOutbound(settings.messages),
    transfers=True,
)

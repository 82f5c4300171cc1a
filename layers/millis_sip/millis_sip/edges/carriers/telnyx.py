"""Telnyx TeXML (a TwiML dialect): the voice webhook and the <Dial> action in, TeXML out
(docs/carriers/telnyx.md).

The webhook signature: Ed25519 over ``{telnyx-timestamp}|{raw body}``.

Telnyx signs API v2 webhooks and TeXML requests alike (team-telnyx/telnyx-node
``examples/webhook-signing/express.js`` verifies its ``/texml`` route with the same call; the API reference
lists ``telnyx-signature-ed25519`` and ``telnyx-timestamp`` on the TeXML callbacks). The official check
(team-telnyx/telnyx-python ``src/telnyx/lib/webhook_verification.py``):

* ``telnyx-signature-ed25519``: base64 of the 64-byte signature; ``telnyx-timestamp``: Unix seconds;
* message = the timestamp header, ``|``, the raw body bytes; key = the account's 32-byte public key
  (Mission Control, Keys & Credentials, base64);
* refuse a timestamp more than 300 seconds from now, either way.

The signature covers the body only: a GET TeXML request (query parameters, empty body) is not
authenticated by it, so TeXML applications must use POST.

The Ed25519 check uses PyNaCl (libsodium), imported on first use so that no other carrier pays for it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from millis_sip.apigw import BadRequest, Request
from millis_sip.core.outbound import OutboundStatus
from millis_sip.core.ports import Clock, Secret
from millis_sip.core.router import InboundCall
from millis_sip.edges.carriers import InvalidSignature
from millis_sip.edges.carriers.fields import SECONDS, UUID, Fields, form, one_of
from millis_sip.edges.carriers.flow import CarrierFlow, keyed_pin, whole, x_headers
from millis_sip.edges.carriers.twilio import TwilioOutbound
from millis_sip.edges.carriers.twiml import TwimlWebhooks
from millis_sip.edges.carriers.webhooks import Carrier, SignedButUnreadable, WebhookRoute
from millis_sip.messages import Messages

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
_SIGNATURE_SIZE = 64
_KEY_SIZE = 32
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def verify(
    body: bytes,
    signature_b64: str | None,
    timestamp: str | None,
    public_keys: Sequence[str],
    *,
    now: float,
    tolerance_seconds: int = 300,
) -> None:
    """Raise ``InvalidSignature`` unless one of ``public_keys`` verifies the request, signed within tolerance.

    ``body`` is the raw request body exactly as received; ``signature_b64`` and ``timestamp`` are the two
    header values; ``public_keys`` are base64 Ed25519 public keys (several while one is being replaced);
    ``now`` is the current Unix time.
    """
    keys = _decode_keys(public_keys)
    if not signature_b64:
        raise InvalidSignature("missing signature")
    if not timestamp:
        raise InvalidSignature("missing timestamp")
    signed_at = _parse_timestamp(timestamp)
    if signed_at < now - tolerance_seconds:
        raise InvalidSignature("stale timestamp")
    if signed_at > now + tolerance_seconds:
        raise InvalidSignature("future timestamp")
    raw_signature = _decode(signature_b64, _SIGNATURE_SIZE, "malformed signature")
    message = timestamp.strip().encode("ascii") + b"|" + body
    if not any(_ed25519_verify(key, message, raw_signature) for key in keys):
        raise InvalidSignature("signature mismatch")


def _decode_keys(public_keys: Sequence[str]) -> list[bytes]:
    if not public_keys:
        raise InvalidSignature("no key configured")
    return [_decode(key, _KEY_SIZE, "malformed key configured") for key in public_keys]


def _parse_timestamp(timestamp: str) -> int:
    text = timestamp.strip()
    if not _TIMESTAMP.fullmatch(text):
        raise InvalidSignature("malformed timestamp")
    return int(text)


def _decode(text: str, size: int, reason: str) -> bytes:
    """Strict base64 (no stray characters) of exactly ``size`` bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSignature(reason) from None
    if len(raw) != size:
        raise InvalidSignature(reason)
    return raw


def _ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """libsodium's strict RFC 8032 check (canonical S, no small-order keys), via PyNaCl."""
    # Imported here, not at the top: the import costs ~10 ms of cold start that other carriers need not pay.
    from nacl.exceptions import CryptoError  # BadSignatureError's base: also a key libsodium refuses
    from nacl.signing import VerifyKey

    try:
        VerifyKey(public_key).verify(message, signature)
    except CryptoError:
        return False
    return True


# --- TeXML: the voice webhook and the Dial action (TwiML's dialect) ------------------------------------------

VOICE_PATH = "/carriers/telnyx/voice"
STATUS_PATH = "/carriers/telnyx/status"
CARRIER = "telnyx"
TOLERANCE_SECONDS = 300

# Telnyx's ids (tests/fixtures/carriers/SOURCES.md, "Formats"): CallSid is the call_control_id, "v<n>:" and
# URL-safe characters in every callback's example (developers.telnyx.com/api-reference/callbacks/texml-call-*),
# or a bare UUID in the instruction fetch's (docs/voice/programmable-voice/texml-instruction-fetching);
# ConnectionId is digits (the same pages; the OpenAPI path parameter's example).
CALL_SID = form(
    rf"v[0-9]{{1,3}}:[A-Za-z0-9_-]{{1,120}}|{UUID}", "Telnyx's CallSid is v<n>: and URL-safe characters, or a UUID"
)
CONNECTION_ID = form(r"[0-9]{1,32}", "Telnyx's ConnectionId is ASCII digits")
# SHAKEN/STIR as the callbacks document it: ShakenStirValidated true or false, ShakenStirAttestation A, B or C.
SHAKEN_VALIDATED = one_of("true", "false", empty=True)
SHAKEN_ATTESTATION = one_of("A", "B", "C", empty=True)


class TelnyxTexml(TwimlWebhooks):
    """``POST /carriers/telnyx/voice`` (the TeXML application's voice URL, and the PIN <Gather>'s action) and
    ``POST /carriers/telnyx/status`` (the <Dial> action). Each request is checked against its Ed25519 signature
    and timestamp (TOLERANCE_SECONDS either way) before anything reads it; the answers are TeXML."""

    title = "Telnyx"
    voice_path = VOICE_PATH
    status_path = STATUS_PATH

    def __init__(self, flow: CarrierFlow, public_keys: Secret | None, messages: Messages, *, clock: Clock) -> None:
        super().__init__(flow, public_keys, messages)
        self._clock = clock

    def verify(self, request: Request, keys: list[str]) -> list[tuple[str, str]]:
        verify(
            request.body,
            request.headers.get(SIGNATURE_HEADER),
            request.headers.get(TIMESTAMP_HEADER),
            keys,
            now=self._clock.now().timestamp(),
            tolerance_seconds=TOLERANCE_SECONDS,
        )
        try:
            return request.form()
        except BadRequest as exc:  # signed, but not a form (the signature covers the body as sent)
            raise SignedButUnreadable(str(exc)) from None

    def call(self, fields: Fields, request: Request) -> InboundCall:
        sid = fields.require("CallSid", CALL_SID)
        connection = fields.read("ConnectionId", CONNECTION_ID)
        verified = fields.read("ShakenStirValidated", SHAKEN_VALIDATED) == "true"
        attestation = fields.read("ShakenStirAttestation", SHAKEN_ATTESTATION)
        return InboundCall(
            CARRIER,
            sid,
            fields.number("From"),
            fields.number("To"),
            attestation=attestation if verified and attestation else None,
            pin=keyed_pin(fields),
            can_challenge=True,
            context={"telnyx_connection_id": connection} if connection else {},
            sip_headers=x_headers(fields, "SipHeader_"),
        )


# --- outbound calls (docs/outbound.md): Telnyx requests the TeXML call's Url when the person answers ------------

OUTBOUND_ANSWER_PATH = "/carriers/telnyx/outbound"
OUTBOUND_STATUS_PATH = "/carriers/telnyx/outbound/status"
# AnsweredBy: human, machine, fax, unknown with the status callback of synchronous detection
# (docs/voice/programmable-voice/texml-answering-machine); human, machine_start, machine_end_beep,
# machine_end_silence, machine_end_other, fax, unknown in the AMD callback (api-reference/callbacks/texml-call-amd).
ANSWERED_BY = one_of(
    "human",
    "machine",
    "machine_start",
    "machine_end_beep",
    "machine_end_silence",
    "machine_end_other",
    "fax",
    "unknown",
)
# CallStatus of the call-progress callbacks (api-reference/callbacks/texml-call-initiated, -ringing, -answered,
# -completed: "completed, busy, no-answer, canceled, failed").
_CALL_STATUSES = {
    "queued": OutboundStatus.OTHER,
    "initiated": OutboundStatus.OTHER,
    "ringing": OutboundStatus.RINGING,
    "in-progress": OutboundStatus.OTHER,
    "completed": OutboundStatus.COMPLETED,
    "busy": OutboundStatus.BUSY,
    "no-answer": OutboundStatus.NO_ANSWER,
    "canceled": OutboundStatus.CANCELED,
    "failed": OutboundStatus.FAILED,
}


class TelnyxOutbound(TwilioOutbound):
    """Telnyx's outbound TeXML requests: TwiML's answers and <Dial> action, Telnyx's ids and words. With
    machine detection, Telnyx holds the call's TeXML until the result, which comes as ``AnsweredBy`` with a status
    callback whose answer is the TeXML the call goes on with: that callback is answered as the answer URL is
    (``is_answer``)."""

    answer_path = OUTBOUND_ANSWER_PATH
    status_path = OUTBOUND_STATUS_PATH

    def carrier_call_id(self, fields: Fields) -> str | None:
        return fields.read("CallSid", CALL_SID)

    def answered_by(self, fields: Fields) -> str | None:
        return fields.read("AnsweredBy", ANSWERED_BY)

    def status(self, fields: Fields) -> tuple[OutboundStatus, int]:
        status = fields.meaning("CallStatus", _CALL_STATUSES) or OutboundStatus.OTHER
        return status, whole(fields.read("CallDuration", SECONDS))

    def is_answer(self, fields: Fields) -> bool:
        """A detection result while the call is up (a final callback may repeat AnsweredBy: it is a status)."""
        live = fields.read("CallStatus", one_of(*_CALL_STATUSES, empty=True)) in ("in-progress", "", None)
        return live and self.answered_by(fields) is not None


TELNYX = Carrier(
    name=CARRIER,
    title="Telnyx",
    routes=(WebhookRoute("POST", VOICE_PATH, "answer"), WebhookRoute("POST", STATUS_PATH, "status")),
    credential_variable="TELNYX_PUBLIC_KEY",
    credential_setting="telnyx_public_key_secret_arn",
    patience=CARRIER,
    webhooks=lambda flow, credential, settings, clock: TelnyxTexml(flow, credential, settings.messages, clock=clock),
    outbound=lambda settings: TelnyxOutbound(settings.messages),
    transfers=True,
)

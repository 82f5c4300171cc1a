"""Vonage's Voice API: the answer_url and event_url in, NCCO out (docs/carriers/vonage.md).

Its signed webhooks: ``Authorization: Bearer <JWT>``, HS256 with the account's signature secret.

What Vonage sends (developer.vonage.com/en/getting-started/concepts/webhooks, "Decoding signed webhooks";
Voice API webhook reference, "Signed Webhooks"): header ``{"alg": "HS256", "typ": "JWT"}``; claims ``iat``
(Unix seconds), ``jti``, ``iss`` ("Vonage"), ``payload_hash``, ``api_key`` and, for an application,
``application_id``; no ``exp``. ``payload_hash`` is the lower-case hex SHA-256 of the payload: for a POST the
JSON body, for a GET the query parameters written as a compact JSON object in URL order (Vonage support,
"How do I verify that the Voice API Webhook request and its payload has not been tampered during transit";
the official Node snippet hashes ``JSON.stringify(Object.assign(query, body))``).

The official Python helper (vonage-jwt ``verify_signature``, used by vonage-voice ``Voice.verify_signature``)
checks only the HS256 signature with PyJWT. This module also pins the algorithm, checks ``payload_hash`` and
the token's age, and parses the JWT with the standard library: with one fixed algorithm and a symmetric key
there is nothing a JWT library adds, and the classic JWT flaws (``alg: none``, algorithm confusion) cannot
arise when anything but ``HS256`` is refused before the signature is looked at.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from millis_sip.apigw import BadRequest, Request, reply
from millis_sip.core.outbound import OutboundStatus
from millis_sip.core.ports import Clock, Secret
from millis_sip.core.router import Challenge, InboundCall, Routed
from millis_sip.core.sip import SipUri
from millis_sip.edges.carriers import InvalidSignature, Refusal
from millis_sip.edges.carriers.fields import DIGITS, SECONDS, UUID, Fields, form, one_of
from millis_sip.edges.carriers.flow import (
    CarrierFlow,
    DialOutcome,
    DialReport,
    Response,
    route_url,
    whole,
    x_headers,
)
from millis_sip.edges.carriers.webhooks import Carrier, CarrierWebhooks, Pairs, SignedButUnreadable, WebhookRoute
from millis_sip.messages import Messages

AUTHORIZATION_HEADER = "Authorization"
_MAX_TOKEN_LENGTH = 8192
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def verify(
    authorization: str | None,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    max_age_seconds: int = 300,
    leeway_seconds: int = 60,
) -> dict[str, object]:
    """Return the verified claims, or raise ``InvalidSignature``.

    ``authorization`` is the ``Authorization`` header value; ``body`` is what Vonage hashed: the raw body of
    a POST, or ``query_payload(params)`` for a GET. ``secrets`` are the account's signature secrets (two while
    one is rotated). The token must have been issued at most ``max_age_seconds`` ago and at most
    ``leeway_seconds`` in the future (clock skew). The caller may further check ``api_key`` and
    ``application_id`` in the returned claims against its own configuration.
    """
    if not secrets:
        raise InvalidSignature("no key configured")
    token = _bearer_token(authorization)
    header_b64, claims_b64, signature_b64 = _segments(token)
    header = _json_object(header_b64)
    if header.get("alg") != "HS256":
        raise InvalidSignature("unsupported alg")
    if "crit" in header:
        raise InvalidSignature("unsupported header")
    signing_input = f"{header_b64}.{claims_b64}".encode("ascii")
    presented = _b64url_decode(signature_b64)
    if not any(
        hmac.compare_digest(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest(), presented)
        for secret in secrets
    ):
        raise InvalidSignature("signature mismatch")
    claims = _json_object(claims_b64)
    _check_times(claims, now, max_age_seconds, leeway_seconds)
    _check_payload_hash(claims, body)
    return claims


def query_payload(params: Sequence[tuple[str, str]]) -> bytes:
    """What Vonage hashes for a GET webhook: the query parameters as a compact JSON object, in URL order."""
    return json.dumps(dict(params), separators=(",", ":"), ensure_ascii=False).encode()


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise InvalidSignature("missing authorization")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidSignature("malformed authorization")
    return token


def _segments(token: str) -> tuple[str, str, str]:
    parts = token.split(".")
    if len(token) > _MAX_TOKEN_LENGTH or len(parts) != 3 or not all(_SEGMENT.fullmatch(part) for part in parts):
        raise InvalidSignature("malformed token")
    return parts[0], parts[1], parts[2]


def _b64url_decode(segment: str) -> bytes:
    """Unpadded base64url (RFC 7515): ``_segments`` already allowed only that alphabet."""
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidSignature("malformed token") from None


def _json_object(segment: str) -> dict[str, object]:
    try:
        value = json.loads(_b64url_decode(segment))
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise InvalidSignature("malformed token") from None
    if not isinstance(value, dict):
        raise InvalidSignature("malformed token")
    return value


def _number(claims: dict[str, object], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSignature(f"malformed {name}")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidSignature(f"malformed {name}") from None
    if not math.isfinite(number):  # json.loads accepts NaN and Infinity
        raise InvalidSignature(f"malformed {name}")
    return number


def _check_times(claims: dict[str, object], now: float, max_age: int, leeway: int) -> None:
    issued_at = _number(claims, "iat")
    if issued_at is None:
        raise InvalidSignature("missing iat")
    if issued_at < now - max_age:
        raise InvalidSignature("stale token")
    if issued_at > now + leeway:
        raise InvalidSignature("future token")
    expires = _number(claims, "exp")  # Vonage sends none today; honour one if it appears
    if expires is not None and now >= expires + leeway:
        raise InvalidSignature("expired token")
    not_before = _number(claims, "nbf")
    if not_before is not None and now < not_before - leeway:
        raise InvalidSignature("future token")


def _check_payload_hash(claims: dict[str, object], body: bytes) -> None:
    claimed = claims.get("payload_hash")
    if not isinstance(claimed, str):
        raise InvalidSignature("missing payload_hash")
    if not _HEX_SHA256.fullmatch(claimed):
        raise InvalidSignature("malformed payload_hash")
    wanted = claimed.lower().encode("ascii")
    if not any(hmac.compare_digest(hashlib.sha256(form).hexdigest().encode(), wanted) for form in _payload_forms(body)):
        raise InvalidSignature("payload hash mismatch")


def _payload_forms(body: bytes) -> list[bytes]:
    """The body as received and, for a JSON object, its compact form (Vonage hashes the compact JSON)."""
    forms = [body]
    try:
        value = json.loads(body)
    except ValueError:
        return forms
    if isinstance(value, dict):
        compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        if compact != body:
            forms.append(compact)
    return forms


# --- the answer_url and the event_url: NCCO out -------------------------------------------------------------

ANSWER_PATH = "/carriers/vonage/answer"
EVENT_PATH = "/carriers/vonage/event"
CARRIER = "vonage"
_NUMBER = re.compile(r"[1-9][0-9]{6,14}\Z")  # Vonage's `from`: E.164 digits without the +
# Vonage's ids (tests/fixtures/carriers/SOURCES.md, "Formats"): conversation_uuid is "CON-" and a UUID in the
# webhook reference, the Voice API description (Nexmo/api-specification, definitions/voice.yml) and Vonage's
# tutorial capture, a bare UUID in the NCCO reference's input examples; a leg's uuid is a UUID, or 32 hex digits
# without dashes in the tutorial capture.
CONVERSATION_UUID = form(rf"(?:CON-)?{UUID}", "Vonage's conversation_uuid is CON- and a UUID")
LEG_UUID = form(rf"{UUID}|[0-9a-fA-F]{{32}}", "Vonage's uuid is a UUID (or 32 hex digits)")
DIRECTION = one_of("inbound", "outbound")
# Every status of the event webhook (developer.vonage.com/voice/voice-api/webhook-reference, "Event webhook":
# the corpus' event-*.json), as what it means for the leg to Millis; any other payload is not an event.
_EVENT_OUTCOMES = {
    "started": DialOutcome.OTHER,
    "ringing": DialOutcome.OTHER,
    "answered": DialOutcome.ANSWERED,
    "completed": DialOutcome.COMPLETED,
    "cancelled": DialOutcome.CANCELED,
    "busy": DialOutcome.FAILED,
    "failed": DialOutcome.FAILED,
    "rejected": DialOutcome.FAILED,
    "unanswered": DialOutcome.FAILED,
    "timeout": DialOutcome.FAILED,
    "disconnected": DialOutcome.OTHER,
}
EVENT_STATUS = one_of(*_EVENT_OUTCOMES)


class NccoAnswers:
    """Vonage's answers: NCCO actions (developer.vonage.com/voice/voice-api/ncco-reference)."""

    def __init__(self, messages: Messages, *, answer_url: str, event_url: str) -> None:
        self._messages = messages
        self._answer_url = answer_url
        self._event_url = event_url

    def dial(self, routed: Routed[SipUri], headers: Mapping[str, str], call: InboundCall, query: str) -> Response:
        endpoint = {
            "type": "sip",
            "uri": str(routed.placement),
            "headers": {name.removeprefix("X-"): value for name, value in headers.items()},  # Vonage adds X-
        }
        connect: dict[str, Any] = {
            "action": "connect",
            "endpoint": [endpoint],
            "eventType": "synchronous",  # a failed leg's event may answer with the next NCCO (the other region)
            "eventUrl": [self._event_url + (f"?{query}" if query else "")],
            "eventMethod": "POST",
        }
        number = next((n.removeprefix("+") for n in (call.caller, call.dialed) if n), "")
        if _NUMBER.match(number):
            connect["from"] = number  # the caller's number reaches Millis as From, where Vonage allows it
        else:
            connect["randomFromNumber"] = True
        return _ncco([connect])

    def ask_pin(self, challenge: Challenge, call: InboundCall, declined: str | None) -> Response:
        # Nothing keyed in comes back in the input's own (signed) payload, with empty digits: no URL needed.
        prompt = self._messages.pin_prompt
        if challenge.retry:
            prompt = f"{self._messages.pin_retry} {prompt}"
        return _ncco(
            [
                {"action": "talk", "text": prompt, "language": self._messages.language, "bargeIn": True},
                {
                    "action": "input",
                    "type": ["dtmf"],
                    "dtmf": {"maxDigits": challenge.digits, "submitOnHash": True, "timeOut": 8},
                    "eventUrl": [self._answer_url],
                    "eventMethod": "POST",
                },
            ]
        )

    def farewell(self) -> Response:
        if not self._messages.failure:
            return _ncco([])  # an empty NCCO ends the call
        return self.spoken(self._messages.failure)

    def spoken(self, text: str) -> Response:
        """``text`` said on the leg that asked (a warm transfer's whisper, the failure message)."""
        return _ncco([{"action": "talk", "text": text, "language": self._messages.language}])

    def hang_up(self) -> Response:
        return reply(204)  # nothing to change: the call goes on, or is over

    def end_call(self) -> Response:
        return _ncco([])  # an empty NCCO ends the call


class VonageVoice(CarrierWebhooks):
    """``GET|POST /carriers/vonage/answer`` (the application's answer_url, and the PIN input's eventUrl) and
    ``POST /carriers/vonage/event`` (the application's event_url, and the connect action's: how the leg to
    Millis went). Each request's signed JWT (``Authorization: Bearer``, HS256 with the signature secret, the
    payload's hash, its age and, when configured, the application) is checked before anything reads it, the
    body included. The JWT does not say which URL it was for, so each route takes only its own payloads: the
    answer route an answer or an input's result (no ``status``), the event route an event with a documented
    ``status``; the event URL's ``attempt=2`` counts only with its token."""

    title = "Vonage"

    def __init__(
        self,
        flow: CarrierFlow,
        secrets: Secret | None,
        messages: Messages,
        *,
        clock: Clock,
        application_id: str | None = None,
    ) -> None:
        super().__init__(flow, secrets, messages)
        self._clock = clock
        self._application_id = application_id

    def verify(self, request: Request, keys: list[str]) -> Pairs:
        """The payload's fields, read only once its JWT is checked: a GET's query, a POST's JSON object."""
        get = request.method == "GET"
        payload = query_payload(request.query_pairs) if get else request.body
        claims = verify(
            request.headers.get(AUTHORIZATION_HEADER.lower()), payload, keys, now=self._clock.now().timestamp()
        )
        if self._application_id and claims.get("application_id") != self._application_id:
            raise InvalidSignature("another application")
        if get:
            return request.query_pairs
        try:
            return _json_body(request.body).items()
        except BadRequest as exc:
            raise SignedButUnreadable(str(exc)) from None

    def call(self, fields: Fields, request: Request) -> InboundCall:
        return _inbound(fields)

    def answering(self, call: InboundCall, fields: Fields, request: Request) -> InboundCall:
        if "status" in fields:
            raise Refusal(400, "an event payload (it has a status) is not an answer or an input's result")
        return call

    def report(self, fields: Fields, request: Request) -> DialReport:
        status = fields.require("status", EVENT_STATUS)
        outbound = fields.read("direction", DIRECTION) == "outbound"  # the leg to Millis, not the caller's
        duration = whole(fields.read("duration", SECONDS))
        leg = fields.read("uuid", LEG_UUID)
        outcome = _EVENT_OUTCOMES[status] if outbound else DialOutcome.OTHER
        return DialReport(outcome, status, duration, leg_id=leg)

    def answers(self, request: Request) -> NccoAnswers:
        own = (ANSWER_PATH, EVENT_PATH)
        return NccoAnswers(
            self._messages,
            answer_url=route_url(request.url, own, ANSWER_PATH),
            event_url=route_url(request.url, own, EVENT_PATH),
        )


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body) if body else {}
    except (ValueError, RecursionError):
        raise BadRequest("the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body is not a JSON object")
    return data


def _inbound(fields: Fields) -> InboundCall:
    """The call: its ids in Vonage's forms, its numbers (``14155550100``, no ``+``) in E.164."""
    # One call, one id, whichever spelling a request uses (the answer request's CON-..., an input result's bare
    # UUID): the PIN's answer must meet the challenge's marker, and a retry its first answer.
    conversation = "CON-" + fields.require("conversation_uuid", CONVERSATION_UUID).removeprefix("CON-").lower()
    leg = fields.read("uuid", LEG_UUID)
    headers = fields.get("headers")
    sip_headers = {str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {}
    sip_headers.update(x_headers(fields, "SipHeader_"))
    return InboundCall(
        CARRIER,
        conversation,
        fields.number("from"),
        fields.number("to"),
        pin=_keyed(fields),
        can_challenge=True,
        context={"vonage_uuid": leg} if leg else {},
        sip_headers=sip_headers,
        leg_id=leg,
    )


def _keyed(fields: Fields) -> str | None:
    """What the caller keyed in, from the input action's result (``{"dtmf": {"digits": "...", "timed_out":
    ...}}``, or the older ``{"dtmf": "..."}``): "" for nothing (digits empty, or null after speech input); None
    when the payload is not an input's result."""
    result = fields.get("dtmf")
    if result is None:
        return None
    if isinstance(result, dict):
        digits = result.get("digits")
        return "" if digits is None else DIGITS.read("dtmf.digits", digits).rstrip("#")
    return DIGITS.read("dtmf", result).rstrip("#")


def _ncco(actions: list[dict[str, Any]]) -> Response:
    return reply(200, json.dumps(actions, separators=(",", ":")), content_type="application/json")


# --- outbound calls (docs/outbound.md): Vonage requests the call's answer_url when the person answers ----------

OUTBOUND_ANSWER_PATH = "/carriers/vonage/outbound"
OUTBOUND_STATUS_PATH = "/carriers/vonage/outbound/status"
# The event webhook's statuses for the call the stack placed, with machine detection's ``human`` and ``machine``
# (webhook-reference, "Event webhook"; Voice API description: "If `continue`, Vonage sends an HTTP request to
# `event_url` with the Call event machine").
_CALL_STATUSES = {
    "started": OutboundStatus.OTHER,
    "ringing": OutboundStatus.RINGING,
    "answered": OutboundStatus.OTHER,
    "completed": OutboundStatus.COMPLETED,
    "busy": OutboundStatus.BUSY,
    "cancelled": OutboundStatus.CANCELED,
    "unanswered": OutboundStatus.NO_ANSWER,
    "timeout": OutboundStatus.NO_ANSWER,
    "rejected": OutboundStatus.FAILED,
    "failed": OutboundStatus.FAILED,
    "disconnected": OutboundStatus.OTHER,
    "machine": OutboundStatus.MACHINE,
    "human": OutboundStatus.OTHER,
}


class VonageOutbound:
    """Vonage's outbound requests (the call's answer_url and event_url, JSON, each with its signed JWT) and NCCO
    answers. The leg to Millis reports to the connect action's eventUrl: ``completed`` with its duration, or how
    it failed; its ``started``, ``ringing`` and ``answered`` say nothing yet."""

    answer_path = OUTBOUND_ANSWER_PATH
    status_path = OUTBOUND_STATUS_PATH

    def __init__(self, messages: Messages) -> None:
        self._answers = NccoAnswers(messages, answer_url="", event_url="")  # no input here: no URLs

    def carrier_call_id(self, fields: Fields) -> str | None:
        # The leg's uuid; machine detection's events name it call_uuid (webhook-reference).
        return fields.read("uuid", LEG_UUID) or fields.read("call_uuid", LEG_UUID)

    def answered_by(self, fields: Fields) -> str | None:
        status = fields.read("status", one_of(*_CALL_STATUSES))
        return status if status in ("human", "machine") else None

    def status(self, fields: Fields) -> tuple[OutboundStatus, int]:
        status = fields.meaning("status", _CALL_STATUSES) or OutboundStatus.OTHER
        return status, whole(fields.read("duration", SECONDS))

    def is_answer(self, fields: Fields) -> bool:
        return False

    def dial_result(self, fields: Fields) -> tuple[bool, int | None, str] | None:
        status = fields.require("status", EVENT_STATUS)
        outcome = _EVENT_OUTCOMES[status]
        if outcome is DialOutcome.COMPLETED:
            return True, whole(fields.read("duration", SECONDS)), status
        if outcome in (DialOutcome.FAILED, DialOutcome.CANCELED):
            return False, 0, status
        return None  # started, ringing, answered, disconnected: nothing to record yet

    def dial(self, uri: SipUri, headers: Mapping[str, str], action_url: str, *, caller: str | None) -> Response:
        endpoint = {
            "type": "sip",
            "uri": str(uri),
            "headers": {name.removeprefix("X-"): value for name, value in headers.items()},  # Vonage adds X-
        }
        connect: dict[str, Any] = {
            "action": "connect",
            "endpoint": [endpoint],
            "eventType": "synchronous",  # a failed leg's event answers with what the person hears
            "eventUrl": [action_url],
            "eventMethod": "POST",
        }
        number = (caller or "").removeprefix("+")
        if _NUMBER.match(number):
            connect["from"] = number
        else:
            connect["randomFromNumber"] = True
        return _ncco([connect])

    def hang_up(self, *, speak: bool) -> Response:
        return self._answers.farewell() if speak else self._answers.end_call()

    def acknowledge(self) -> Response:
        return self._answers.hang_up()  # 204: nothing to change

    def say(self, text: str) -> Response:
        return self._answers.spoken(text)


VONAGE = Carrier(
    name=CARRIER,
    title="Vonage",
    routes=(
        WebhookRoute("GET", ANSWER_PATH, "answer"),
        WebhookRoute("POST", ANSWER_PATH, "answer"),
        WebhookRoute("POST", EVENT_PATH, "status"),
    ),
    credential_variable="VONAGE_SIGNATURE_SECRET",
    credential_setting="vonage_signature_secret_arn",
    patience=CARRIER,
    webhooks=lambda flow, credential, settings, clock: VonageVoice(
        flow, credential, settings.messages, clock=clock, application_id=settings.vonage_application_id
    ),
    outbound=lambda settings: VonageOutbound(settings.messages),
    transfers=True,
    whisper_methods=("GET", "POST"),
)

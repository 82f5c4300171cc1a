"""What every carrier edge does the same way, whatever its wire format: authenticate the webhook before
anything reads it, ask the core's router, turn the decision into the carrier's answer document, and turn the
carrier's report of the bridged leg (its status callback) into the call's next move (docs/carriers/).

Each carrier module supplies its signature check, its field names, and an ``Answers`` that writes its
document (TwiML, TeXML, NCCO, Plivo XML)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from millis_sip.apigw import BadRequest, reply
from millis_sip.core.errors import BridgeError
from millis_sip.core.lifecycle import PhoneCalls
from millis_sip.core.ports import Metrics, Secret
from millis_sip.core.router import ANY_SIP_URI, CallRouter, Challenge, Decision, InboundCall, Refused, Routed
from millis_sip.core.sip import SipUri, bridge_headers
from millis_sip.edges.carriers import InvalidSignature
from millis_sip.observability import logger

Response = dict[str, Any]  # an API Gateway proxy answer
MAX_TEXT = 256


class Answers(Protocol):
    """A carrier's answer documents."""

    def dial(self, routed: Routed[SipUri], headers: Mapping[str, str], call: InboundCall, attempt: int) -> Response:
        """Bridge the caller to ``routed.placement`` (the Millis SIP URI), with ``headers`` on that leg."""
        ...

    def ask_pin(self, challenge: Challenge, call: InboundCall) -> Response:
        """Ask the caller for the PIN and send the digits back to the answer route."""
        ...

    def farewell(self) -> Response:
        """The failure message, then hang up (or reject the call when there is no message)."""
        ...

    def hang_up(self) -> Response:
        """Nothing more to do on this call."""
        ...


class DialOutcome(StrEnum):
    ANSWERED = "answered"  # the agent picked up the bridged leg
    COMPLETED = "completed"  # the bridged call is over
    CANCELED = "canceled"  # the caller hung up while the agent's leg was ringing
    FAILED = "failed"  # the agent's leg did not connect: the other region may
    OTHER = "other"  # nothing to act on


@dataclass(frozen=True, slots=True)
class DialReport:
    """What a carrier's status callback says about the leg to Millis."""

    outcome: DialOutcome
    status: str  # the carrier's own word, for the record's reason
    duration_seconds: int = 0
    leg_id: str | None = None


def authenticate(credential: Secret | None, carrier: str, check: Callable[[list[str]], None]) -> Response | None:
    """None when ``check`` accepts the request with one of the carrier's keys; else the refusal: 403 before
    anything reads the request (not configured, a bad or missing signature), 503 when the key cannot be read."""
    if credential is None:
        return reply(403, f"{carrier} is not configured on this stack.")
    try:
        keys = [line.strip() for line in credential().splitlines() if line.strip()]
    except BridgeError as exc:
        logger.error("Cannot read the carrier's credential", extra={"carrier": carrier, "error": exc.code})
        return reply(503, f"The {carrier} credential cannot be read now.", headers={"Retry-After": "1"})
    try:
        check(keys)
    except (InvalidSignature, BadRequest) as exc:
        why = exc.reason if isinstance(exc, InvalidSignature) else str(exc)
        logger.warning("Refused a carrier webhook", extra={"carrier": carrier, "reason": why})
        return reply(403, f"Forbidden: {why}.")
    return None


def text(value: object) -> str | None:
    """A field as text, cut to MAX_TEXT (None when absent or empty)."""
    return str(value)[:MAX_TEXT] if value not in (None, "") else None


def keyed_pin(fields: dict[str, str], *, declined: bool) -> str | None:
    """What the caller keyed in: None before any prompt, "" for nothing (a declined prompt)."""
    digits = fields.get("Digits")
    if declined:
        return ""
    return digits.strip().rstrip("#") if digits is not None else None


def route_url(url: str, own_paths: tuple[str, ...], path: str, query: str = "") -> str:
    """Another of this API's routes, from the URL the carrier called (so it carries the same base)."""
    parts = urlsplit(url)
    base = parts.path
    for own in own_paths:
        if base.endswith(own):
            base = base[: -len(own)]
            break
    else:
        base = ""
    return urlunsplit((parts.scheme, parts.netloc, base + path, query, ""))


def whole(value: object) -> int:
    """A non-negative whole number of seconds, else 0."""
    raw = str(value) if value is not None else ""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 9 else 0


def x_headers(fields: Mapping[str, object], prefix: str) -> dict[str, str]:
    """The caller's X- headers a carrier passes as ``<prefix>X-Name`` fields (e.g. Twilio's SipHeader_X-Name)."""
    return {
        name[len(prefix) :]: str(value)
        for name, value in fields.items()
        if name.startswith(prefix) and name[len(prefix) :].lower().startswith("x-") and isinstance(value, str)
    }


class CarrierFlow:
    """The router and the call's lifecycle, as a carrier's webhooks reach them."""

    def __init__(self, carrier: str, router: CallRouter, calls: PhoneCalls, *, metrics: Metrics) -> None:
        self.carrier = carrier
        self._router = router
        self._calls = calls
        self._metrics = metrics

    def answer(self, call: InboundCall, deadline: float, answers: Answers) -> Response:
        """A call comes in (or the caller answered a PIN prompt): the router decides, the carrier is told."""
        decision = self._router.route(call, deadline=deadline, placement=ANY_SIP_URI)
        return self._render(call, decision, answers, attempt=1)

    def report(
        self, call: InboundCall, attempt: int, report: DialReport, deadline: float, answers: Answers
    ) -> Response:
        """The carrier reports the leg to Millis: bridged, over, or failed (then the other region, once)."""
        record = self._calls.find(self.carrier, call.call_ref, attempt)
        if record is None:
            logger.warning("A status for a call this stack has no record of", extra={"status": report.status[:32]})
            return answers.hang_up()
        if report.outcome is DialOutcome.ANSWERED:
            self._calls.bridged(record, leg_id=report.leg_id)
            return answers.hang_up()
        if report.outcome is DialOutcome.COMPLETED:
            self._calls.completed(record, duration_seconds=report.duration_seconds)
            return answers.hang_up()
        if report.outcome is DialOutcome.CANCELED:
            self._calls.ended(record, who="caller", bridged_at=None)
            return answers.hang_up()
        if report.outcome is DialOutcome.OTHER:
            return answers.hang_up()
        reason = f"dial_{report.status or 'unknown'}"[:64]
        self._calls.failed(record, reason=reason)
        self._metrics.inbound_failure(reason)
        retried = self._router.failover(call, record, attempt=attempt, deadline=deadline, placement=ANY_SIP_URI)
        if retried is None:
            return answers.farewell()
        return self._render(call, retried, answers, attempt=attempt + 1)

    def _render(self, call: InboundCall, decision: Decision[SipUri], answers: Answers, *, attempt: int) -> Response:
        if isinstance(decision, Challenge):
            logger.info("Asking the caller for the registration's PIN", extra={"retry": decision.retry})
            return answers.ask_pin(decision, call)
        if isinstance(decision, Refused):
            logger.warning("Releasing the caller without an agent", extra={"reason": decision.reason})
            return answers.farewell()
        record = decision.record
        self._metrics.inbound("bridging")
        logger.info(
            "Bridging the call to Millis",
            extra={
                "carrier": self.carrier,
                "millis_call_id": record.call_id,
                "millis_region": record.millis_region,
                "how": decision.how,
                "attempt": attempt,
            },
        )
        headers = bridge_headers(record.call_id, self.carrier, call.call_ref)
        return answers.dial(decision, headers, call, attempt)

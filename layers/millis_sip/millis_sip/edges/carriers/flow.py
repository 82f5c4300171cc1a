"""What every carrier edge does the same way, whatever its wire format: authenticate the webhook before
anything reads it, read its fields in their documented forms (``fields``), ask the core's router, turn the
decision into the carrier's answer document, and turn the carrier's report of the bridged leg (its status
callback) into the call's next move (docs/carriers/).

The answers name this stack's own URLs for the carrier to come back to (the <Dial> action, the PIN prompt's
redirect). State the stack writes into such a URL's query (``attempt=2``: the status URL of the failover's second
attempt; ``pin=none``: nothing was keyed in at the PIN prompt) travels with a token, ``StackKeys.action_token``
for that purpose, carrier and call: Telnyx and Vonage sign the body and not the query, so only the token says
this stack wrote it, for this call. A query that names such state without its token is refused (403) and
changes nothing; uniformly for every carrier, though Twilio and Plivo sign the URL as well.

Each carrier module supplies its signature check, its field names and forms, and an ``Answers`` that writes its
document (TwiML, TeXML, NCCO, Plivo XML)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from millis_sip.apigw import reply
from millis_sip.core.errors import BridgeError
from millis_sip.core.keys import StackKeys
from millis_sip.core.lifecycle import PhoneCalls
from millis_sip.core.ports import Metrics
from millis_sip.core.router import (
    ANY_SIP_URI,
    CALL_CONFLICT,
    CALL_ENDED,
    CallRouter,
    Challenge,
    Decision,
    InboundCall,
    Refused,
    Routed,
)
from millis_sip.core.sip import SipUri, bridge_headers
from millis_sip.edges.carriers import Refusal
from millis_sip.edges.carriers.fields import DIGITS, Fields
from millis_sip.observability import logger

Response = dict[str, Any]  # an API Gateway proxy answer

# The query of this stack's action URLs: the state each parameter's value names, and the token that vouches for it.
ATTEMPT = "attempt"
PIN = "pin"
TOKEN = "token"  # noqa: S105 - the parameter's name, not a secret
ATTEMPT_2 = "attempt-2"  # the purpose of the failover's second attempt's status URL
PIN_DECLINED = "pin-declined"  # the purpose of the PIN prompt's "nothing keyed in" redirect
# The router's refusals of a request it must not answer again (a captured request replayed after the call ended,
# a call id asked again for other numbers): the carrier ends the call without the failure message.
NOT_ANSWERED_AGAIN = frozenset({CALL_CONFLICT, CALL_ENDED})


class Answers(Protocol):
    """A carrier's answer documents."""

    def dial(self, routed: Routed[SipUri], headers: Mapping[str, str], call: InboundCall, query: str) -> Response:
        """Bridge the caller to ``routed.placement`` (the Millis SIP URI), with ``headers`` on that leg; the leg's
        status comes back to the status route with ``query`` ("" for the first attempt)."""
        ...

    def ask_pin(self, challenge: Challenge, call: InboundCall, declined: str | None) -> Response:
        """Ask the caller for the PIN and send the digits back to the answer route; when nothing is keyed in, to
        the answer route with the query ``declined`` where the carrier needs a URL for that (None: none can be
        vouched for now, and nothing keyed in ends the call)."""
        ...

    def farewell(self) -> Response:
        """The failure message, then hang up (or reject the call when there is no message)."""
        ...

    def hang_up(self) -> Response:
        """Nothing more to do on this call (the answer to a status callback)."""
        ...

    def end_call(self) -> Response:
        """End the call at once, without the failure message: the request is one the router will not answer
        again (a call that has ended, a call id first asked for other numbers)."""
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


def refused(refusal: Refusal) -> Response:
    """The answer to a request refused before the router saw it."""
    if refusal.status == 503:
        return reply(503, f"{refusal.reason}.", headers={"Retry-After": "1"})
    what = "Forbidden" if refusal.status == 403 else "Bad request"
    return reply(refusal.status, f"{what}: {refusal.reason}.")


def keyed_pin(fields: Fields) -> str | None:
    """What the caller keyed in (``Digits``): None before any prompt, "" for nothing."""
    digits = fields.read("Digits", DIGITS)
    return digits.rstrip("#") if digits is not None else None


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
    """The router and the call's lifecycle, as a carrier's webhooks reach them; ``keys`` vouch for the state
    this stack writes into its action URLs."""

    def __init__(
        self, carrier: str, router: CallRouter, calls: PhoneCalls, *, keys: StackKeys, metrics: Metrics
    ) -> None:
        self.carrier = carrier
        self._router = router
        self._calls = calls
        self._keys = keys
        self._metrics = metrics

    def answer(self, call: InboundCall, deadline: float, answers: Answers) -> Response:
        """A call comes in (or the caller answered a PIN prompt): the router decides, the carrier is told."""
        decision = self._router.route(call, deadline=deadline, placement=ANY_SIP_URI)
        return self._render(call, decision, answers, attempt=1)

    def report(
        self, call: InboundCall, attempt: int, report: DialReport, deadline: float, answers: Answers
    ) -> Response:
        """The carrier reports the leg to Millis: bridged, over, or failed (then the other region, once). The
        record is read and every move written within the store's budget of the answer's ``deadline``, so a
        store that hangs leaves the other region its time and never holds a carrier past its patience."""
        record = self._calls.find(self.carrier, call.call_ref, attempt, deadline=deadline)
        if record is None:
            # Never routed here, or the store cannot say now: no other region can be chosen without the record.
            logger.warning(
                "A status for a call this stack has no record of, or cannot read now",
                extra={"status": report.status[:32], "attempt": attempt},
            )
            # A failed leg leaves the caller on the line: they hear the failure message rather than silence.
            return answers.farewell() if report.outcome is DialOutcome.FAILED else answers.hang_up()
        if report.outcome is DialOutcome.ANSWERED:
            self._calls.bridged(record, leg_id=report.leg_id, deadline=deadline)
            return answers.hang_up()
        if report.outcome is DialOutcome.COMPLETED:
            self._calls.completed(record, duration_seconds=report.duration_seconds, deadline=deadline)
            return answers.hang_up()
        if report.outcome is DialOutcome.CANCELED:
            self._calls.ended(record, who="caller", bridged_at=None, deadline=deadline)
            return answers.hang_up()
        if report.outcome is DialOutcome.OTHER:
            return answers.hang_up()
        reason = f"dial_{report.status or 'unknown'}"[:64]
        self._calls.failed(record, reason=reason, deadline=deadline)
        self._metrics.inbound_failure(reason)
        # The same call once more, with the numbers it was routed for: a leg's report may name the leg's own ends
        # (Vonage's event of a SIP leg has the SIP URI as its "to"), and the other region must serve the same route.
        same = replace(call, caller=record.caller_number, dialed=record.dialed_number)
        retried = self._router.failover(same, record, attempt=attempt, deadline=deadline, placement=ANY_SIP_URI)
        if retried is None:
            return answers.farewell()
        return self._render(same, retried, answers, attempt=attempt + 1)  # the caller ID the call had

    # --- the state in this stack's action URLs ---------------------------------------------------------------

    def attempt(self, query: Sequence[tuple[str, str]], call_ref: str) -> int:
        """The attempt a status request is about: 2 when its URL is the second attempt's, with its token for this
        call; else 1. ``Refusal`` (403, 503, 400) for an ``attempt`` this stack did not write."""
        return 2 if self._vouched(query, call_ref, ATTEMPT, {"1": None, "2": ATTEMPT_2}) == "2" else 1

    def declined(self, query: Sequence[tuple[str, str]], call_ref: str) -> bool:
        """Whether the request is the PIN prompt's "nothing keyed in" redirect of this call, with its token."""
        return self._vouched(query, call_ref, PIN, {"none": PIN_DECLINED}) is not None

    def _vouched(
        self, query: Sequence[tuple[str, str]], call_ref: str, name: str, purposes: Mapping[str, str | None]
    ) -> str | None:
        """The value of ``name`` in the query, once its token shows this stack wrote it there for this call (a
        value with a purpose of None needs none); None when the query does not name it."""
        values = [value for key, value in query if key == name]
        tokens = [value for key, value in query if key == TOKEN]
        if not values:
            return None
        if len(values) > 1 or len(tokens) > 1 or values[0] not in purposes:
            raise Refusal(400, f"the query's {name} is not one this stack writes")
        purpose = purposes[values[0]]
        if purpose is None:
            return values[0]
        try:
            vouched = self._keys.action_token_matches(tokens[0] if tokens else None, purpose, self.carrier, call_ref)
        except BridgeError as exc:
            logger.error("Cannot read the keys secret to check an action URL", extra={"error": exc.code})
            raise Refusal(503, "The keys secret cannot be read now") from None
        if not vouched:
            logger.warning(
                "Refused an action URL this stack did not write for this call",
                extra={"carrier": self.carrier, "parameter": name},
            )
            raise Refusal(403, f"{name}={values[0]} without this stack's token for this call")
        return values[0]

    def _action_query(self, name: str, value: str, purpose: str, call_ref: str) -> str | None:
        """``name=value`` with its token, for an action URL of this call; None when the keys secret cannot be
        read now."""
        try:
            token = self._keys.action_token(purpose, self.carrier, call_ref)
        except BridgeError as exc:
            logger.error("Cannot read the keys secret to vouch for an action URL", extra={"error": exc.code})
            return None
        return f"{name}={value}&{TOKEN}={token}"

    # --- the answer -------------------------------------------------------------------------------------------

    def _render(self, call: InboundCall, decision: Decision[SipUri], answers: Answers, *, attempt: int) -> Response:
        if isinstance(decision, Challenge):
            logger.info("Asking the caller for the registration's PIN", extra={"retry": decision.retry})
            return answers.ask_pin(decision, call, self._action_query(PIN, "none", PIN_DECLINED, call.call_ref))
        if isinstance(decision, Refused):
            if decision.reason in NOT_ANSWERED_AGAIN:
                logger.warning("Ending a call the router does not answer again", extra={"reason": decision.reason})
                return answers.end_call()
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
        query = ""
        if attempt == 2:
            # Without the token the second attempt's status is refused (403): the record then waits for Millis'
            # session webhook, but the caller still reaches the agent.
            query = self._action_query(ATTEMPT, "2", ATTEMPT_2, call.call_ref) or f"{ATTEMPT}=2"
        return answers.dial(decision, headers, call, query)

"""Outbound calls at the carrier's edge (docs/outbound.md): the answer URL the carrier requests when the person
answers, and the status URL its callbacks (and the answer's dial, when the leg to Millis ends) come to.

Each request is verified as the carrier signs its webhooks (the carrier's ``CarrierWebhooks.verify``) before
anything reads it; the call it is for is named in the URL's query (``call``) with a token only this stack can
make for that call and carrier (``StackKeys.action_token``): a request naming another call, or no token, is
refused (403) and changes nothing. Then ``core.outbound.OutboundAnswers`` decides, and the carrier's dialect
(``OutboundDialect``) writes the answer: a dial to the Millis SIP URI, or a hang-up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from millis_sip.apigw import Request, reply
from millis_sip.core.calls import CallRecord
from millis_sip.core.errors import BridgeError
from millis_sip.core.keys import StackKeys
from millis_sip.core.outbound import ANSWER_PURPOSE, Bridge, OutboundAnswers, OutboundStatus
from millis_sip.core.sip import SipUri
from millis_sip.edges.carriers import Refusal
from millis_sip.edges.carriers.fields import Fields
from millis_sip.edges.carriers.flow import Response, refused, route_url
from millis_sip.edges.carriers.webhooks import CarrierWebhooks
from millis_sip.observability import logger

CALL, TOKEN, DIAL = "call", "token", "dial"  # the query of this stack's outbound URLs


class OutboundDialect(Protocol):
    """What a carrier's outbound requests say, and how it is answered."""

    answer_path: str
    status_path: str

    def carrier_call_id(self, fields: Fields) -> str | None: ...

    def answered_by(self, fields: Fields) -> str | None:
        """human, machine_start, ...: the carrier's answering-machine detection, when it ran."""
        ...

    def status(self, fields: Fields) -> tuple[OutboundStatus, int]:
        """A status callback: what it says, and the call's duration in seconds."""
        ...

    def dial_result(self, fields: Fields) -> tuple[bool, int | None, str] | None:
        """The dial's report: connected to Millis or not, for how long (None: the carrier does not say there,
        its final status callback does), the carrier's word; None when the report says nothing yet (a leg that
        is starting or ringing)."""
        ...

    def is_answer(self, fields: Fields) -> bool:
        """A status callback whose answer is what the call goes on with (a machine-detection result at Telnyx):
        answered as the answer URL is."""
        ...

    def dial(self, uri: SipUri, headers: Mapping[str, str], action_url: str, *, caller: str | None) -> Response:
        """Dial the Millis SIP URI; its report goes to ``action_url``; ``caller``: the number Millis sees as
        From, where the carrier lets the dial name one (the ``from`` number of the call)."""
        ...

    def hang_up(self, *, speak: bool) -> Response:
        """End the call (after the failure message when ``speak``)."""
        ...

    def acknowledge(self) -> Response:
        """The answer to a report that changes nothing in the call."""
        ...

    def say(self, text: str) -> Response:
        """Speak ``text`` on the leg that asked (a warm transfer's whisper), then go on."""
        ...


class OutboundWebhooks:
    def __init__(
        self,
        carrier: str,
        webhooks: CarrierWebhooks,
        dialect: OutboundDialect,
        answers: OutboundAnswers,
        *,
        keys: StackKeys,
    ) -> None:
        self._carrier = carrier
        self._webhooks = webhooks
        self._dialect = dialect
        self._answers = answers
        self._keys = keys

    def answer(self, request: Request, deadline: float) -> Response:
        """The person (or a machine) answered: bridge, or hang up."""
        checked = self._checked(request)
        if not isinstance(checked, tuple):
            return checked
        fields, call_id = checked
        record = self._answers.find(call_id, self._carrier, deadline=deadline)
        if record is None:
            logger.warning("An answered outbound call without its record: hanging up", extra={"call_id": call_id})
            return self._dialect.hang_up(speak=True)
        try:
            return self._answered(fields, record, request, deadline)
        except Refusal as exc:
            return refused(exc)

    def status(self, request: Request, deadline: float) -> Response:
        """A status callback, or the end of the dial to Millis."""
        checked = self._checked(request)
        if not isinstance(checked, tuple):
            return checked
        fields, call_id = checked
        record = self._answers.find(call_id, self._carrier, deadline=deadline)
        if record is None:
            return self._dialect.acknowledge()
        try:
            if (DIAL, "1") in request.query_pairs:
                result = self._dialect.dial_result(fields)
                if result is None:
                    return self._dialect.acknowledge()
                connected, duration, word = result
                self._answers.dialed(
                    record, connected=connected, duration_seconds=duration, status=word, deadline=deadline
                )
                return self._dialect.hang_up(speak=not connected)
            if self._dialect.is_answer(fields):  # a detection result the call goes on with (Telnyx)
                return self._answered(fields, record, request, deadline)
            status, duration = self._dialect.status(fields)
            carrier_call_id = self._dialect.carrier_call_id(fields)
            answered_by = self._dialect.answered_by(fields)
        except Refusal as exc:
            return refused(exc)
        self._answers.reported(
            record,
            status,
            carrier_call_id=carrier_call_id,
            duration_seconds=duration,
            answered_by=answered_by,
            deadline=deadline,
        )
        return self._dialect.acknowledge()

    def _answered(self, fields: Fields, record: CallRecord, request: Request, deadline: float) -> Response:
        answered_leg = getattr(self._dialect, "answered_leg", None)  # a call named otherwise until answered (Plivo)
        decision = self._answers.answered(
            record,
            carrier_call_id=self._dialect.carrier_call_id(fields),
            answered_by=self._dialect.answered_by(fields),
            deadline=deadline,
            leg_id=answered_leg(fields) if answered_leg is not None else None,
        )
        if not isinstance(decision, Bridge):
            return self._dialect.hang_up(speak=decision.speak)
        own = (self._dialect.answer_path, self._dialect.status_path)
        action = route_url(request.url, own, self._dialect.status_path, f"{request_query(request)}&{DIAL}=1")
        headers = {"X-Millis-Call-Id": record.call_id, "X-Carrier": self._carrier}
        return self._dialect.dial(decision.record.sip_uri, headers, action, caller=record.caller_number)

    def fallback(self, request: Request) -> Response:
        return self._dialect.hang_up(speak=True)

    def _checked(self, request: Request) -> tuple[Fields, str] | Response:
        return vouched_request(self._webhooks, self._keys, request, ANSWER_PURPOSE, self._carrier)


def vouched_request(
    webhooks: CarrierWebhooks, keys: StackKeys, request: Request, purpose: str, carrier: str
) -> tuple[Fields, str] | Response:
    """The request's fields and the call its URL names, once the carrier's signature is checked and the call is
    vouched for by the token this stack made for it, ``purpose`` and ``carrier``; else the refusal (403: not
    vouched for; 503: the keys secret cannot be read now, the carrier retries)."""
    fields = webhooks.verified(request)
    if not isinstance(fields, Fields):
        return fields
    query = dict(request.query_pairs)
    call_id, token = query.get(CALL), query.get(TOKEN)
    try:
        vouched = call_id is not None and keys.action_token_matches(token, purpose, carrier, call_id)
    except BridgeError:  # the keys secret cannot be read now: the carrier retries
        return reply(503, "The keys secret cannot be read now.", headers={"Retry-After": "1"})
    if not vouched or call_id is None:
        logger.warning(
            "Refused a carrier's request: the call in its URL is not vouched for", extra={"purpose": purpose}
        )
        return reply(403, "Forbidden: the call in the URL is not vouched for by its token.")
    return fields, call_id


def request_query(request: Request) -> str:
    """The query of this stack's outbound URL as the carrier requested it (the call and its token only)."""
    from urllib.parse import urlencode

    return urlencode([(k, v) for k, v in request.query_pairs if k in (CALL, TOKEN)])

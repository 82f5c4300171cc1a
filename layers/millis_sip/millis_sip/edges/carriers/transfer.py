"""Transfers at the carrier's edge (docs/transfers.md): the whisper URL (what the person who answers a warm
transfer hears first), the transfer status URL (the transfer <Dial>'s action: how the transfer leg went) and,
for a carrier that moves a call to a URL (Plivo), the transfer's call document.

As for outbound calls, each request is verified as the carrier signs its webhooks before anything reads it,
and the call it is for is named in the query (``call``) with a token only this stack makes for that call,
carrier and purpose (``transfer``): anything else is refused (403) and changes nothing."""

from __future__ import annotations

from typing import Protocol, cast
from urllib.parse import urlencode

from millis_sip.apigw import Request, reply
from millis_sip.core.errors import (
    BridgeError,
    StoreUnavailable,
)
from millis_sip.core.keys import StackKeys
from millis_sip.core.transfer import (
    TRANSFER_PURPOSE,
    CallTransfers,
    TransferMode,
    TransferPlan,
    TransferReports,
    TransferStatus,
    refer_refusal,
)
from millis_sip.edges.carriers import Refusal
from millis_sip.edges.carriers.fields import Fields
from millis_sip.edges.carriers.flow import Response, refused, route_url
from millis_sip.edges.carriers.outbound import CALL, TOKEN, OutboundDialect, request_query, vouched_request
from millis_sip.edges.carriers.webhooks import CarrierWebhooks
from millis_sip.observability import logger


def transfer_paths(carrier: str) -> tuple[str, str]:
    """The whisper and status routes of ``carrier``'s transfers (the API gives the carrier these URLs)."""
    return f"/carriers/{carrier}/transfer/whisper", f"/carriers/{carrier}/transfer/status"


MAX_REFER_TO = 1024  # characters of a Refer-To the stack reads (a SIP URI with its headers, at most)


def transfer_answer_path(carrier: str) -> str:
    """Where a carrier that moves a call to a URL (Plivo) fetches the transfer's call document."""
    return f"/carriers/{carrier}/transfer/answer"


class TransferDialect(Protocol):
    """A carrier that moves a call to a URL answers it with the transfer's call document (Plivo XML)."""

    def transfer(self, plan: TransferPlan) -> Response: ...


class TransferWebhooks:
    def __init__(
        self,
        carrier: str,
        webhooks: CarrierWebhooks,
        dialect: OutboundDialect,
        reports: TransferReports,
        *,
        keys: StackKeys,
    ) -> None:
        self._carrier = carrier
        self._webhooks = webhooks
        self._dialect = dialect
        self._reports = reports
        self._keys = keys

    def whisper(self, request: Request, deadline: float) -> Response:
        """The person answered a warm transfer: they hear the summary, then the caller is joined."""
        checked = self._checked(request)
        if not isinstance(checked, tuple):
            return checked
        _, call_id = checked
        record = self._reports.find(call_id, self._carrier, deadline=deadline)
        summary = (record.transfer_summary if record else None) or ""
        return self._dialect.say(summary)

    def status(self, request: Request, deadline: float) -> Response:
        """The transfer leg ended (or never connected): record it; a failed transfer ends with the failure
        message (the agent's session is over: there is no one to go back to)."""
        checked = self._checked(request)
        if not isinstance(checked, tuple):
            return checked
        fields, call_id = checked
        record = self._reports.find(call_id, self._carrier, deadline=deadline)
        if record is None:
            return self._dialect.hang_up(speak=False)
        try:
            result = self._dialect.dial_result(fields)
        except Refusal as exc:
            return refused(exc)
        if result is None:
            return self._dialect.acknowledge()
        connected = result[0]
        self._reports.ended(record, connected=connected, deadline=deadline)
        return self._dialect.hang_up(speak=not connected)

    def answer(self, request: Request, deadline: float) -> Response:
        """The carrier fetches the transfer's call document (Plivo's aleg_url): the announcement, then a dial to
        the target whose end is reported to the status URL (warm: the whisper URL first). A transfer the record
        does not show under way (over, or the record unreadable): the caller hears the failure message."""
        checked = self._checked(request)
        if not isinstance(checked, tuple):
            return checked
        _, call_id = checked
        record = self._reports.find(call_id, self._carrier, deadline=deadline)
        if record is None or record.transfer_status != TransferStatus.IN_PROGRESS or not record.transfer_to:
            logger.warning("A transfer's call document asked for no transfer under way", extra={"call_id": call_id})
            return self._dialect.hang_up(speak=True)
        whisper, status = transfer_paths(self._carrier)
        own = (whisper, status, transfer_answer_path(self._carrier))
        query = request_query(request)
        plan = TransferPlan(
            call_id=call_id,
            carrier_call_id=record.carrier_call_id or record.transaction_id or "",
            to=record.transfer_to,
            mode=TransferMode(record.transfer_mode or TransferMode.COLD),
            announce=record.transfer_announce,
            summary=record.transfer_summary,
            status_url=route_url(request.url, own, status, query),
            whisper_url=route_url(request.url, own, whisper, query),
        )
        return cast(TransferDialect, self._dialect).transfer(plan)

    def _checked(self, request: Request) -> tuple[Fields, str] | Response:
        return vouched_request(self._webhooks, self._keys, request, TRANSFER_PURPOSE, self._carrier)


class _RouteUrls:
    """The transfer URLs of ``carrier``, at the base of the URL the carrier called (as route_url builds them)."""

    def __init__(self, carrier: str, url: str, own: tuple[str, ...]) -> None:
        self._carrier, self._url, self._own = carrier, url, own

    def _at(self, route: str, call_id: str, token: str) -> str:
        query = urlencode({CALL: call_id, TOKEN: token})
        return route_url(self._url, self._own, f"/carriers/{self._carrier}/transfer/{route}", query)

    def transfer_status_url(self, carrier: str, call_id: str, token: str) -> str:
        return self._at("status", call_id, token)

    def transfer_whisper_url(self, carrier: str, call_id: str, token: str) -> str:
        return self._at("whisper", call_id, token)

    def transfer_answer_url(self, carrier: str, call_id: str, token: str) -> str:
        return self._at("answer", call_id, token)


class ReferWebhooks:
    """``POST /carriers/{carrier}/refer``: the Millis leg of a call sent SIP REFER and the carrier asks the stack
    (Twilio's <Dial referUrl>, with the Refer-To header's contents in ``ReferTransferTarget``). An allowed target:
    the transfer's TwiML (the caller is put through, its end reported to the transfer status URL). Anything the
    guards refuse: a 4xx naming the rule, which the carrier takes as a failed referUrl request, so the REFER is
    declined and the caller stays with the agent. The request is verified as the carrier signs it, and the call
    named in the URL must be the call the carrier says it is (its CallSid)."""

    def __init__(
        self, carrier: str, path: str, webhooks: CarrierWebhooks, dialect: OutboundDialect, refers: CallTransfers
    ) -> None:
        self._carrier = carrier
        self._path = path
        self._webhooks = webhooks
        self._dialect = dialect
        self._refers = refers

    def refer(self, request: Request, deadline: float) -> Response:
        fields = self._webhooks.verified(request)
        if not isinstance(fields, Fields):
            return fields
        call_id = dict(request.query_pairs).get(CALL, "")
        refer_to = str(fields.get("ReferTransferTarget") or "")
        if not call_id or not refer_to or len(refer_to) > MAX_REFER_TO:
            return reply(400, "Bad request: a REFER's request names the call (call=) and its ReferTransferTarget.")
        legs = {str(fields.get(name) or "") for name in ("CallSid", "ParentCallSid")} - {""}
        try:
            _, plan = self._refers.refer(
                call_id,
                refer_to,
                carrier=self._carrier,
                urls=_RouteUrls(self._carrier, request.url, (self._path,)),
                legs=legs,
            )
        except StoreUnavailable:
            return reply(503, "The call's record cannot be read now.", headers={"Retry-After": "1"})
        except BridgeError as exc:
            status = refer_refusal(exc)
            if status is None:
                raise
            logger.warning("Refused a REFER", extra={"call_id": call_id, "error": exc.code})
            return reply(status, f"REFER refused ({exc.code}): {exc}")
        return cast(TransferDialect, self._dialect).transfer(plan)

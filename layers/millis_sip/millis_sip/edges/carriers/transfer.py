"""Transfers at the carrier's edge (docs/transfers.md): the whisper URL (what the person who answers a warm
transfer hears first), the transfer status URL (the transfer <Dial>'s action: how the transfer leg went) and,
for a carrier that moves a call to a URL (Plivo), the transfer's call document.

As for outbound calls, each request is verified as the carrier signs its webhooks before anything reads it,
and the call it is for is named in the query (``call``) with a token only this stack makes for that call,
carrier and purpose (``transfer``): anything else is refused (403) and changes nothing."""

from __future__ import annotations

from typing import Protocol, cast

from millis_sip.apigw import Request
from millis_sip.core.keys import StackKeys
from millis_sip.core.transfer import TRANSFER_PURPOSE, TransferMode, TransferPlan, TransferReports, TransferStatus
from millis_sip.edges.carriers import Refusal
from millis_sip.edges.carriers.fields import Fields
from millis_sip.edges.carriers.flow import Response, refused, route_url
from millis_sip.edges.carriers.outbound import OutboundDialect, request_query, vouched_request
from millis_sip.edges.carriers.webhooks import CarrierWebhooks
from millis_sip.observability import logger


def transfer_paths(carrier: str) -> tuple[str, str]:
    """The whisper and status routes of ``carrier``'s transfers (the API gives the carrier these URLs)."""
    return f"/carriers/{carrier}/transfer/whisper", f"/carriers/{carrier}/transfer/status"


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

"""SIP servers (Kamailio, Asterisk, FreeSWITCH, an SBC): ``GET /route`` asks the call router where an inbound
call goes and answers the SIP URI (docs/sip-servers.md). The API key authenticates the server (API Gateway
checks it before the function runs).

``GET /route?to=<dialed>&from=<caller>&call=<the server's call id>[&attestation=A][&pin=123456]``

- 200, JSON by default: ``{"sip_uri", "call_id", "millis_region", "headers", "uri_with_headers"}``; with
  ``Accept: text/plain`` (or ``format=text``) one line: the SIP URI with the SIP headers to add as RFC 3261
  URI headers, ``sip:call-x@host?X-Millis-Call-Id=x`` (Kamailio's ``http_client_query`` keeps only the first
  line). The part before ``?`` is the Request-URI.
- 404 ``no_agent`` when no agent takes the call; 503 ``unavailable`` (Retry-After) when a retry may help (the
  retry registers afresh); 502 ``bridge_fault`` when this stack or Millis failed in a way a retry will not cure
  (a rejected Millis key, an answer from Millis this stack cannot use); 429 ``over_hourly_cap`` when the
  number's calls already started as many sessions this hour as its cap allows; 409 ``call_conflict`` when the
  call id was first asked for other numbers, ``call_ended`` when its call is over (a request replayed: the
  server must not relay it); 400 for a malformed request, an unknown query parameter, or a number that starts
  with a space (a ``+`` sent unencoded).
- Idempotent on ``call``: the same call id asked again (for the same numbers) gets the same answer, never a
  second registration.
- ``to`` and ``from`` are read as numbers (``core.phone.canonical_number``): ``+14155550100``,
  ``14155550100``, ``sip:+14155550100@pbx`` are one number; a SIP user that is not a number, or ``anonymous``,
  is no number.

A SIP server cannot ask the caller for a PIN over HTTP: a registration that needs one is claimed only when the
server passes ``pin`` (digits it collected itself); ``attestation`` is the server's own STIR/SHAKEN result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from millis_sip.apigw import Request, reply
from millis_sip.core.calls import TOKEN
from millis_sip.core.errors import (
    BridgeError,
    StoreUnavailable,
)
from millis_sip.core.phone import canonical_number
from millis_sip.core.ports import Metrics
from millis_sip.core.router import (
    ANY_SIP_URI,
    CALL_CONFLICT,
    CALL_ENDED,
    NO_AGENT,
    OVER_HOURLY_CAP,
    CallRouter,
    Challenge,
    InboundCall,
    Refused,
)
from millis_sip.core.sip import bridge_headers, with_uri_headers
from millis_sip.core.transfer import CallTransfers, TransferReports, refer_refusal
from millis_sip.observability import logger

ROUTE_PATH = "/route"
CARRIER = "sip"
_ATTESTATIONS = frozenset({"A", "B", "C"})
MAX_NUMBER = 128
QUERY_NAMES = frozenset({"call", "to", "from", "attestation", "pin", "format"})
_CONFLICTS = {
    CALL_CONFLICT: "this call id was first asked for other numbers: do not relay the call",
    CALL_ENDED: "the call this id was answered for is over: do not relay the call",
}
# What a number may be written with before it is read as one: printable ASCII (a SIP URI, tel:, separators).
_PRINTABLE = frozenset(chr(c) for c in range(0x20, 0x7F))


class SipServerRoute:
    def __init__(self, router: CallRouter, *, metrics: Metrics) -> None:
        self._router = router
        self._metrics = metrics

    def __call__(self, request: Request, deadline: float) -> dict[str, Any]:
        text = request.wants_text()
        problem, call = _call(request.query_pairs)
        if call is None:
            return _answer(400, text, {"error": "invalid_request", "message": problem})
        decision = self._router.route(call, deadline=deadline, placement=ANY_SIP_URI)
        if isinstance(decision, Challenge):  # the router challenges only when can_challenge, never set here
            raise TypeError("a SIP server's call was challenged")
        if isinstance(decision, Refused):
            error, status = _refusal(decision)
            logger.info("No agent for the SIP server's call", extra={"reason": decision.reason, "status": status})
            refusal = {"error": error, "reason": decision.reason}
            if decision.reason in _CONFLICTS:
                refusal["message"] = _CONFLICTS[decision.reason]
            return _answer(status, text, refusal, retry=status == 503)
        record = decision.record
        headers = bridge_headers(record.call_id, CARRIER, call.call_ref)
        uri = str(decision.placement)
        self._metrics.inbound("bridging")
        logger.info(
            "Routing the SIP server's call to Millis",
            extra={"millis_call_id": record.call_id, "millis_region": record.millis_region, "how": decision.how},
        )
        if text:
            return reply(200, with_uri_headers(uri, headers) + "\n")
        body: dict[str, Any] = {
            "sip_uri": uri,
            "call_id": record.call_id,
            "millis_region": record.millis_region,
            "headers": headers,
            "uri_with_headers": with_uri_headers(uri, headers),
        }
        return _answer(200, False, body)


def _refusal(refused: Refused) -> tuple[str, int]:
    if refused.reason == NO_AGENT:
        return "no_agent", 404
    if refused.reason == OVER_HOURLY_CAP:
        return "over_hourly_cap", 429
    if refused.reason in (CALL_CONFLICT, CALL_ENDED):  # not this call's answer to give: never relay it
        return refused.reason, 409
    if refused.transient:
        return "unavailable", 503
    return "bridge_fault", 502


def _call(pairs: Sequence[tuple[str, str]]) -> tuple[str, InboundCall | None]:
    names = [name for name, _ in pairs]
    unknown = sorted({name for name in names if name not in QUERY_NAMES})
    if unknown:
        known = ", ".join(sorted(QUERY_NAMES))
        return f"Unknown query parameter {unknown[0][:64]!r}: {ROUTE_PATH} takes these query parameters: {known}", None
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        return f"{repeated[0]} is given more than once", None
    query = dict(pairs)
    call_id, dialed, caller = query.get("call", ""), query.get("to", ""), query.get("from", "")
    attestation, pin = query.get("attestation", "").upper(), query.get("pin")
    if not TOKEN.match(call_id):
        return "call (the server's call id, e.g. the SIP Call-ID) is required: 1-128 visible characters", None
    for name, value in (("to", dialed), ("from", caller)):
        if value.startswith(" "):
            return (
                f"{name} starts with a space: a '+' in a query string reads as a space; "
                f"URL-encode it as %2B ({name}=%2B14155550100)"
            ), None
        if len(value) > MAX_NUMBER or not _PRINTABLE.issuperset(value):
            return f"{name} must be a number or a SIP user of at most 128 printable ASCII characters", None
    if attestation and attestation not in _ATTESTATIONS:
        return "attestation must be A, B or C (your STIR/SHAKEN verification of the caller's number)", None
    if pin is not None and not (pin.isascii() and pin.isdigit() and len(pin) <= 12):
        return "pin must be the digits the caller keyed in", None
    call = InboundCall(
        CARRIER,
        call_id,
        canonical_number(caller),  # a SIP user that is not a number, or "anonymous": no number
        canonical_number(dialed),
        attestation=attestation or None,
        pin=pin,
        can_challenge=False,
        retries_refusals=True,  # a 503 asks the server to try again
    )
    return "", call


def _answer(status: int, text: bool, body: dict[str, Any], *, retry: bool = False) -> dict[str, Any]:
    headers = {"Retry-After": "1"} if retry else {}
    if text:
        return reply(
            status, f"{body.get('error', '')}: {body.get('reason') or body.get('message', '')}\n", headers=headers
        )
    return reply(status, json.dumps(body, separators=(",", ":")), content_type="application/json", headers=headers)


# --- transfers the agent asks for with SIP REFER (docs/sip-servers.md, "REFER") ----------------------------

REFER_PATH = "/route/refer"
REFER_STATUS_PATH = "/route/refer/status"
MAX_REFER_TO = 1024
_SIP_STATUS = frozenset(str(code) for code in range(100, 700))


class _NoUrls:
    """A SIP server carries the transfer out itself (it relays the REFER): it is given no URL."""

    def transfer_status_url(self, carrier: str, call_id: str, token: str) -> str:
        return ""

    def transfer_whisper_url(self, carrier: str, call_id: str, token: str) -> str:
        return ""

    def transfer_answer_url(self, carrier: str, call_id: str, token: str) -> str:
        return ""


class SipServerRefer:
    """``GET /route/refer?call=<the server's call id>&to=<Refer-To>``: the Millis leg of a call the server routed
    sent SIP REFER. 200: relay it (the one-line body is the target as the stack reads it); 403
    ``transfer_target_not_allowed``, 404 ``call_not_found``, 409 ``call_not_transferable`` or
    ``transfer_in_progress``: answer the REFER yourself with a failure, the call stays with the agent.
    ``GET /route/refer/status?call=...&code=<status>``: the transfer's outcome, the final status of the REFER's
    NOTIFY (its message/sipfrag) or of the REFER itself: 2xx connected, 300-699 failed; 1xx noted, nothing
    changes."""

    def __init__(self, refers: CallTransfers, reports: TransferReports) -> None:
        self._refers = refers
        self._reports = reports

    def refer(self, request: Request, deadline: float) -> dict[str, Any]:
        text = request.wants_text()
        query, problem = _refer_query(request.query_pairs, ("call", "to"))
        if problem:
            return _answer(400, text, {"error": "invalid_request", "message": problem})
        try:
            _, plan = self._refers.refer_on_leg(CARRIER, query["call"], query["to"], urls=_NoUrls())
        except StoreUnavailable:
            return _answer(503, text, {"error": "unavailable", "message": "the call cannot be read now"}, retry=True)
        except BridgeError as exc:
            status = refer_refusal(exc)
            if status is None:
                raise
            logger.info("Refused a SIP server's REFER", extra={"error": exc.code})
            return _answer(status, text, {"error": exc.code, "message": str(exc)})
        if text:
            return reply(200, plan.to + "\n")
        return _answer(200, False, {"call_id": plan.call_id, "to": plan.to})

    def status(self, request: Request, deadline: float) -> dict[str, Any]:
        text = request.wants_text()
        query, problem = _refer_query(request.query_pairs, ("call", "code"))
        if problem or query["code"] not in _SIP_STATUS:
            message = problem or "code must be a SIP status code (100-699)"
            return _answer(400, text, {"error": "invalid_request", "message": message})
        record = self._reports.find_on_leg(CARRIER, query["call"], deadline=deadline)
        if record is None or record.transfer_status != "in_progress":
            return _answer(404, text, {"error": "call_not_found", "message": "no transfer under way for this call"})
        code = int(query["code"])
        if code >= 200:
            self._reports.ended(record, connected=code < 300, deadline=deadline)
        outcome = "noted" if code < 200 else ("connected" if code < 300 else "failed")
        return reply(200, outcome + "\n") if text else _answer(200, False, {"transfer": outcome})


def _refer_query(pairs: Sequence[tuple[str, str]], names: tuple[str, ...]) -> tuple[dict[str, str], str]:
    """The REFER route's query: exactly ``names``, each once; else why not."""
    given = [name for name, _ in pairs]
    if sorted(given) != sorted(names):
        return {}, f"the query is {' and '.join(names)}, each once"
    query = dict(pairs)
    if not TOKEN.match(query["call"]):
        return query, "call (the server's call id, e.g. the SIP Call-ID) is required: 1-128 visible characters"
    for name in names[1:]:
        value = query[name]
        if not value or len(value) > MAX_REFER_TO or not _PRINTABLE.issuperset(value):
            return query, f"{name} must be 1-{MAX_REFER_TO} printable ASCII characters"
    return query, ""

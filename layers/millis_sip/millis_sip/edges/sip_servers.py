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
  number's calls already started as many sessions this hour as its cap allows; 400 for a malformed request.
- Idempotent on ``call``: the same call id asked again gets the same answer, never a second registration.

A SIP server cannot ask the caller for a PIN over HTTP: a registration that needs one is claimed only when the
server passes ``pin`` (digits it collected itself); ``attestation`` is the server's own STIR/SHAKEN result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from millis_sip.apigw import Request, reply
from millis_sip.core.calls import TOKEN
from millis_sip.core.ports import Metrics
from millis_sip.core.router import (
    ANY_SIP_URI,
    NO_AGENT,
    OVER_HOURLY_CAP,
    CallRouter,
    Challenge,
    InboundCall,
    Refused,
)
from millis_sip.core.sip import bridge_headers, with_uri_headers
from millis_sip.observability import logger

ROUTE_PATH = "/route"
CARRIER = "sip"
_ATTESTATIONS = frozenset({"A", "B", "C"})
MAX_NUMBER = 128


class SipServerRoute:
    def __init__(self, router: CallRouter, *, metrics: Metrics) -> None:
        self._router = router
        self._metrics = metrics

    def __call__(self, request: Request, deadline: float) -> dict[str, Any]:
        text = request.wants_text()
        problem, call = _call(request.query)
        if call is None:
            return _answer(400, text, {"error": "invalid_request", "message": problem})
        decision = self._router.route(call, deadline=deadline, placement=ANY_SIP_URI)
        if isinstance(decision, Challenge):  # the router challenges only when can_challenge, never set here
            raise TypeError("a SIP server's call was challenged")
        if isinstance(decision, Refused):
            error, status = _refusal(decision)
            logger.info("No agent for the SIP server's call", extra={"reason": decision.reason, "status": status})
            return _answer(status, text, {"error": error, "reason": decision.reason}, retry=status == 503)
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
    if refused.transient:
        return "unavailable", 503
    return "bridge_fault", 502


def _call(query: Mapping[str, str]) -> tuple[str, InboundCall | None]:
    call_id, dialed, caller = query.get("call", ""), query.get("to", ""), query.get("from", "")
    attestation, pin = query.get("attestation", "").upper(), query.get("pin")
    if not TOKEN.match(call_id):
        return "call (the server's call id, e.g. the SIP Call-ID) is required: 1-128 visible characters", None
    for name, value in (("to", dialed), ("from", caller)):
        if (value and not TOKEN.match(value[: MAX_NUMBER + 1])) or len(value) > MAX_NUMBER:
            return f"{name} must be a number or a SIP user of 1-128 visible characters", None
    if attestation and attestation not in _ATTESTATIONS:
        return "attestation must be A, B or C (your STIR/SHAKEN verification of the caller's number)", None
    if pin is not None and not (pin.isascii() and pin.isdigit() and len(pin) <= 12):
        return "pin must be the digits the caller keyed in", None
    call = InboundCall(
        CARRIER,
        call_id,
        caller or None,
        dialed or None,
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

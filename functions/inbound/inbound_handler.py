"""InboundFunction: the call path of the carriers and SIP servers (the webhooks of every carrier in
``edges/carriers/registry.py``, and GET /route). ``build()`` adds each carrier's webhooks, as its descriptor
says, and the SIP servers' route to the call path ``millis_sip.wiring`` builds, once per execution environment.
Lean on purpose: a phone call waits on its cold start, so no web framework and no pydantic."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from millis_sip import snapstart
from millis_sip.adapters.dynamodb.store import DynamoCallStore
from millis_sip.adapters.millis_http import HttpMillisGateway
from millis_sip.adapters.secrets import carrier_credential_source
from millis_sip.apigw import BadRequest, Request, reply
from millis_sip.config import InboundSettings, Settings
from millis_sip.core.ports import Secret
from millis_sip.edges.carriers.flow import CarrierFlow
from millis_sip.edges.carriers.outbound import OutboundWebhooks
from millis_sip.edges.carriers.registry import CARRIERS
from millis_sip.edges.carriers.transfer import ReferWebhooks, TransferWebhooks, transfer_answer_path, transfer_paths
from millis_sip.edges.sip_servers import CARRIER as SIP_SERVER
from millis_sip.edges.sip_servers import REFER_PATH, REFER_STATUS_PATH, ROUTE_PATH, SipServerRefer, SipServerRoute
from millis_sip.observability import batched_metrics, correlate, emf_metrics, logger, tracer
from millis_sip.patience import PATIENCE, Patience
from millis_sip.wiring import call_path

ANSWER_MARGIN_SECONDS = 0.5  # between the answer being ready and the function's own timeout
Handler = Callable[[Request, float], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Route:
    handle: Handler
    fallback: Callable[[Request], dict[str, Any]]  # what the caller gets if the handler fails unexpectedly
    patience: Patience  # how long the phone system behind the route waits for the answer (millis_sip.patience)
    # Another phone system reaching the same route, known by a header of its own: (header, its patience).
    also: tuple[str, Patience] | None = None

    def patience_for(self, request: Request) -> Patience:
        if self.also is not None and request.headers.get(self.also[0].lower()) is not None:
            return self.also[1]
        return self.patience


@dataclass(frozen=True, slots=True)
class Inbound:
    routes: dict[tuple[str, str], Route]
    settings: InboundSettings
    dynamodb: Any
    gateway: HttpMillisGateway
    store: DynamoCallStore


def build() -> tuple[Inbound, snapstart.Hooks]:
    settings, inbound = Settings.from_env(), InboundSettings.from_env()
    path = call_path(settings, transfer_targets=inbound.transfer_allowed_targets)
    routes: dict[tuple[str, str], Route] = {}
    credentials: dict[tuple[str, str], Secret | None] = {}  # one source per secret (SignalWire shares Twilio's)
    for carrier in CARRIERS:  # each carrier's webhooks, as its descriptor says
        which = (carrier.credential_setting, carrier.credential_variable)
        if which not in credentials:
            credentials[which] = carrier_credential_source(
                getattr(inbound, carrier.credential_setting), carrier.credential_variable, settings.secret_max_age
            )
        credential = credentials[which]
        flow = CarrierFlow(carrier.name, path.router, path.calls, keys=path.keys, metrics=emf_metrics)
        webhooks = carrier.webhooks(flow, credential, inbound, path.clock)
        also = (carrier.also[0], PATIENCE[carrier.also[1]]) if carrier.also else None
        patience = PATIENCE[carrier.patience]
        for route in carrier.routes:
            handle = getattr(webhooks, route.handler)
            routes[(route.method, route.path)] = Route(handle, webhooks.fallback, patience, also)
        if carrier.outbound is not None:  # the answer and status URLs of the calls the stack places
            dialect = carrier.outbound(inbound)
            placed = OutboundWebhooks(carrier.name, webhooks, dialect, path.outbound, keys=path.keys)
            routes[("POST", dialect.answer_path)] = Route(placed.answer, placed.fallback, patience, also)
            routes[("POST", dialect.status_path)] = Route(placed.status, placed.fallback, patience, also)
            if carrier.transfers:  # the whisper and status URLs of the transfers the stack asks it for
                moved = TransferWebhooks(carrier.name, webhooks, dialect, path.transfers, keys=path.keys)
                whisper, status = transfer_paths(carrier.name)
                for method in carrier.whisper_methods:
                    routes[(method, whisper)] = Route(moved.whisper, placed.fallback, patience, also)
                routes[("POST", status)] = Route(moved.status, placed.fallback, patience, also)
                if carrier.refer_path:  # the Millis leg asks for a transfer with SIP REFER (Twilio's referUrl)
                    refers = ReferWebhooks(carrier.name, carrier.refer_path, webhooks, dialect, path.refers)
                    routes[("POST", carrier.refer_path)] = Route(refers.refer, placed.fallback, patience, also)
                if carrier.transfer_answer:  # the carrier fetches the transfer's call document (Plivo)
                    routes[("POST", transfer_answer_path(carrier.name))] = Route(
                        moved.answer, placed.fallback, patience, also
                    )
    unavailable = lambda _: reply(503, "The bridge failed unexpectedly; retry.", headers={"Retry-After": "1"})  # noqa: E731
    routes[("GET", ROUTE_PATH)] = Route(
        SipServerRoute(path.router, metrics=emf_metrics), unavailable, PATIENCE[SIP_SERVER]
    )
    refer = SipServerRefer(path.refers, path.transfers)  # the Millis leg's REFER, asked about by the SIP server
    routes[("GET", REFER_PATH)] = Route(refer.refer, unavailable, PATIENCE[SIP_SERVER])
    routes[("GET", REFER_STATUS_PATH)] = Route(refer.status, unavailable, PATIENCE[SIP_SERVER])
    built = Inbound(routes, inbound, path.dynamodb, path.gateway, path.store)
    return built, path.hooks(*credentials.values())


inbound, _hooks = build()
snapstart.register(before_snapshot=_hooks.before_snapshot, after_restore=_hooks.after_restore)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@batched_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    correlate(event, "requestContext", "requestId")
    started = time.monotonic()
    try:
        request = Request.parse(event, public_base_url=inbound.settings.public_base_url)
    except BadRequest as exc:
        return reply(400, f"Bad request: {exc}.")
    route = inbound.routes.get((request.method, request.resource))
    if route is None:
        return reply(404, f"No route for {request.method} {request.path}.")
    # The answer is ready by the first of: INBOUND_ANSWER_SECONDS, the phone system's patience less the margin
    # for API Gateway and a cold start (millis_sip.patience: each figure and its source), the function's time.
    remaining = context.get_remaining_time_in_millis() / 1000 - ANSWER_MARGIN_SECONDS
    deadline = started + min(inbound.settings.answer_seconds, route.patience_for(request).answer_within, remaining)
    try:
        return route.handle(request, deadline)
    except Exception:  # noqa: BLE001 - a live phone call must get an answer it can act on
        logger.exception("Unexpected failure answering a phone call")
        emf_metrics.inbound_failure("internal_error")
        return route.fallback(request)

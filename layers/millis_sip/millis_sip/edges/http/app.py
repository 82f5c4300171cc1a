"""The management API's routes: each parses its input into a model, calls one core service, and answers JSON.

``create_app`` builds the resolver from the services it is given (the entry module builds them once per
execution environment; tests pass fakes).
"""

# No `from __future__ import annotations`: Powertools reads the routes' annotations at registration.

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import unquote, urlencode

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query

from millis_sip.core.calls import CallStatus, Direction
from millis_sip.core.errors import CallNotCancelable, InvalidRequest, OutboundDisabled, TransferTargetNotAllowed
from millis_sip.core.lifecycle import SessionReports
from millis_sip.core.lookup import LIST_DEFAULT_LIMIT, CallDirectory, ListCalls
from millis_sip.core.numbers import MAX_PAGE_SIZE, NumberDirectory
from millis_sip.core.outbound import OutboundCalls
from millis_sip.core.registration import Registrar
from millis_sip.core.transfer import CallTransfers
from millis_sip.edges.http import openapi
from millis_sip.edges.http.idempotency import IDEMPOTENCY_HEADER, Answer, Body, Idempotency
from millis_sip.edges.http.models import (
    CARRIER_PATTERN,
    MAX_WEBHOOK_BODY_BYTES,
    TIME_PATTERN,
    AgentId,
    CallId,
    CallPage,
    CallView,
    IdempotencyKey,
    ListedStatus,
    LookupKey,
    NumberInPath,
    NumberPage,
    NumberRouteRequest,
    NumberRouteView,
    OutboundCallRequest,
    OutboundCallView,
    PhoneNumber,
    RegisterCallRequest,
    RegisteredView,
    SessionDataWebhook,
    TransferCallRequest,
    WebhookAck,
)
from millis_sip.edges.http.resolver import BridgeResolver
from millis_sip.edges.http.webhook_auth import WEBHOOK_PATH, require_credential, webhook_credential
from millis_sip.observability import logger

DEADLINE_MARGIN_SECONDS = 1.0  # leave time to store the call and answer before the function times out
_NOT_PERSISTED = frozenset({"lookup_key", "pin"})  # kept out of the idempotency table

_READ_ERRORS = {**openapi.errors({400: "Invalid request", 404: "Not found", 503: "DynamoDB unavailable"})}
_CREATE_ERRORS = openapi.errors(
    {
        400: "Invalid request (details name each field)",
        404: "Millis does not know the agent",
        409: "A request with this Idempotency-Key is in progress",
        413: "Body over 64 KiB",
        415: "Not JSON",
        422: "Millis refused the body, or the Idempotency-Key was used with another body",
        502: "Millis rejected the key or answered something unusable",
        503: "Millis, the key or DynamoDB unavailable; retry after Retry-After",
    }
)
_OUTBOUND_ERRORS = openapi.errors(
    {
        400: "Invalid request (details name each field)",
        403: "Outbound calls are off, or the destination or the from number is not allowed",
        404: "Millis does not know the agent",
        409: "A request with this Idempotency-Key is in progress",
        422: "The carrier is not configured or refused the call, or Millis refused the body",
        429: "An hourly cap or the cap on calls ringing at once is reached; retry after Retry-After",
        502: "The carrier rejected the stack's credentials, or Millis rejected the key",
        503: "The carrier, its credential, Millis or DynamoDB unavailable; retry after Retry-After",
    }
)
_CANCEL_ERRORS = openapi.errors(
    {
        400: "Invalid call_id",
        404: "No such call",
        409: "Not a registration waiting to be claimed, nor an outbound call that is queued or ringing (error "
        "call_not_cancelable, naming the call's status)",
        502: "The carrier rejected the stack's credentials",
        503: "The carrier, its credential or DynamoDB unavailable",
    }
)
_TRANSFER_ERRORS = openapi.errors(
    {
        400: "Invalid call_id or body (details name each field)",
        403: "Transfers are off, or the target is not allowed",
        404: "No such call",
        409: "The call is not connected to its agent, or a transfer is under way",
        422: "The call's carrier cannot be driven to transfer it, or refused the transfer",
        502: "The carrier rejected the stack's credentials",
        503: "The carrier, its credential or DynamoDB unavailable; retry after Retry-After",
    }
)
_NUMBER_ERRORS = openapi.errors(
    {400: "Invalid number or route", 404: "No route for the number", 503: "DynamoDB unavailable"}
)
_WEBHOOK_ERRORS = openapi.errors(
    {
        400: "Invalid payload",
        401: "No or wrong X-Webhook-Secret",
        413: "Body over 1 MiB",
        415: "Not JSON",
        503: "The webhook secret or DynamoDB unavailable",
    }
)


@dataclass(frozen=True, slots=True)
class ManagementServices:
    """What the management API calls: one core service per use case."""

    registrar: Registrar
    directory: CallDirectory
    sessions: SessionReports
    numbers: NumberDirectory
    http_deadline: float  # seconds a registration may take, failover included
    outbound: OutboundCalls | None = None  # placing calls through the carriers (None: this API places none)
    transfers: CallTransfers | None = None  # moving live calls to a person (None: this API moves none)
    public_base_url: str | None = None  # where carriers reach this API (None: as each request came in)


class RequestUrls:
    """The answer and status URLs a carrier is given for an outbound call: this API's carrier routes, at the
    public base URL, or at the URL the request placing the call came in on."""

    def __init__(self, base: str) -> None:
        self._base = base.rstrip("/")

    def _url(self, carrier: str, path: str, call_id: str, token: str) -> str:
        return f"{self._base}/carriers/{carrier}/{path}?{urlencode({'call': call_id, 'token': token})}"

    def answer_url(self, carrier: str, call_id: str, token: str) -> str:
        return self._url(carrier, "outbound", call_id, token)

    def status_url(self, carrier: str, call_id: str, token: str) -> str:
        return self._url(carrier, "outbound/status", call_id, token)

    def transfer_status_url(self, carrier: str, call_id: str, token: str) -> str:
        return self._url(carrier, "transfer/status", call_id, token)

    def transfer_whisper_url(self, carrier: str, call_id: str, token: str) -> str:
        return self._url(carrier, "transfer/whisper", call_id, token)

    def transfer_answer_url(self, carrier: str, call_id: str, token: str) -> str:
        """What a carrier that moves a call to a URL (Plivo's transfer) fetches: the transfer's call document."""
        return self._url(carrier, "transfer/answer", call_id, token)


def create_app(
    services: ManagementServices, *, idempotency: Idempotency | None, refused_api_key_ids: Collection[str] = ()
) -> BridgeResolver:
    """``refused_api_key_ids``: API keys whose every request is answered 403 ``forbidden`` before anything else
    runs (the SIP servers' key, which API Gateway lets through to every keyed route)."""
    app = BridgeResolver(
        refused_api_key_ids=refused_api_key_ids,
        guards={WEBHOOK_PATH: require_credential},
        body_limits={WEBHOOK_PATH: MAX_WEBHOOK_BODY_BYTES},
        # Every keyed route's query parameters (the webhook's sender is Millis: not held to a list).
        query_names={
            "/calls": frozenset({"lookup_key", *LIST_PARAMETERS}),
            "/calls/{call_id}": frozenset(),
            "/calls/outbound": frozenset(),
            "/calls/{call_id}/transfer": frozenset(),
            "/numbers": frozenset({"limit", "next"}),
            "/numbers/{number}": frozenset(),
        },
    )

    def own_webhook_url() -> str | None:
        """This API's own webhook route, as the caller reached it: the domain and whatever precedes the route in
        the request's path (the stage on the execute-api domain, the base path on a custom domain). Used only
        when WEBHOOK_URL (PublicBaseUrl) is not set."""
        event = app.current_event
        context = event.request_context
        full_path, resource = context.path or "", event.resource or ""
        if not context.domain_name or "{" in resource or not full_path.endswith(resource):
            return None
        host = (event.headers or {}).get("host") or (event.headers or {}).get("Host")
        if host and host.lower() != context.domain_name.lower():
            logger.warning(
                "The request came through a proxy: Millis' session webhooks go to API Gateway's own domain; "
                "set the stack's PublicBaseUrl if that is not reachable",
                extra={"host": host[:100], "domain_name": context.domain_name},
            )
        return f"https://{context.domain_name}{full_path.removesuffix(resource)}{WEBHOOK_PATH}"

    def register(request: RegisterCallRequest) -> Answer:
        remaining = app.lambda_context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS
        registered = services.registrar.register(
            request.to_command(),
            budget=min(services.http_deadline, remaining),
            webhook_url=own_webhook_url(),  # used when WEBHOOK_URL is not set
        )
        logger.append_keys(call_id=registered.record.call_id)
        return RegisteredView.of_registration(registered)

    def register_body(body: Body) -> Answer:
        # What the idempotency table keeps: the answer without the phone number and the PIN, which
        # ``completed`` puts back from the request (the same body: the key is checked against it).
        answer = register(RegisterCallRequest.model_validate(body))
        return {name: value for name, value in answer.items() if name not in _NOT_PERSISTED}

    def completed(answer: Answer, request: RegisterCallRequest) -> Answer:
        full = {**answer, "lookup_key": request.lookup_key}
        if request.caller_verification == "pin":
            full["pin"] = services.registrar.pin_for(str(answer["call_id"]))
        return full

    register_once = idempotency.wrap(register_body) if idempotency is not None else None

    def own_base_url() -> str:
        """Where carriers reach this API: PUBLIC_BASE_URL, or the domain and stage the request came in on."""
        if services.public_base_url:
            return services.public_base_url
        event = app.current_event
        context = event.request_context
        full_path, resource = context.path or "", event.resource or ""
        return f"https://{context.domain_name}{full_path.removesuffix(resource)}"

    def place(request: OutboundCallRequest) -> Answer:
        if services.outbound is None:
            raise OutboundDisabled("This API places no calls: OutboundAllowedPrefixes is not set.")
        remaining = app.lambda_context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS
        record = services.outbound.place(
            request.to_command(),
            budget=min(services.http_deadline, remaining),
            webhook_url=own_webhook_url(),
            urls=RequestUrls(own_base_url()),
        )
        logger.append_keys(call_id=record.call_id)
        return CallView.of(record).model_dump(mode="json", by_alias=True)

    place_once = (
        idempotency.wrap(lambda body: place(OutboundCallRequest.model_validate(body)))
        if idempotency is not None
        else None
    )

    @app.post(
        "/calls/outbound",
        summary="Place a call from one of your numbers through its carrier, for a Millis agent",
        responses={
            202: {"description": "Placed", "content": {"application/json": {"model": OutboundCallView}}},
            **_OUTBOUND_ERRORS,
            **openapi.GATEWAY_ANSWERS,
        },
    )
    def create_outbound_call(
        body: OutboundCallRequest,
        idempotency_key: Annotated[
            IdempotencyKey | None,
            Header(
                alias=IDEMPOTENCY_HEADER.lower(),
                description="Retries with the same key and body get the first answer, without a second call.",
            ),
        ] = None,
    ) -> Response[str]:
        if idempotency_key is None or place_once is None:
            return _json(202, place(body))
        return _json(202, place_once(idempotency_key, body.model_dump(mode="json", by_alias=True, exclude_unset=True)))

    @app.delete(
        "/calls/<call_id>",
        summary="Cancel a registration no phone call has claimed yet, or an outbound call that has not been answered "
        "yet (the carrier hangs it up)",
        responses={
            200: {
                "description": "Canceled",
                "content": {"application/json": {"model": OutboundCallView | CallView}},
            },
            **_CANCEL_ERRORS,
            **openapi.GATEWAY_ANSWERS,
        },
    )
    def cancel_call(call_id: Annotated[CallId, Path(description="The Millis call_id.")]) -> Response[str]:
        logger.append_keys(call_id=call_id)
        if services.directory.get(call_id).direction is not Direction.OUTBOUND:
            canceled = services.directory.cancel(call_id)  # a registration waiting for its phone call
            return _json(200, CallView.of(canceled).model_dump(mode="json", by_alias=True))
        if services.outbound is None:
            raise CallNotCancelable(f"Call {call_id} is an outbound call, and this API places none.")
        remaining = app.lambda_context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS
        record = services.outbound.cancel(call_id, budget=min(services.http_deadline, remaining))
        return _json(200, CallView.of(record).model_dump(mode="json", by_alias=True))

    @app.post(
        "/calls/<call_id>/transfer",
        summary="Transfer a call from its agent to a person (a number or a SIP URI), cold or warm",
        responses={
            202: {"description": "The transfer is under way", "content": {"application/json": {"model": CallView}}},
            **_TRANSFER_ERRORS,
            **openapi.GATEWAY_ANSWERS,
        },
    )
    def transfer_call(
        call_id: Annotated[CallId, Path(description="The Millis call_id.")], body: TransferCallRequest
    ) -> Response[str]:
        logger.append_keys(call_id=call_id)
        if services.transfers is None:
            raise TransferTargetNotAllowed("This API transfers no calls: TransferAllowedTargets is not set.")
        remaining = app.lambda_context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS
        record = services.transfers.transfer(
            call_id,
            body.to_command(),
            budget=min(services.http_deadline, remaining),
            urls=RequestUrls(own_base_url()),
        )
        return _json(202, CallView.of(record).model_dump(mode="json", by_alias=True))

    @app.post(
        "/calls",
        summary="Register a call with Millis",
        responses={
            201: {"description": "Registered", "content": {"application/json": {"model": RegisteredView}}},
            **_CREATE_ERRORS,
            **openapi.GATEWAY_ANSWERS,
        },
    )
    def create_call(
        body: RegisterCallRequest,
        idempotency_key: Annotated[
            IdempotencyKey | None,
            Header(
                alias=IDEMPOTENCY_HEADER.lower(),
                description="Retries with the same key and body get the first answer, without a second registration.",
            ),
        ] = None,
    ) -> Response[str]:
        if idempotency_key is None or register_once is None:
            return _json(201, register(body))
        answer = register_once(idempotency_key, body.model_dump(mode="json", exclude_unset=True))
        return _json(201, completed(answer, body))

    @app.get(
        "/calls",
        summary="With lookup_key, the carrier lookup: the newest unused, unexpired registration for that key (a "
        "call). Without it, a page of calls, newest first, filtered (a CallPage)",
        responses={
            200: {
                "description": "With lookup_key: the registration found. Without: a page of calls",
                "content": {"application/json": {"model": CallView | CallPage}},
            },
            **_READ_ERRORS,
            **openapi.GATEWAY_ANSWERS,
        },
    )
    def lookup_call(
        lookup_key: Annotated[
            LookupKey | None,
            Query(
                description="The key the call was registered with: answers that one registration (a call), not a "
                "page; no other parameter may be given with it."
            ),
        ] = None,
        status: Annotated[ListedStatus | None, Query(description="Only calls in this status.")] = None,
        direction: Annotated[
            Direction | None, Query(description="inbound (a person called in) or outbound (placed by the stack).")
        ] = None,
        carrier: Annotated[
            str | None,
            Query(
                pattern=CARRIER_PATTERN,
                description="Only calls that carrier carried (twilio, telnyx, vonage, plivo, signalwire, chime, sip).",
            ),
        ] = None,
        agent_id: Annotated[AgentId | None, Query(description="Only calls for this Millis agent.")] = None,
        number: Annotated[
            PhoneNumber | None,
            Query(description="Only calls from or to this E.164 number, or registered with it as their lookup_key."),
        ] = None,
        since: Annotated[
            str | None,
            Query(
                pattern=TIME_PATTERN,
                description="Calls created at or after this time (ISO 8601; no offset: UTC). Default: 24 hours "
                "before until. since to until may span 7 days at most.",
            ),
        ] = None,
        until: Annotated[
            str | None,
            Query(pattern=TIME_PATTERN, description="Calls created before this time (ISO 8601). Default: now."),
        ] = None,
        limit: Annotated[
            int | None, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Calls per page (default {LIST_DEFAULT_LIMIT}).")
        ] = None,
        next: Annotated[  # noqa: A002 - the query parameter's name
            str | None,
            Query(
                max_length=1024,
                description="The next value of the previous page (it carries since and until; pass the same filters).",
            ),
        ] = None,
    ) -> Response[str]:
        given = (app.current_event.query_string_parameters or {}).keys() & LIST_PARAMETERS
        if lookup_key is not None:
            if given:
                raise InvalidRequest(
                    f"lookup_key finds one registration: it cannot be combined with {', '.join(sorted(given))}."
                )
            return _json(200, CallView.of(services.directory.lookup(lookup_key)).model_dump(mode="json"))
        request = ListCalls(
            limit=limit or LIST_DEFAULT_LIMIT,
            since=_moment("since", since),
            until=_moment("until", until),
            status=CallStatus(status) if status is not None else None,
            direction=direction,
            carrier=carrier,
            agent_id=agent_id,
            number=number,
            after=next,
        )
        page = services.directory.list(request, max_limit=MAX_PAGE_SIZE)
        calls = [CallView.of(record).model_dump(mode="json", by_alias=True) for record in page.calls]
        return _json(200, {"calls": calls, "next": page.next})

    @app.get(
        "/calls/<call_id>",
        summary="A call by its Millis call_id",
        responses={
            200: {"description": "The call", "content": {"application/json": {"model": CallView}}},
            **_READ_ERRORS,
            **openapi.GATEWAY_ANSWERS,
        },
    )
    def get_call(call_id: Annotated[CallId, Path(description="The Millis call_id.")]) -> Response[str]:
        logger.append_keys(call_id=call_id)
        return _json(200, CallView.of(services.directory.get(call_id)).model_dump(mode="json", by_alias=True))

    @app.post(
        WEBHOOK_PATH,
        summary="Millis session_data_webhook: the call is over (authenticated by X-Webhook-Secret, not the API key)",
        responses={
            200: {"description": "Received", "content": {"application/json": {"model": WebhookAck}}},
            **_WEBHOOK_ERRORS,
        },
    )
    def millis_webhook(body: SessionDataWebhook) -> Response[str]:
        logger.append_keys(call_id=body.call_id)
        outcome = services.sessions.close(body.to_report(), webhook_credential(app.current_event.raw_event))
        return _json(200, WebhookAck(call_id=body.call_id, outcome=outcome).model_dump(mode="json"))

    number_path = Path(description="The phone number, E.164 (+ as is, or %2B).")

    @app.put(
        "/numbers/<number>",
        summary="Route a phone number's calls to an agent (created or replaced)",
        responses={
            200: {"description": "Replaced", "content": {"application/json": {"model": NumberRouteView}}},
            201: {"description": "Created", "content": {"application/json": {"model": NumberRouteView}}},
            **_NUMBER_ERRORS,
            **openapi.GATEWAY_ANSWERS,
        },
    )
    def put_number(number: Annotated[NumberInPath, number_path], body: NumberRouteRequest) -> Response[str]:
        route, created = services.numbers.put(body.to_route(path_number(number)))
        return _json(201 if created else 200, NumberRouteView.of(route).model_dump(mode="json"))

    def path_number(captured: str) -> str:
        """The {number} path parameter as API Gateway gave it, percent-decoded. Powertools' route pattern ends in
        "$", which also matches before a final newline, so its capture can lose one: the number checked must be
        what the client sent (a route stored for "+1...\n" would be one no call can match)."""
        given = (app.current_event.path_parameters or {}).get("number")
        return unquote(given if given is not None else captured)

    @app.get(
        "/numbers/<number>",
        summary="A phone number's route",
        responses={
            200: {"description": "The route", "content": {"application/json": {"model": NumberRouteView}}},
            **_NUMBER_ERRORS,
            **openapi.GATEWAY_ANSWERS,
        },
    )
    def get_number(number: Annotated[NumberInPath, number_path]) -> Response[str]:
        return _json(200, NumberRouteView.of(services.numbers.get(path_number(number))).model_dump(mode="json"))

    @app.delete(
        "/numbers/<number>",
        summary="Stop routing a phone number (its calls then go to the default agent, if any)",
        responses={204: {"description": "Deleted"}, **_NUMBER_ERRORS, **openapi.GATEWAY_ANSWERS},
    )
    def delete_number(number: Annotated[NumberInPath, number_path]) -> Response[str]:
        services.numbers.delete(path_number(number))
        return Response(status_code=204, body="")  # no content, so no Content-Type

    @app.get(
        "/numbers",
        summary="Every number route, a page at a time (in no particular order)",
        responses={
            200: {"description": "A page", "content": {"application/json": {"model": NumberPage}}},
            **_READ_ERRORS,
            **openapi.GATEWAY_ANSWERS,
        },
    )
    def list_numbers(
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Routes per page.")] = 50,
        next: Annotated[  # noqa: A002 - the query parameter's name
            str | None, Query(max_length=512, description="The next value of the previous page.")
        ] = None,
    ) -> Response[str]:
        routes, following = services.numbers.page(limit=limit, after=next)
        page = NumberPage(numbers=[NumberRouteView.of(r) for r in routes], next=following)
        return _json(200, page.model_dump(mode="json"))

    published: list[str] = []  # the document, rendered on first request

    @app.get("/openapi.json", summary="This API's OpenAPI document", include_in_schema=False)
    def openapi_document() -> Response[str]:
        if not published:
            published.append(json.dumps(openapi.document(app)))
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=published[0])

    return app


LIST_PARAMETERS = frozenset({"status", "direction", "carrier", "agent_id", "number", "since", "until", "limit", "next"})
_FIRST_YEAR, _LAST_YEAR = 2000, 9000  # calls live a day: any time outside these is a mistake, and near year 1 or
# 9999 a window's arithmetic overflows


def _moment(name: str, text: str | None) -> datetime | None:
    """A time of GET /calls' range, in UTC: ISO 8601 (TIME_PATTERN); without an offset, UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.upper())
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidRequest(f"{name} must be an ISO 8601 time such as 2026-12-04T09:30:00Z.") from None
    if not _FIRST_YEAR <= moment.year <= _LAST_YEAR:
        raise InvalidRequest(f"{name} must be a time between the years {_FIRST_YEAR} and {_LAST_YEAR}.")
    return moment


def _json(status: int, body: dict[str, Any]) -> Response[str]:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body, separators=(",", ":"))
    )

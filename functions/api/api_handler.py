"""ApiFunction: the HTTP API. Composition root: clients and configuration are built once here, per
execution environment; routes parse input into models and call one domain method each."""

from typing import Annotated, Any

import boto3
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from millis_sip.config import Settings
from millis_sip.http_api import BridgeResolver
from millis_sip.millis import HttpMillisGateway
from millis_sip.models import CallId, CallView, ErrorBody, LookupKey, RegisterCallRequest
from millis_sip.observability import logger, metrics, tracer
from millis_sip.registration import CallService
from millis_sip.store import DYNAMODB_CONFIG, DynamoCallStore

DEADLINE_MARGIN_SECONDS = 1.0  # leave time to store the call and answer before the function times out

settings = Settings.from_env()
if settings.millis_region.warning:
    logger.warning(settings.millis_region.warning)
service = CallService(
    HttpMillisGateway.from_settings(settings),
    DynamoCallStore(boto3.client("dynamodb", config=DYNAMODB_CONFIG), settings.calls_table_name),
    ttl_seconds=settings.call_ttl_seconds,
    default_agent_id=settings.default_agent_id,
)
app = BridgeResolver()

_ERRORS: dict[int, Any] = {
    status: {"description": text, "content": {"application/json": {"model": ErrorBody}}}
    for status, text in {400: "Invalid request", 404: "Not found", 503: "Millis or DynamoDB unavailable"}.items()
}


def _json(status: int, view: CallView) -> Response[str]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=view.model_dump_json())


@app.post("/calls", summary="Register a call with Millis", responses={201: {"description": "Registered"}, **_ERRORS})
@tracer.capture_method(capture_response=False)
def create_call(body: RegisterCallRequest) -> Response[str]:
    remaining = app.lambda_context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS
    record = service.register(body, budget=min(settings.http_deadline, remaining))
    return _json(201, CallView.of(record))


@app.get("/calls", summary="Carrier lookup: the newest unexpired call for a lookup key", responses=_ERRORS)
@tracer.capture_method(capture_response=False)
def lookup_call(
    lookup_key: Annotated[LookupKey, Query(description="The key the call was registered with.")],
) -> Response[str]:
    return _json(200, CallView.of(service.lookup(lookup_key)))


@app.get("/calls/<call_id>", summary="A call by its Millis call_id", responses=_ERRORS)
@tracer.capture_method(capture_response=False)
def get_call(call_id: Annotated[CallId, Path(description="The Millis call_id.")]) -> Response[str]:
    logger.append_keys(call_id=call_id)
    return _json(200, CallView.of(service.get(call_id)))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

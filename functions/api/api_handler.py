"""ApiFunction: the HTTP API. Composition root: clients and configuration are built once here, per
execution environment; routes parse input into models and call one domain method each."""

import hmac
import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import boto3
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from millis_sip import snapstart
from millis_sip.config import Settings
from millis_sip.errors import (
    IdempotencyInProgress,
    IdempotencyKeyReused,
    StoreUnavailable,
    WebhookUnauthorized,
)
from millis_sip.http_api import BridgeResolver
from millis_sip.millis import HttpMillisGateway
from millis_sip.models import (
    MAX_WEBHOOK_BODY_BYTES,
    CallId,
    CallView,
    ErrorBody,
    GatewayMessage,
    IdempotencyKey,
    LookupKey,
    RegisterCallRequest,
    SessionDataWebhook,
    WebhookAck,
)
from millis_sip.observability import logger, metrics, tracer
from millis_sip.registration import CallService
from millis_sip.secrets import webhook_secret_source
from millis_sip.store import DYNAMODB_CONFIG, DynamoCallStore
from millis_sip.webhook import WEBHOOK_HEADER, WEBHOOK_PATH, SessionWebhook

DEADLINE_MARGIN_SECONDS = 1.0  # leave time to store the call and answer before the function times out
IDEMPOTENCY_HEADER = "Idempotency-Key"

settings = Settings.from_env()
if settings.millis_region.warning:
    logger.warning(settings.millis_region.warning)
dynamodb = boto3.client("dynamodb", config=DYNAMODB_CONFIG)
webhook_secret = webhook_secret_source(settings.webhook_secret_arn, settings.secret_max_age)
gateway = HttpMillisGateway.from_settings(settings)
service = CallService(
    gateway,
    DynamoCallStore(dynamodb, settings.calls_table_name),
    ttl_seconds=settings.call_ttl_seconds,
    default_agent_id=settings.default_agent_id,
    webhook=SessionWebhook(webhook_secret, settings.webhook_url)
    if webhook_secret and settings.session_webhook
    else None,
)


def _forget_secrets() -> None:
    if webhook_secret is not None:
        webhook_secret.forget()


def _after_restore() -> None:
    gateway.after_restore()
    _forget_secrets()


snapstart.register(before_snapshot=_forget_secrets, after_restore=_after_restore)


def verify_webhook(event: Mapping[str, Any]) -> None:
    """The shared secret Millis sends back, compared in constant time, before the body is even parsed."""
    if webhook_secret is None:
        raise WebhookUnauthorized("The webhook is not configured on this stack.")
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    presented = headers.get(WEBHOOK_HEADER.lower())
    expected = webhook_secret()  # WebhookSecretUnavailable -> 503, retried by the sender
    if not isinstance(presented, str) or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise WebhookUnauthorized(f"Missing or wrong {WEBHOOK_HEADER} header.")


app = BridgeResolver(guards={WEBHOOK_PATH: verify_webhook}, body_limits={WEBHOOK_PATH: MAX_WEBHOOK_BODY_BYTES})


def _errors(**statuses: str) -> dict[int, Any]:
    return {
        int(status.removeprefix("e")): {"description": text, "content": {"application/json": {"model": ErrorBody}}}
        for status, text in statuses.items()
    }


# Answered by API Gateway itself, before the function runs.
_GATEWAY = {
    403: {"description": "No or wrong x-api-key", "content": {"application/json": {"model": GatewayMessage}}},
    429: {"description": "Throttled by the usage plan, or Millis rate-limited every region (Retry-After)"},
}
_READ_ERRORS = {**_errors(e400="Invalid request", e404="Not found", e503="DynamoDB unavailable"), **_GATEWAY}
_CREATE_ERRORS = (
    _errors(
        e400="Invalid request (details name each field)",
        e404="Millis does not know the agent",
        e409="A request with this Idempotency-Key is in progress",
        e413="Body over 64 KiB",
        e415="Not JSON",
        e422="Millis refused the body, or the Idempotency-Key was used with another body",
        e502="Millis rejected the key or answered something unusable",
        e503="Millis, the key or DynamoDB unavailable; retry after Retry-After",
    )
    | _GATEWAY
)
_WEBHOOK_ERRORS = _errors(
    e400="Invalid payload",
    e401="No or wrong X-Webhook-Secret",
    e413="Body over 1 MiB",
    e415="Not JSON",
    e503="The webhook secret or DynamoDB unavailable",
)


def _json(status: int, view: CallView | WebhookAck | dict[str, Any]) -> Response[str]:
    body = view if isinstance(view, dict) else view.model_dump(mode="json")
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=_dumps(body))


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def _register(body: RegisterCallRequest) -> dict[str, Any]:
    remaining = app.lambda_context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS
    record = service.register(body, budget=min(settings.http_deadline, remaining), webhook_url=_webhook_url())
    return CallView.of(record).model_dump(mode="json")


def _webhook_url() -> str | None:
    """This API's own webhook route, as the caller reached it (WEBHOOK_URL overrides it)."""
    context = app.current_event.request_context
    if not context.domain_name or not context.stage:
        return None
    return f"https://{context.domain_name}/{context.stage}{WEBHOOK_PATH}"


def _idempotent(
    register: Callable[[RegisterCallRequest], dict[str, Any]],
) -> Callable[[str, RegisterCallRequest], dict[str, Any]] | None:
    """register() made idempotent per Idempotency-Key (DynamoDB persistence, TTL), or None when the stack
    has no idempotency table."""
    if not settings.idempotency_table_name:
        return None
    persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table_name, boto3_client=dynamodb)

    def run(request: dict[str, Any]) -> dict[str, Any]:
        return register(RegisterCallRequest.model_validate(request["body"]))

    once: Callable[..., Any] = idempotent_function(
        data_keyword_argument="request", persistence_store=persistence, config=idempotency
    )(run)

    def call(key: str, body: RegisterCallRequest) -> dict[str, Any]:
        try:
            result: dict[str, Any] = once(
                request={"key": key, "body": body.model_dump(mode="json", exclude_unset=True)}
            )
        except IdempotencyValidationError:
            raise IdempotencyKeyReused(f"This {IDEMPOTENCY_HEADER} was used before with a different body.") from None
        except IdempotencyAlreadyInProgressError:
            raise IdempotencyInProgress(f"A request with this {IDEMPOTENCY_HEADER} is still in progress.") from None
        except IdempotencyPersistenceLayerError as exc:
            raise StoreUnavailable(f"The idempotency store failed ({type(exc).__name__}).") from None
        return result

    return call


idempotency = IdempotencyConfig(
    event_key_jmespath="key",
    payload_validation_jmespath="body",
    expires_after_seconds=settings.idempotency_ttl_seconds,
    raise_on_no_idempotency_key=True,
)
register_once = _idempotent(_register)


@app.post(
    "/calls",
    summary="Register a call with Millis",
    responses={
        201: {"description": "Registered", "content": {"application/json": {"model": CallView}}},
        **_CREATE_ERRORS,
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
        return _json(201, _register(body))
    return _json(201, register_once(idempotency_key, body))


@app.get(
    "/calls",
    summary="Carrier lookup: the newest unused, unexpired registration for a lookup key",
    responses={200: {"description": "Found", "content": {"application/json": {"model": CallView}}}, **_READ_ERRORS},
)
def lookup_call(
    lookup_key: Annotated[LookupKey, Query(description="The key the call was registered with.")],
) -> Response[str]:
    return _json(200, CallView.of(service.lookup(lookup_key)))


@app.get(
    "/calls/<call_id>",
    summary="A call by its Millis call_id",
    responses={200: {"description": "The call", "content": {"application/json": {"model": CallView}}}, **_READ_ERRORS},
)
def get_call(call_id: Annotated[CallId, Path(description="The Millis call_id.")]) -> Response[str]:
    logger.append_keys(call_id=call_id)
    return _json(200, CallView.of(service.get(call_id)))


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
    outcome = service.close_session(body)
    return _json(200, WebhookAck(call_id=body.call_id, outcome=outcome))


_openapi: str | None = None


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI document Powertools derives from the routes, with the API's two credentials and
    without the 422 Powertools declares for request validation (this API answers those with 400)."""
    schema = app.get_openapi_schema(
        title="Millis SIP Bridge",
        version="1.0.0",
        summary="Register calls with Millis AI, look them up for carriers, receive Millis' session webhook.",
    )
    document: dict[str, Any] = json.loads(schema.model_dump_json(by_alias=True, exclude_none=True))
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in json.dumps(responses.get("422", {})):
                responses.pop("422")
            operation["security"] = [{"webhookSecret": []}] if path == WEBHOOK_PATH else [{"apiKey": []}]
    components = document.setdefault("components", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(unused, None)
    components["securitySchemes"] = {
        "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        "webhookSecret": {"type": "apiKey", "in": "header", "name": WEBHOOK_HEADER},
    }
    return document


@app.get("/openapi.json", summary="This API's OpenAPI document", include_in_schema=False)
def openapi_document() -> Response[str]:
    global _openapi
    if _openapi is None:
        _openapi = json.dumps(openapi_schema())
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=_openapi)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency.register_lambda_context(context)
    return app.resolve(event, context)

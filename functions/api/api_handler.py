"""ApiFunction: the HTTP API. Composition root: clients and configuration are built once here, per
execution environment; routes parse input into models and call one domain method each."""

import hmac
import json
import re
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

from millis_sip.config import Settings
from millis_sip.errors import (
    IdempotencyInProgress,
    IdempotencyKeyReused,
    InvalidRequest,
    StoreUnavailable,
    WebhookUnauthorized,
)
from millis_sip.http_api import BridgeResolver
from millis_sip.millis import HttpMillisGateway
from millis_sip.models import (
    MAX_WEBHOOK_BODY_BYTES,
    TOKEN_PATTERN,
    CallId,
    CallView,
    ErrorBody,
    LookupKey,
    RegisterCallRequest,
    SessionDataWebhook,
    WebhookAck,
)
from millis_sip.observability import logger, metrics, tracer
from millis_sip.registration import WEBHOOK_HEADER, WEBHOOK_PATH, CallService, SessionWebhook
from millis_sip.secrets import webhook_secret_source
from millis_sip.store import DYNAMODB_CONFIG, DynamoCallStore

DEADLINE_MARGIN_SECONDS = 1.0  # leave time to store the call and answer before the function times out
IDEMPOTENCY_HEADER = "Idempotency-Key"
_TOKEN = re.compile(TOKEN_PATTERN)

settings = Settings.from_env()
if settings.millis_region.warning:
    logger.warning(settings.millis_region.warning)
dynamodb = boto3.client("dynamodb", config=DYNAMODB_CONFIG)
webhook_secret = webhook_secret_source(settings.webhook_secret_arn, settings.secret_max_age)
service = CallService(
    HttpMillisGateway.from_settings(settings),
    DynamoCallStore(dynamodb, settings.calls_table_name),
    ttl_seconds=settings.call_ttl_seconds,
    default_agent_id=settings.default_agent_id,
    webhook=SessionWebhook(webhook_secret, settings.webhook_url)
    if webhook_secret and settings.session_webhook
    else None,
)


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

_ERRORS: dict[int, Any] = {
    status: {"description": text, "content": {"application/json": {"model": ErrorBody}}}
    for status, text in {400: "Invalid request", 404: "Not found", 503: "Millis or DynamoDB unavailable"}.items()
}


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


@app.post("/calls", summary="Register a call with Millis", responses={201: {"description": "Registered"}, **_ERRORS})
@tracer.capture_method(capture_response=False)
def create_call(
    body: RegisterCallRequest,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_HEADER.lower(),
            description="Retries with the same key and body get the first answer, without a second registration.",
            max_length=128,
        ),
    ] = None,
) -> Response[str]:
    if idempotency_key is None or register_once is None:
        return _json(201, _register(body))
    if not _TOKEN.match(idempotency_key):
        raise InvalidRequest(f"{IDEMPOTENCY_HEADER} must be 1 to 128 visible ASCII characters, no spaces.")
    return _json(201, register_once(idempotency_key, body))


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


@app.post(
    WEBHOOK_PATH,
    summary="Millis session_data_webhook: the call is over (authenticated by X-Webhook-Secret, not the API key)",
    responses={200: {"description": "Received"}, 401: {"description": "No or wrong X-Webhook-Secret"}},
)
@tracer.capture_method(capture_response=False)
def millis_webhook(body: SessionDataWebhook) -> Response[str]:
    logger.append_keys(call_id=body.call_id)
    outcome = service.close_session(body)
    return _json(200, WebhookAck(call_id=body.call_id, outcome=outcome))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency.register_lambda_context(context)
    return app.resolve(event, context)

"""ApiFunction: the management API (register, read, look up, Millis' session webhook, OpenAPI).
Composition root: ``build()`` makes the clients, the core services and the resolver once per execution
environment; the handler runs the resolver under Powertools' logging and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from millis_sip import snapstart
from millis_sip.adapters.dynamodb.clients import API_CONFIG, dynamodb_client
from millis_sip.adapters.dynamodb.store import DynamoCallStore, DynamoNumberRoutes
from millis_sip.adapters.millis_http import HttpMillisGateway
from millis_sip.adapters.secrets import keys_secret_source, webhook_secret_source
from millis_sip.config import Settings
from millis_sip.core.clock import SystemClock
from millis_sip.core.keys import StackKeys
from millis_sip.core.lifecycle import SessionReports
from millis_sip.core.lookup import CallDirectory
from millis_sip.core.numbers import NumberDirectory
from millis_sip.core.ports import CallStore, Clock, MillisGateway, NumberRoutes, Secret
from millis_sip.core.registration import MillisRegistrations, Registrar, SessionWebhook
from millis_sip.edges.http.app import ManagementServices, create_app
from millis_sip.edges.http.idempotency import Idempotency
from millis_sip.edges.http.resolver import BridgeResolver
from millis_sip.observability import batched_metrics, correlate, emf_metrics, logger, tracer


@dataclass(frozen=True, slots=True)
class Api:
    app: BridgeResolver
    services: ManagementServices
    settings: Settings
    dynamodb: Any
    gateway: HttpMillisGateway
    store: DynamoCallStore
    idempotency: Idempotency | None


def compose(
    settings: Settings,
    *,
    gateway: MillisGateway,
    store: CallStore,
    numbers: NumberRoutes,
    stack_secret: Secret | None,
    idempotency: Idempotency | None,
    keys: StackKeys,
    clock: Clock | None = None,
    sip_server_api_key_id: str = "",
) -> tuple[BridgeResolver, ManagementServices]:
    """The management API over the given ports (the adapters in AWS; fakes in the unit tests). ``stack_secret``
    opens only the Millis reports of calls registered before per-call credentials; ``keys`` (under the keys
    secret) key the lookup index and derive the PINs. A request made with the API key ``sip_server_api_key_id``
    (the SIP servers', for GET /route only) is answered 403 before anything else runs."""
    clock = clock or SystemClock()
    webhook = SessionWebhook(settings.webhook_url) if settings.session_webhook else None
    services = ManagementServices(
        registrar=Registrar(
            MillisRegistrations(gateway, webhook=webhook, metrics=emf_metrics),
            store,
            clock=clock,
            ttl_seconds=settings.call_ttl_seconds,
            default_agent_id=settings.default_agent_id,
            keys=keys,
        ),
        directory=CallDirectory(store, clock=clock),
        sessions=SessionReports(store, clock=clock, ttl_seconds=settings.call_ttl_seconds, stack_secret=stack_secret),
        numbers=NumberDirectory(numbers, clock=clock),
        http_deadline=settings.http_deadline,
    )
    app = create_app(services, idempotency=idempotency, refused_api_key_ids=[sip_server_api_key_id])
    return app, services


def build() -> tuple[Api, snapstart.Hooks]:
    settings = Settings.from_env()
    if settings.millis_region.warning:
        logger.warning(settings.millis_region.warning)
    dynamodb = dynamodb_client(API_CONFIG)
    gateway = HttpMillisGateway.from_settings(settings)
    stack_secret = webhook_secret_source(settings.webhook_secret_arn, settings.secret_max_age)
    keys_secret = keys_secret_source(settings.keys_secret_arn, settings.secret_max_age)
    keys = StackKeys(keys_secret)
    idempotency = (
        Idempotency(settings.idempotency_table_name, client=dynamodb, ttl_seconds=settings.idempotency_ttl_seconds)
        if settings.idempotency_table_name
        else None
    )
    store = DynamoCallStore(dynamodb, settings.calls_table_name, keys=keys)
    numbers = DynamoNumberRoutes(dynamodb, settings.numbers_table_name)
    app, services = compose(
        settings,
        gateway=gateway,
        store=store,
        numbers=numbers,
        stack_secret=stack_secret,
        idempotency=idempotency,
        keys=keys,
        sip_server_api_key_id=settings.sip_server_api_key_id or "",
    )
    hooks = snapstart.Hooks(gateway=gateway, secrets=[s for s in (stack_secret, keys_secret) if s is not None])
    return Api(app, services, settings, dynamodb, gateway, store, idempotency), hooks


api, _hooks = build()
app, settings, dynamodb, gateway = api.app, api.settings, api.dynamodb, api.gateway
snapstart.register(before_snapshot=_hooks.before_snapshot, after_restore=_hooks.after_restore)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@batched_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    correlate(event, "requestContext", "requestId")
    if api.idempotency is not None:
        api.idempotency.register_lambda_context(context)
    return app.resolve(event, context)

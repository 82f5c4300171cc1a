"""The call path's parts, wired once for every entry module that answers phone calls (the SIP media
application and the inbound function): Millis over httpx, DynamoDB, the keys secret, the core's router and
call lifecycle. Composition only: the entry modules add their edges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from millis_sip.adapters import threads
from millis_sip.adapters.dynamodb.clients import PHONE_CONFIG, dynamodb_client
from millis_sip.adapters.dynamodb.store import DynamoCallStore, DynamoNumberRoutes
from millis_sip.adapters.millis_http import HttpMillisGateway
from millis_sip.adapters.secrets import keys_secret_source
from millis_sip.config import Settings
from millis_sip.core.clock import SystemClock
from millis_sip.core.keys import StackKeys
from millis_sip.core.lifecycle import PhoneCalls
from millis_sip.core.numbers import CachedNumberRoutes
from millis_sip.core.ports import Secret
from millis_sip.core.registration import MillisRegistrations, SessionWebhook
from millis_sip.core.router import CallRouter
from millis_sip.observability import emf_metrics, logger


@dataclass(frozen=True, slots=True)
class CallPath:
    settings: Settings
    clock: SystemClock
    router: CallRouter
    calls: PhoneCalls
    gateway: HttpMillisGateway
    store: DynamoCallStore
    dynamodb: Any
    keys: StackKeys  # under the keys secret: the edges' action tokens
    secrets: list[Secret]  # to read again after a SnapStart restore


def call_path(settings: Settings) -> CallPath:
    if settings.millis_region.warning:
        logger.warning(settings.millis_region.warning)
    clock = SystemClock()
    gateway = HttpMillisGateway.from_settings(settings)
    dynamodb = dynamodb_client(PHONE_CONFIG)
    secret = keys_secret_source(settings.keys_secret_arn, settings.secret_max_age)
    keys = StackKeys(secret)
    store = DynamoCallStore(dynamodb, settings.calls_table_name, keys=keys)
    webhook = SessionWebhook(settings.webhook_url) if settings.session_webhook and settings.webhook_url else None
    router = CallRouter(
        MillisRegistrations(gateway, webhook=webhook, metrics=emf_metrics),
        store,
        CachedNumberRoutes(DynamoNumberRoutes(dynamodb, settings.numbers_table_name), clock=clock),
        clock=clock,
        region_order=settings.millis_region.order,
        ttl_seconds=settings.call_ttl_seconds,
        default_agent_id=settings.default_agent_id,
        default_agent_calls_per_hour=settings.default_agent_calls_per_hour,
        default_agent_calls_per_hour_total=settings.default_agent_calls_per_hour_total,
        keys=keys,
        metrics=emf_metrics,
        parallel=threads.parallel,
    )
    calls = PhoneCalls(
        store, clock=clock, ttl_seconds=settings.call_ttl_seconds, metrics=emf_metrics, parallel=threads.parallel
    )
    return CallPath(settings, clock, router, calls, gateway, store, dynamodb, keys, [secret] if secret else [])

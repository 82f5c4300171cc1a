"""SipMediaAppFunction: Amazon Chime SDK SIP media application invocations. Composition root: clients and
configuration are built once per execution environment. The handler always answers with a valid SIP
media application response: a phone call is live while it runs, so nothing may escape it."""

import time
from collections.abc import Callable
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from millis_sip import snapstart
from millis_sip.config import ChimeSettings, Settings
from millis_sip.millis import HttpMillisGateway
from millis_sip.observability import count_call_failure, logger, metrics, tracer
from millis_sip.secrets import webhook_secret_source
from millis_sip.sma import SipMediaApp, fallback_response
from millis_sip.sma_events import SmaEvent
from millis_sip.store import DYNAMODB_CHIME_CONFIG, DynamoCallStore
from millis_sip.webhook import SessionWebhook

ANSWER_MARGIN_SECONDS = 0.3  # between the answer being ready and the function's own timeout


def build() -> tuple[SipMediaApp, ChimeSettings, Callable[[], None], Callable[[], None]]:
    settings = Settings.from_env()
    chime = ChimeSettings.from_env()
    if settings.millis_region.warning:
        logger.warning(settings.millis_region.warning)
    if not chime.routes:
        logger.warning("No Voice Connector is configured: every phone call will be released without an agent")
    gateway = HttpMillisGateway.from_settings(settings)
    store = DynamoCallStore(boto3.client("dynamodb", config=DYNAMODB_CHIME_CONFIG), settings.calls_table_name)
    secret = webhook_secret_source(settings.webhook_secret_arn, settings.secret_max_age)
    webhook = None
    if secret is not None and settings.session_webhook and settings.webhook_url:
        webhook = SessionWebhook(secret, settings.webhook_url)
    app = SipMediaApp(
        gateway,
        store,
        chime,
        region_order=settings.millis_region.order,
        ttl_seconds=settings.call_ttl_seconds,
        default_agent_id=settings.default_agent_id,
        webhook=webhook,
    )

    def forget_secrets() -> None:
        if secret is not None:
            secret.forget()

    def after_restore() -> None:
        gateway.after_restore()
        forget_secrets()

    return app, chime, forget_secrets, after_restore


app: SipMediaApp | None = None
chime: ChimeSettings | None = None
setup_error: Exception | None = None
try:
    app, chime, _before_snapshot, _after_restore = build()
    snapstart.register(before_snapshot=_before_snapshot, after_restore=_after_restore)
except Exception as exc:  # noqa: BLE001 - every invocation answers without it instead of crashing
    setup_error = exc
    logger.exception("SipMediaAppFunction is misconfigured: every phone call will be released")


@logger.inject_lambda_context(correlation_id_path="CallDetails.TransactionId", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    started = time.monotonic()
    parsed = SmaEvent.parse(event)
    logger.append_keys(invocation=parsed.type, sequence=parsed.sequence)
    if app is None or chime is None:
        logger.error("Not configured", extra={"error": str(setup_error)})
        count_call_failure("configuration_error")
        return fallback_response(parsed)
    remaining = context.get_remaining_time_in_millis() / 1000 - ANSWER_MARGIN_SECONDS
    deadline = started + min(chime.answer_seconds, remaining)
    try:
        return app.handle(parsed, deadline=deadline)
    except Exception:  # noqa: BLE001 - a live phone call must get an answer
        logger.exception("Unexpected failure answering the invocation")
        count_call_failure("internal_error")
        return fallback_response(parsed)

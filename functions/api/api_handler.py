"""ApiFunction: the management API (register, read, look up, number routes, Millis' session webhook, OpenAPI).
Thin on purpose: ``millis_sip.wiring.management_api`` builds the graph once per execution environment; the
handler runs the resolver under Powertools' logging and metrics."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from millis_sip import snapstart
from millis_sip.config import Settings
from millis_sip.observability import batched_metrics, correlate, logger, tracer
from millis_sip.wiring import management_api

api = management_api(Settings.from_env())
app, settings, dynamodb, gateway = api.app, api.settings, api.dynamodb, api.gateway
snapstart.register(before_snapshot=api.hooks.before_snapshot, after_restore=api.hooks.after_restore)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@batched_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    correlate(event, "requestContext", "requestId")
    if api.idempotency is not None:
        api.idempotency.register_lambda_context(context)
    return app.resolve(event, context)

"""SipMediaAppFunction: Amazon Chime SDK SIP media application invocations. ``build()`` adds the Chime edge to
the call path ``millis_sip.wiring`` builds, once per execution environment. The handler always
answers with a valid SIP media application response: a phone call is live while it runs, so nothing may
escape it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from millis_sip import snapstart
from millis_sip.adapters.dynamodb.store import DynamoCallStore
from millis_sip.adapters.millis_http import HttpMillisGateway
from millis_sip.config import ChimeSettings, Settings
from millis_sip.edges.chime.app import SipMediaApp, fallback_response
from millis_sip.edges.chime.events import SmaEvent
from millis_sip.observability import batched_metrics, correlate, emf_metrics, logger, tracer
from millis_sip.wiring import call_path

ANSWER_MARGIN_SECONDS = 0.3  # between the answer being ready and the function's own timeout


@dataclass(frozen=True, slots=True)
class Sma:
    app: SipMediaApp
    chime: ChimeSettings
    dynamodb: Any
    gateway: HttpMillisGateway
    store: DynamoCallStore


def build() -> tuple[Sma, snapstart.Hooks]:
    chime = ChimeSettings.from_env()
    if not chime.routes:
        logger.warning("No Voice Connector is configured: every phone call will be released without an agent")
    path = call_path(Settings.from_env())
    app = SipMediaApp(
        path.router, path.calls, chime, metrics=emf_metrics, outbound=path.outbound, transfers=path.transfers
    )
    sma = Sma(app, chime, path.dynamodb, path.gateway, path.store)
    return sma, path.hooks()


sma: Sma | None = None
setup_error: Exception | None = None
try:
    sma, _hooks = build()
    snapstart.register(before_snapshot=_hooks.before_snapshot, after_restore=_hooks.after_restore)
except Exception as exc:  # noqa: BLE001 - every invocation answers without it instead of crashing
    setup_error = exc
    logger.exception("SipMediaAppFunction is misconfigured: every phone call will be released")
app = sma.app if sma is not None else None


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@batched_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    correlate(event, "CallDetails", "TransactionId")
    started = time.monotonic()
    parsed = SmaEvent.parse(event)
    logger.append_keys(invocation=parsed.type, sequence=parsed.sequence)
    if sma is None:
        logger.error("Not configured", extra={"error": str(setup_error)})
        emf_metrics.inbound_failure("configuration_error")
        return fallback_response(parsed)
    remaining = context.get_remaining_time_in_millis() / 1000 - ANSWER_MARGIN_SECONDS
    deadline = started + min(sma.chime.answer_seconds, remaining)
    try:
        return sma.app.handle(parsed, deadline=deadline)
    except Exception:  # noqa: BLE001 - a live phone call must get an answer
        logger.exception("Unexpected failure answering the invocation")
        emf_metrics.inbound_failure("internal_error")
        return fallback_response(parsed, sma.chime.messages)

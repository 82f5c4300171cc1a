"""Register a call with Millis (nearest region, one failover) and store it; the session webhook every
registration carries so that Millis reports the end of the session back to this stack."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from millis_sip.core.calls import CallRecord, CallStatus
from millis_sip.core.errors import Attempt, BridgeError, InvalidRequest, StoreUnavailable
from millis_sip.core.ports import CallStore, Clock, Metrics, MillisGateway, MillisRegistration, NoMetrics, Secret

log = logging.getLogger(__name__)

WEBHOOK_HEADER = "X-Webhook-Secret"
WEBHOOK_PATH = "/webhooks/millis"


@dataclass(frozen=True, slots=True)
class RegisterCall:
    """A registration, as a backend asks for it. The four Millis fields are passed through as given."""

    agent_id: str | None = None
    agent_config: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    include_metadata_in_prompt: bool | None = None
    lookup_key: str | None = None

    def millis_payload(self, default_agent_id: str | None) -> dict[str, Any]:
        """Exactly the Millis fields that were sent; the default agent only when neither agent field was."""
        payload: dict[str, Any] = {
            name: value
            for name, value in (
                ("agent_id", self.agent_id),
                ("agent_config", self.agent_config),
                ("metadata", self.metadata),
                ("include_metadata_in_prompt", self.include_metadata_in_prompt),
            )
            if value is not None
        }
        if self.agent_id is None and self.agent_config is None:
            if default_agent_id is None:
                raise InvalidRequest(
                    "No agent to register the call with: send agent_id or agent_config, "
                    "or deploy the stack with a DefaultAgentId."
                )
            payload["agent_id"] = default_agent_id
        return payload


def with_session_webhook(payload: Mapping[str, Any], url: str, header: str, secret: str) -> dict[str, Any]:
    """``payload`` with this stack's session webhook in ``agent_config``, unless the caller set one."""
    config = payload.get("agent_config")
    if isinstance(config, Mapping) and "session_data_webhook" in config:
        return dict(payload)
    hook = {"url": url, "headers": {header: secret}}
    return {**payload, "agent_config": {**(config or {}), "session_data_webhook": hook}}


@dataclass(frozen=True, slots=True)
class SessionWebhook:
    """This stack's session webhook, put into each registration's agent_config so that Millis reports the
    end of every session. ``url`` None: the URL the request came in on."""

    secret: Secret
    url: str | None = None

    def attach(self, payload: Mapping[str, Any], request_url: str | None = None) -> dict[str, Any]:
        target = self.url or request_url
        if not target:
            return dict(payload)
        try:
            secret = self.secret()
        except BridgeError as exc:
            log.warning("Registering without the session webhook", extra={"error": exc.code})
            return dict(payload)
        return with_session_webhook(payload, target, WEBHOOK_HEADER, secret)


class Registrar:
    """Registers calls with Millis and stores them. The caller is only told about a call that is stored."""

    def __init__(
        self,
        gateway: MillisGateway,
        store: CallStore,
        *,
        clock: Clock,
        ttl_seconds: int,
        default_agent_id: str | None,
        webhook: SessionWebhook | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._gateway = gateway
        self._store = store
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_seconds)
        self._default_agent_id = default_agent_id
        self._webhook = webhook
        self._metrics = metrics or NoMetrics()

    def register(self, command: RegisterCall, *, budget: float, webhook_url: str | None = None) -> CallRecord:
        """Register with Millis and store the call. When the store fails after Millis registered the call,
        ``StoreUnavailable`` propagates (nothing is acknowledged) and the Millis call id is logged for
        reconciliation."""
        payload = command.millis_payload(self._default_agent_id)
        if self._webhook is not None:
            payload = self._webhook.attach(payload, webhook_url)
        registration = self._gateway.register(payload, budget=budget)
        now = self._clock.now()
        record = CallRecord(
            call_id=registration.call_id,
            sip_uri=registration.sip_uri,
            millis_region=registration.region.value,
            status=CallStatus.REGISTERED,
            created_at=now,
            expires_at=(now + self._ttl).replace(microsecond=0),  # stored as epoch seconds (TTL)
            lookup_key=command.lookup_key,
            agent_id=payload.get("agent_id"),
        )
        try:
            self._store.put_new(record)
        except StoreUnavailable:
            log.error(
                "Millis registered a call that could not be stored; it was not acknowledged",
                extra={"millis_call_id": registration.call_id, "millis_region": registration.region.value},
            )
            raise
        self.count(registration)
        log.info(
            "Call registered",
            extra={
                "call_id": record.call_id,
                "millis_region": registration.region.value,
                "attempts": attempts_text(registration.attempts),
                "has_lookup_key": record.lookup_key is not None,
            },
        )
        return record

    def count(self, registration: MillisRegistration) -> None:
        self._metrics.registered(
            registration.region.value,
            failed_over=registration.failed_over,
            latency_ms=registration.attempts[-1].elapsed_ms,
        )


def attempts_text(attempts: Sequence[Attempt]) -> list[str]:
    """``us-west:http_503:12.5ms``, one per try: for log lines."""
    return [f"{a.region}:{a.outcome}:{a.elapsed_ms}ms" for a in attempts]

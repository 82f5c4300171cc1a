"""Register a call with Millis (nearest region, one failover) and store it; the session webhook every
registration carries so that Millis reports the end of the session back to this stack; the PIN a registration
gets when a caller must prove who they are by keying it in."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from millis_sip.core.calls import CallerVerification, CallRecord, CallStatus
from millis_sip.core.errors import Attempt, InvalidRequest, StoreUnavailable
from millis_sip.core.keys import StackKeys
from millis_sip.core.phone import canonical_number
from millis_sip.core.ports import CallStore, Clock, Metrics, MillisGateway, MillisRegistration, NoMetrics
from millis_sip.core.regions import MillisRegion

log = logging.getLogger(__name__)

WEBHOOK_HEADER = "X-Webhook-Secret"


@dataclass(frozen=True, slots=True)
class RegisterCall:
    """A registration, as a backend asks for it. The four Millis fields are passed through as given."""

    agent_id: str | None = None
    agent_config: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    include_metadata_in_prompt: bool | None = None
    lookup_key: str | None = None
    caller_verification: CallerVerification = CallerVerification.ATTESTATION

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


@dataclass(frozen=True, slots=True)
class Registered:
    record: CallRecord
    pin: str | None = None  # given to the backend, never stored (the record keeps its hash)


def hash_pin(call_id: str, pin: str) -> str:
    """What records registered before PINs were derived kept of theirs: SHA-256 over the call id and the digits
    (six digits are quickly guessed from it, which is why new records keep nothing of the PIN)."""
    return hashlib.sha256(f"{call_id}:{pin}".encode()).hexdigest()


def pin_matches(record: CallRecord, digits: str, keys: StackKeys) -> bool:
    """Whether ``digits`` are the PIN of ``record``: derived again under the stack secret (an older record:
    checked against the hash it kept)."""
    if record.caller_verification is not CallerVerification.PIN or not digits.isascii() or not digits.isdigit():
        return False
    if record.pin_hash is not None:
        return hmac.compare_digest(hash_pin(record.call_id, digits), record.pin_hash)
    return hmac.compare_digest(keys.pin(record.call_id), digits)


def with_session_webhook(payload: Mapping[str, Any], url: str, header: str, secret: str) -> dict[str, Any]:
    """``payload`` with this stack's session webhook in ``agent_config``, unless the caller set one."""
    config = payload.get("agent_config")
    if isinstance(config, Mapping) and "session_data_webhook" in config:
        return dict(payload)
    hook = {"url": url, "headers": {header: secret}}
    return {**payload, "agent_config": {**(config or {}), "session_data_webhook": hook}}


def webhook_credential_hash(credential: str) -> str:
    """What a record keeps of its webhook credential (256 random bits: a plain SHA-256 is enough)."""
    return hashlib.sha256(credential.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionWebhook:
    """This stack's session webhook, put into each registration's agent_config so that Millis reports the
    end of every session. Each registration gets a credential of its own, which Millis sends back in
    X-Webhook-Secret and the record keeps as a hash: one call's credential opens no other call's record.
    ``url`` None: the URL the request came in on."""

    url: str | None = None

    def attach(self, payload: Mapping[str, Any], request_url: str | None = None) -> tuple[dict[str, Any], str | None]:
        """``payload`` with the webhook, and the hash of the credential it carries (None: no webhook added)."""
        target = self.url or request_url
        config = payload.get("agent_config")
        if not target or (isinstance(config, Mapping) and "session_data_webhook" in config):
            return dict(payload), None  # nowhere to send it, or the backend set its own
        credential = secrets.token_urlsafe(32)
        return with_session_webhook(payload, target, WEBHOOK_HEADER, credential), webhook_credential_hash(credential)


class MillisRegistrations:
    """One registration with Millis as every path makes it: this stack's session webhook added, the gateway
    asked (nearest region first, one failover), the outcome counted."""

    def __init__(
        self, gateway: MillisGateway, *, webhook: SessionWebhook | None = None, metrics: Metrics | None = None
    ) -> None:
        self._gateway = gateway
        self._webhook = webhook
        self._metrics = metrics or NoMetrics()

    def register(
        self,
        payload: Mapping[str, Any],
        *,
        budget: float,
        regions: Sequence[MillisRegion] | None = None,
        webhook_url: str | None = None,
    ) -> MillisRegistration:
        webhook_hash = None
        if self._webhook is not None:
            payload, webhook_hash = self._webhook.attach(payload, webhook_url)
        registration = self._gateway.register(payload, budget=budget, regions=regions)
        if webhook_hash is not None:
            registration = replace(registration, webhook_hash=webhook_hash)
        self._metrics.registered(
            registration.region.value,
            failed_over=registration.failed_over,
            latency_ms=registration.attempts[-1].elapsed_ms,
        )
        return registration


class Registrar:
    """Registers calls with Millis and stores them. The caller is only told about a call that is stored."""

    def __init__(
        self,
        millis: MillisRegistrations,
        store: CallStore,
        *,
        clock: Clock,
        ttl_seconds: int,
        default_agent_id: str | None,
        keys: StackKeys,
    ) -> None:
        self._millis = millis
        self._store = store
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_seconds)
        self._default_agent_id = default_agent_id
        self._keys = keys

    def pin_for(self, call_id: str) -> str:
        """A PIN registration's PIN: derived again from the call id (it is stored nowhere in clear)."""
        return self._keys.pin(call_id)

    def register(self, command: RegisterCall, *, budget: float, webhook_url: str | None = None) -> Registered:
        """Register with Millis and store the call. When the store fails after Millis registered the call,
        ``StoreUnavailable`` propagates (nothing is acknowledged) and the Millis call id is logged for
        reconciliation."""
        policy = command.caller_verification
        if policy in (CallerVerification.PIN, CallerVerification.DIALED_NUMBER):
            whose = "the number the caller calls from" if policy is CallerVerification.PIN else "the number dialed"
            if command.lookup_key is None:
                raise InvalidRequest(f"caller_verification {policy.value} needs a lookup_key: {whose}.")
            if canonical_number(command.lookup_key) is None:
                raise InvalidRequest(
                    f"caller_verification {policy.value} needs a lookup_key that is a phone number ({whose}), "
                    "e.g. +14155550100."
                )
        if command.lookup_key is not None:
            # The index key and the PIN come from the stack secret: read it before Millis starts a session
            # that could then not be stored (WebhookSecretUnavailable: nothing registered, nothing to reconcile).
            self._keys.ready()
        payload = command.millis_payload(self._default_agent_id)
        registration = self._millis.register(payload, budget=budget, webhook_url=webhook_url)
        now = self._clock.now()
        pin = self.pin_for(registration.call_id) if command.caller_verification is CallerVerification.PIN else None
        record = CallRecord(
            call_id=registration.call_id,
            sip_uri=registration.sip_uri,
            millis_region=registration.region.value,
            status=CallStatus.REGISTERED,
            created_at=now,
            expires_at=(now + self._ttl).replace(microsecond=0),  # stored as epoch seconds (TTL)
            lookup_key=command.lookup_key,
            agent_id=payload.get("agent_id"),
            caller_verification=command.caller_verification,
            webhook_hash=registration.webhook_hash,
        )
        try:
            self._store.put_new(record)
        except StoreUnavailable:
            log.error(
                "Millis registered a call that could not be stored; it was not acknowledged",
                extra={"millis_call_id": registration.call_id, "millis_region": registration.region.value},
            )
            raise
        log.info(
            "Call registered",
            extra={
                "call_id": record.call_id,
                "millis_region": registration.region.value,
                "attempts": attempts_text(registration.attempts),
                "has_lookup_key": record.lookup_key is not None,
                "caller_verification": record.caller_verification.value,
            },
        )
        return Registered(record, pin)


def attempts_text(attempts: Sequence[Attempt]) -> list[str]:
    """``us-west:http_503:12.5ms``, one per try: for log lines."""
    return [f"{a.region}:{a.outcome}:{a.elapsed_ms}ms" for a in attempts]

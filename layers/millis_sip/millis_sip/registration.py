"""The domain: register a call with Millis and store it; find it again by id or by lookup key."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from millis_sip.errors import CallNotFound, StoreUnavailable
from millis_sip.millis import MillisGateway
from millis_sip.models import RegisterCallRequest, SessionDataWebhook
from millis_sip.observability import count_registration, logger
from millis_sip.records import CallRecord, CallStatus
from millis_sip.store import CallStore
from millis_sip.webhook import SessionWebhook, utc_now


class CallService:
    def __init__(
        self,
        gateway: MillisGateway,
        store: CallStore,
        *,
        ttl_seconds: int,
        default_agent_id: str | None,
        clock: Callable[[], datetime] = utc_now,
        webhook: SessionWebhook | None = None,
    ) -> None:
        self._gateway = gateway
        self._store = store
        self._ttl = timedelta(seconds=ttl_seconds)
        self._default_agent_id = default_agent_id
        self._clock = clock
        self._webhook = webhook

    def register(self, request: RegisterCallRequest, *, budget: float, webhook_url: str | None = None) -> CallRecord:
        """Register with Millis (nearest region, one failover) and store the call.

        The caller is only told about a call that is stored: when the store fails after Millis
        registered the call, StoreUnavailable propagates and the Millis call id is logged for
        reconciliation.
        """
        payload = request.millis_payload(self._default_agent_id)
        if self._webhook is not None:
            payload = self._webhook.attach(payload, webhook_url)
        registration = self._gateway.register(payload, budget=budget)
        logger.append_keys(call_id=registration.call_id)
        now = self._clock()
        record = CallRecord(
            call_id=registration.call_id,
            sip_uri=registration.sip_uri,
            millis_region=registration.region.value,
            status=CallStatus.REGISTERED,
            created_at=now,
            expires_at=(now + self._ttl).replace(microsecond=0),  # stored as epoch seconds (TTL)
            lookup_key=request.lookup_key,
            agent_id=payload.get("agent_id"),
        )
        try:
            self._store.put_new(record)
        except StoreUnavailable:
            logger.error(
                "Millis registered a call that could not be stored; it was not acknowledged",
                extra={"millis_call_id": registration.call_id, "millis_region": registration.region.value},
            )
            raise
        latency = registration.attempts[-1].elapsed_ms
        count_registration(registration.region.value, failed_over=registration.failed_over, latency_ms=latency)
        logger.info(
            "Call registered",
            extra={
                "millis_region": registration.region.value,
                "attempts": [f"{a.region}:{a.outcome}:{a.elapsed_ms}ms" for a in registration.attempts],
                "has_lookup_key": record.lookup_key is not None,
            },
        )
        return record

    def get(self, call_id: str) -> CallRecord:
        record = self._store.get(call_id)
        if record is None:
            raise CallNotFound(f"No call with id {call_id!r}.")
        return record.as_seen_at(self._clock())

    def lookup(self, lookup_key: str) -> CallRecord:
        now = self._clock()
        record = self._store.latest_for(lookup_key, now)
        if record is None:
            raise CallNotFound("No unexpired registration for that lookup_key.")
        return record.as_seen_at(now)

    def close_session(self, hook: SessionDataWebhook) -> str:
        """Millis' session webhook: the call is over. Replays and late deliveries change nothing."""
        now = self._clock()
        status = CallStatus.FAILED if hook.failed else CallStatus.ENDED
        reason = f"millis_{hook.call_status or 'ended'}"
        outcome = self._store.close_session(
            hook.call_id,
            status=status,
            reason=reason[:128],
            now=now,
            expires_at=(now + self._ttl).replace(microsecond=0),
            millis_call_status=hook.call_status,
            millis_duration_seconds=round(hook.duration) if hook.duration is not None else None,
            millis_session_id=hook.session_id,
        )
        log = logger.warning if outcome == "unknown" else logger.info
        log(
            "Millis session webhook",
            extra={"call_id": hook.call_id, "outcome": outcome, "call_status": hook.call_status},
        )
        if hook.failed and hook.error_message:
            logger.warning(
                "Millis reported an error for the session", extra={"error_message": hook.error_message[:500]}
            )
        return outcome

"""This stack's Millis session webhook as registrations carry it (README, "Call lifecycle"). No pydantic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from millis_sip.errors import BridgeError
from millis_sip.observability import logger

WEBHOOK_HEADER = "X-Webhook-Secret"
WEBHOOK_PATH = "/webhooks/millis"


def utc_now() -> datetime:
    return datetime.now(UTC)


def with_session_webhook(payload: dict[str, Any], url: str, header: str, secret: str) -> dict[str, Any]:
    """``payload`` with this stack's session webhook in ``agent_config``, unless the caller set one."""
    config = payload.get("agent_config")
    if isinstance(config, dict) and "session_data_webhook" in config:
        return payload
    hook = {"url": url, "headers": {header: secret}}
    return {**payload, "agent_config": {**(config or {}), "session_data_webhook": hook}}


@dataclass(frozen=True, slots=True)
class SessionWebhook:
    """This stack's session webhook, put into each registration's agent_config so that Millis reports the
    end of every session. ``url`` None: the URL the request came in on."""

    secret: Callable[[], str]
    url: str | None = None

    def attach(self, payload: dict[str, Any], request_url: str | None = None) -> dict[str, Any]:
        target = self.url or request_url
        if not target:
            return payload
        try:
            secret = self.secret()
        except BridgeError as exc:
            logger.warning("Registering without the session webhook", extra={"error": exc.code})
            return payload
        return with_session_webhook(payload, target, WEBHOOK_HEADER, secret)

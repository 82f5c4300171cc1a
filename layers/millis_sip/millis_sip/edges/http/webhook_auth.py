"""Authentication of Millis' session webhook, first step: before the body is even parsed, the request must
carry a credential in X-Webhook-Secret. Whose it is (each call's registration gives Millis its own) is checked
against the call's record when the report is applied (core.lifecycle.SessionReports)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from millis_sip.core.errors import WebhookUnauthorized
from millis_sip.core.registration import WEBHOOK_HEADER

MAX_CREDENTIAL_CHARS = 256
WEBHOOK_PATH = "/webhooks/millis"  # the route of Millis' session webhook (WEBHOOK_URL ends with it)


def webhook_credential(event: Mapping[str, Any]) -> str:
    """The credential the request carries; ``WebhookUnauthorized`` when there is none worth checking."""
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    presented = headers.get(WEBHOOK_HEADER.lower())
    if not isinstance(presented, str) or not 16 <= len(presented) <= MAX_CREDENTIAL_CHARS or not presented.isascii():
        raise WebhookUnauthorized(f"Missing or malformed {WEBHOOK_HEADER} header.")
    return presented


def require_credential(event: Mapping[str, Any]) -> None:
    """A resolver guard for ``POST /webhooks/millis``."""
    webhook_credential(event)

"""Authentication of Millis' session webhook: the shared secret Millis sends back in X-Webhook-Secret,
compared in constant time before the body is even parsed."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from millis_sip.core.ports import Secret
from millis_sip.core.registration import WEBHOOK_HEADER
from millis_sip.edges.http.errors import WebhookUnauthorized


class WebhookAuthenticator:
    """A resolver guard for ``POST /webhooks/millis``. With no secret configured it refuses everything."""

    def __init__(self, secret: Secret | None) -> None:
        self._secret = secret

    def __call__(self, event: Mapping[str, Any]) -> None:
        if self._secret is None:
            raise WebhookUnauthorized("The webhook is not configured on this stack.")
        headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
        presented = headers.get(WEBHOOK_HEADER.lower())
        expected = self._secret()  # WebhookSecretUnavailable -> 503, retried by the sender
        if not isinstance(presented, str) or not hmac.compare_digest(presented.encode(), expected.encode()):
            raise WebhookUnauthorized(f"Missing or wrong {WEBHOOK_HEADER} header.")

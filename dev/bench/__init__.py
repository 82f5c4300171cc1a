"""The benchmark suite (`make bench`, docs/performance.md)."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from dev.events import load_event
from dev.function_env import Tables, function_env
from dev.functions import LAYER_DIR

if str(LAYER_DIR) not in sys.path:
    sys.path.insert(0, str(LAYER_DIR))

TABLES = Tables.named("bench")
BENCH_TWILIO_TOKEN = "bench-twilio-auth-token"  # noqa: S105 - signs the benchmark's own Twilio webhooks


def function_config(millis: Mapping[str, str] | None = None, dynamodb_endpoint: str | None = None) -> dict[str, str]:
    """What the template gives the functions, for every benchmark; Millis and DynamoDB pointed nowhere unless
    given (nothing is called at import)."""
    return function_env(
        tables=TABLES,
        dynamodb_endpoint=dynamodb_endpoint,
        millis=millis or {"MILLIS_API_KEY": "bench-key"},
        webhook_secret="bench-webhook-secret",  # noqa: S106 - the local stand-in for the generated secret
        keys_secret="bench-keys-secret",  # noqa: S106 - the local stand-in for the generated keys secret
        default_agent_id="bench-agent",
        voice_connectors=True,
        extra={"TWILIO_AUTH_TOKEN": BENCH_TWILIO_TOKEN, "WEBHOOK_URL": "https://bench.example/v1/webhooks/millis"},
    )


__all__ = ["BENCH_TWILIO_TOKEN", "TABLES", "function_config", "load_event"]

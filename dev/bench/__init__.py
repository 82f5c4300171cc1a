"""The benchmark suite (`make bench`, README "Performance")."""

from __future__ import annotations

import json
import sys
from typing import Any

from dev.functions import LAYER_DIR
from dev.template import ROOT

if str(LAYER_DIR) not in sys.path:
    sys.path.insert(0, str(LAYER_DIR))

EVENTS = ROOT / "events"
TABLE, IDEMPOTENCY_TABLE = "bench-calls", "bench-idempotency"

# What the template gives the functions, for every benchmark (endpoints and the key are added per run).
FUNCTION_CONFIG = {
    "AWS_REGION": "us-west-2",
    "AWS_DEFAULT_REGION": "us-west-2",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "CALLS_TABLE_NAME": TABLE,
    "IDEMPOTENCY_TABLE_NAME": IDEMPOTENCY_TABLE,
    "MILLIS_API_KEY_SECRET_ARN": "",
    "WEBHOOK_SECRET": "bench-webhook-secret",
    "DEFAULT_AGENT_ID": "bench-agent",
    "VOICE_CONNECTOR_ARN_US_WEST": "arn:aws:chime:us-west-2:111122223333:vc/benchuswest000000000000",
    "MILLIS_SIP_HOST_US_WEST": "sip-us-west.millis-simulator.test",
    "VOICE_CONNECTOR_ARN_EU_WEST": "arn:aws:chime:us-west-2:111122223333:vc/bencheuwest000000000000",
    "MILLIS_SIP_HOST_EU_WEST": "sip-eu-west.millis-simulator.test",
    "POWERTOOLS_SERVICE_NAME": "millis-sip-bridge",
    "POWERTOOLS_METRICS_NAMESPACE": "MillisSipBridge",
    "POWERTOOLS_TRACE_DISABLED": "true",  # the template's default (Tracing=Disabled): no X-Ray SDK import
    "POWERTOOLS_LOG_LEVEL": "INFO",
}


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event

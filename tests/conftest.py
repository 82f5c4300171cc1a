"""Shared test setup. The environment a function module reads at import is set here, before any test
imports one; integration fixtures point it at DynamoDB Local and the Millis simulator."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"

BASE_ENV = {
    "AWS_REGION": "us-west-2",
    "AWS_DEFAULT_REGION": "us-west-2",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "CALLS_TABLE_NAME": "calls-unit",
    "MILLIS_API_KEY": "unit-test-private-key",
    "MILLIS_API_KEY_SECRET_ARN": "",
    "MILLIS_REGION": "auto",
    "MILLIS_US_WEST_URL": "http://127.0.0.1:9/us-west",
    "MILLIS_EU_WEST_URL": "http://127.0.0.1:9/eu-west",
    "POWERTOOLS_SERVICE_NAME": "millis-sip-bridge",
    "POWERTOOLS_METRICS_NAMESPACE": "MillisSipBridge",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "DEFAULT_AGENT_ID"):
    os.environ.pop(_name, None)
os.environ.update(BASE_ENV)


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


# The integration rig's fixtures (DynamoDB Local, the Millis simulator, a fresh ApiFunction), for every suite.
from tests.support.rig import api, ddb, dynamodb, logs, make_api, sim, simulator  # noqa: E402, F401

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
_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "DEFAULT_AGENT_ID")
_CHIME = (
    "VOICE_CONNECTOR_ARN_US_WEST",
    "VOICE_CONNECTOR_ARN_EU_WEST",
    "MILLIS_SIP_HOST_US_WEST",
    "MILLIS_SIP_HOST_EU_WEST",
)
for _name in (*_UNSET, *_CHIME, "FAILURE_MESSAGE", "BRIDGE_TIMEOUT_SECONDS", "CHIME_ANSWER_SECONDS"):
    os.environ.pop(_name, None)
os.environ.update(BASE_ENV)


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


CHIME_FIXTURES = ROOT / "tests" / "fixtures" / "chime-events"


def chime_fixture(name: str) -> dict[str, Any]:
    """A documented or captured Chime event or response (sources: tests/fixtures/chime-events/SOURCES.md)."""
    event: dict[str, Any] = json.loads((CHIME_FIXTURES / name).read_text())
    return event


# The integration rig's fixtures (DynamoDB Local, the Millis simulator, a fresh ApiFunction), for every suite.
from tests.support.rig import api, ddb, dynamodb, logs, make_api, make_sma, sim, simulator, sma  # noqa: E402, F401

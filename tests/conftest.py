"""Shared test setup. The environment a function module reads at import is set here, before any test
imports one (dev/function_env.py defines it for every local run); integration fixtures point it at DynamoDB
Local and the Millis simulator."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dev.events import EVENTS, load_event
from dev.function_env import FOREIGN, Tables, function_env

ROOT = Path(__file__).resolve().parent.parent

# Nothing listens on port 9: a unit test that reaches Millis by mistake fails at once.
UNIT_MILLIS = {
    "MILLIS_US_WEST_URL": "http://127.0.0.1:9/us-west",
    "MILLIS_EU_WEST_URL": "http://127.0.0.1:9/eu-west",
    "MILLIS_API_KEY": "unit-test-private-key",
}
BASE_ENV = function_env(tables=Tables.named("unit"), millis=UNIT_MILLIS)
for _name in FOREIGN:
    os.environ.pop(_name, None)
os.environ.update(BASE_ENV)

CHIME_FIXTURES = ROOT / "tests" / "fixtures" / "chime-events"


def chime_fixture(name: str) -> dict[str, Any]:
    """A documented or captured Chime event or response (sources: tests/fixtures/chime-events/SOURCES.md)."""
    event: dict[str, Any] = json.loads((CHIME_FIXTURES / name).read_text())
    return event


__all__ = ["BASE_ENV", "CHIME_FIXTURES", "EVENTS", "ROOT", "chime_fixture", "load_event"]

# The integration rig's fixtures (DynamoDB Local, the Millis simulator, a fresh ApiFunction), for every suite.
from tests.support.rig import (  # noqa: E402, F401
    api,
    ddb,
    dynamodb,
    inbound,
    logs,
    make_api,
    make_inbound,
    make_sma,
    sim,
    simulator,
    sma,
)

"""Integration rig, imported by tests/conftest.py: AWS's DynamoDB Local (table from template.yaml)
and the Millis simulator on loopback."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest

from dev.dynamodb_local import DynamoDBLocal
from dev.function_env import SIMULATOR_VOICE_CONNECTORS, Tables, function_env
from dev.functions import load_function
from dev.millis_simulator import MillisSimulator
from dev.template import create_tables
from millis_sip.adapters.secrets import StaticApiKey
from millis_sip.core.keys import StackKeys
from millis_sip.observability import logger

TABLES = Tables("calls-integration", "idempotency-integration", "numbers-integration")
TABLE, IDEMPOTENCY_TABLE, NUMBERS_TABLE = TABLES.calls, TABLES.idempotency, TABLES.numbers
WEBHOOK_SECRET = "integration-webhook-secret"  # the stack secret the functions under test hold
KEYS_SECRET = "integration-keys-secret"  # the keys secret they hold
STACK_KEYS = StackKeys(StaticApiKey(KEYS_SECRET))  # what a store reading their registrations must hold


@pytest.fixture(scope="session")
def ddb() -> Iterator[DynamoDBLocal]:
    with DynamoDBLocal() as server:
        create_tables(server.endpoint, TABLES)
        yield server


def ddb_client(endpoint: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-west-2")


@pytest.fixture
def dynamodb(ddb: DynamoDBLocal) -> Any:
    return ddb_client(ddb.endpoint)


@pytest.fixture(scope="session")
def simulator() -> Iterator[MillisSimulator]:
    with MillisSimulator(api_key="integration-private-key") as sim:
        yield sim


@pytest.fixture
def sim(simulator: MillisSimulator) -> Iterator[MillisSimulator]:
    simulator.reset()
    yield simulator
    simulator.reset()


VOICE_CONNECTOR_US_WEST = SIMULATOR_VOICE_CONNECTORS["VOICE_CONNECTOR_ARN_US_WEST"]
VOICE_CONNECTOR_EU_WEST = SIMULATOR_VOICE_CONNECTORS["VOICE_CONNECTOR_ARN_EU_WEST"]


def _loader(
    module: str, ddb: DynamoDBLocal, sim: MillisSimulator, monkeypatch: pytest.MonkeyPatch, **defaults: str
) -> Callable[..., ModuleType]:
    def make(**overrides: str) -> ModuleType:
        env = function_env(
            tables=TABLES,
            millis=sim.env(),
            dynamodb_endpoint=ddb.endpoint,
            webhook_secret=WEBHOOK_SECRET,
            keys_secret=KEYS_SECRET,
            extra={**defaults, **overrides},
        )
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return load_function(module)

    return make


@pytest.fixture
def make_api(ddb: DynamoDBLocal, sim: MillisSimulator, monkeypatch: pytest.MonkeyPatch) -> Callable[..., ModuleType]:
    """Loads ApiFunction's entry module as a fresh execution environment pointed at the rig."""
    return _loader("api_handler", ddb, sim, monkeypatch)


@pytest.fixture
def api(make_api: Callable[..., ModuleType]) -> ModuleType:
    return make_api()


@pytest.fixture
def make_sma(ddb: DynamoDBLocal, sim: MillisSimulator, monkeypatch: pytest.MonkeyPatch) -> Callable[..., ModuleType]:
    """Loads SipMediaAppFunction's entry module, with Voice Connectors routing to the simulator's SIP hosts."""
    return _loader("sma_handler", ddb, sim, monkeypatch, DEFAULT_AGENT_ID="phone-agent", **SIMULATOR_VOICE_CONNECTORS)


@pytest.fixture
def sma(make_sma: Callable[..., ModuleType]) -> ModuleType:
    return make_sma()


TWILIO_AUTH_TOKEN = "integration-twilio-auth-token"


@pytest.fixture
def make_inbound(
    ddb: DynamoDBLocal, sim: MillisSimulator, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., ModuleType]:
    """Loads InboundFunction's entry module (Twilio's webhooks, GET /route) pointed at the rig."""
    return _loader(
        "inbound_handler",
        ddb,
        sim,
        monkeypatch,
        DEFAULT_AGENT_ID="phone-agent",
        TWILIO_AUTH_TOKEN=TWILIO_AUTH_TOKEN,
        WEBHOOK_URL="https://bridge.example/v1/webhooks/millis",
    )


@pytest.fixture
def inbound(make_inbound: Callable[..., ModuleType]) -> ModuleType:
    return make_inbound()


class LogCapture:
    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> LogCapture:
    """Everything the functions' Powertools logger writes during the test (its handler keeps the stdout
    it was created with, so pytest's capsys does not see it)."""
    stream = io.StringIO()
    handler = logger.registered_handler
    monkeypatch.setattr(handler, "stream", stream)
    return LogCapture(stream)

"""The environment the template gives the functions, for every local run: the unit and integration tests,
the demo, the load test and the benchmarks. One definition, so that what runs locally cannot drift from one
tool to the next (the template's own variables are checked against docs/operations.md by the template tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

REGION = "us-west-2"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}  # DynamoDB Local takes any
POWERTOOLS = {
    "POWERTOOLS_SERVICE_NAME": "millis-sip-bridge",
    "POWERTOOLS_METRICS_NAMESPACE": "MillisSipBridge",
    "POWERTOOLS_TRACE_DISABLED": "true",  # the template's default (Tracing=Disabled): no X-Ray SDK import
}
# Voice Connectors routing to the Millis simulator's SIP hosts (dev/millis_simulator.py names them).
SIMULATOR_VOICE_CONNECTORS = {
    "VOICE_CONNECTOR_ARN_US_WEST": "arn:aws:chime:us-west-2:111122223333:vc/uswestconnector0000000a",
    "MILLIS_SIP_HOST_US_WEST": "sip-us-west.millis-simulator.test",
    "VOICE_CONNECTOR_ARN_EU_WEST": "arn:aws:chime:us-west-2:111122223333:vc/euwestconnector0000000b",
    "MILLIS_SIP_HOST_EU_WEST": "sip-eu-west.millis-simulator.test",
}
# Variables a developer's shell may carry that would point a local run somewhere else.
FOREIGN = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "DEFAULT_AGENT_ID",
    "FAILURE_MESSAGE",
    "BRIDGE_TIMEOUT_SECONDS",
    "CHIME_ANSWER_SECONDS",
    *SIMULATOR_VOICE_CONNECTORS,
)


@dataclass(frozen=True, slots=True)
class Tables:
    """The names of the template's tables in one local run (dev.template.create_tables makes them)."""

    calls: str
    idempotency: str
    numbers: str

    @classmethod
    def named(cls, prefix: str) -> Tables:
        return cls(f"{prefix}-calls", f"{prefix}-idempotency", f"{prefix}-numbers")

    def env(self) -> dict[str, str]:
        return {
            "CALLS_TABLE_NAME": self.calls,
            "IDEMPOTENCY_TABLE_NAME": self.idempotency,
            "NUMBERS_TABLE_NAME": self.numbers,
        }


def function_env(
    *,
    tables: Tables,
    millis: Mapping[str, str],
    dynamodb_endpoint: str | None = None,
    webhook_secret: str | None = None,
    keys_secret: str | None = None,
    default_agent_id: str | None = None,
    voice_connectors: bool = False,
    log_level: str = "INFO",
    metrics: bool = True,
    region: str = REGION,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The functions' environment. ``millis``: the Millis URLs and key (``MillisSimulator.env()``);
    ``extra``: any other variables (they win)."""
    env = {
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        **LOCAL_CREDENTIALS,
        **POWERTOOLS,
        "POWERTOOLS_LOG_LEVEL": log_level,
        "POWERTOOLS_METRICS_DISABLED": "false" if metrics else "true",
        **tables.env(),
        "MILLIS_API_KEY_SECRET_ARN": "",
        "MILLIS_REGION": "auto",
        **millis,
    }
    optional = {
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        "WEBHOOK_SECRET": webhook_secret,
        "KEYS_SECRET": keys_secret,
        "DEFAULT_AGENT_ID": default_agent_id,
    }
    env.update({name: value for name, value in optional.items() if value is not None})
    if voice_connectors:
        env.update(SIMULATOR_VOICE_CONNECTORS)
    env.update(extra or {})
    return env

"""Each phone system's patience: InboundFunction answers every route inside the patience of the phone system
behind it, less the margin for API Gateway and a cold start, and inside the function's own time; Chime's
answer time cannot be set past Chime's patience."""

from __future__ import annotations

import time
from dataclasses import replace
from types import ModuleType
from typing import Any

import pytest

from dev.functions import load_function
from dev.lambda_context import LocalContext
from millis_sip.apigw import Request, reply
from millis_sip.config import ChimeSettings
from millis_sip.core.errors import ConfigurationError
from millis_sip.edges.carriers import plivo, telnyx, twilio, vonage
from millis_sip.edges.sip_servers import ROUTE_PATH
from millis_sip.patience import MARGIN_SECONDS, PATIENCE
from tests.conftest import load_event

ROUTES = [
    ("POST", twilio.VOICE_PATH, "twilio"),
    ("POST", twilio.STATUS_PATH, "twilio"),
    ("POST", twilio.OUTBOUND_ANSWER_PATH, "twilio"),
    ("POST", twilio.OUTBOUND_STATUS_PATH, "twilio"),
    ("POST", "/carriers/twilio/transfer/whisper", "twilio"),
    ("POST", "/carriers/twilio/transfer/status", "twilio"),
    ("GET", "/carriers/vonage/transfer/whisper", "vonage"),
    ("POST", "/carriers/vonage/transfer/whisper", "vonage"),
    ("POST", "/carriers/vonage/transfer/status", "vonage"),
    ("POST", "/carriers/telnyx/transfer/whisper", "telnyx"),
    ("POST", "/carriers/telnyx/transfer/status", "telnyx"),
    ("POST", "/carriers/signalwire/transfer/whisper", "signalwire"),
    ("POST", "/carriers/signalwire/transfer/status", "signalwire"),
    ("POST", "/carriers/twilio/refer", "twilio"),
    ("POST", "/carriers/plivo/transfer/answer", "plivo"),
    ("POST", "/carriers/plivo/transfer/whisper", "plivo"),
    ("POST", "/carriers/plivo/transfer/status", "plivo"),
    ("POST", twilio.SIGNALWIRE_OUTBOUND_ANSWER_PATH, "signalwire"),
    ("POST", twilio.SIGNALWIRE_OUTBOUND_STATUS_PATH, "signalwire"),
    ("POST", telnyx.VOICE_PATH, "telnyx"),
    ("POST", telnyx.STATUS_PATH, "telnyx"),
    ("POST", telnyx.OUTBOUND_ANSWER_PATH, "telnyx"),
    ("POST", telnyx.OUTBOUND_STATUS_PATH, "telnyx"),
    ("GET", vonage.ANSWER_PATH, "vonage"),
    ("POST", vonage.ANSWER_PATH, "vonage"),
    ("POST", vonage.EVENT_PATH, "vonage"),
    ("POST", vonage.OUTBOUND_ANSWER_PATH, "vonage"),
    ("POST", vonage.OUTBOUND_STATUS_PATH, "vonage"),
    ("POST", plivo.ANSWER_PATH, "plivo"),
    ("POST", plivo.STATUS_PATH, "plivo"),
    ("POST", plivo.OUTBOUND_ANSWER_PATH, "plivo"),
    ("POST", plivo.OUTBOUND_STATUS_PATH, "plivo"),
    ("GET", ROUTE_PATH, "sip"),
    ("GET", "/route/refer", "sip"),
    ("GET", "/route/refer/status", "sip"),
]


def test_every_figure_names_its_source_and_leaves_the_margin() -> None:
    for patience in PATIENCE.values():
        assert patience.source and patience.answer_within >= 1.0
    assert MARGIN_SECONDS == 1.0


def time_given(module: ModuleType, method: str, resource: str, context: LocalContext) -> float:
    """How long the route's handler was given to answer one request (its deadline less the time it was called)."""
    given: list[float] = []

    def handle(request: Request, deadline: float) -> dict[str, Any]:
        given.append(deadline - time.monotonic())
        return reply(200, "answered")

    route = module.inbound.routes[(method, resource)]
    module.inbound.routes[(method, resource)] = replace(route, handle=handle)
    event = load_event("inbound-route.json")
    event.update(resource=resource, path=resource, httpMethod=method)
    assert module.lambda_handler(event, context)["statusCode"] == 200
    [seconds] = given
    return seconds


@pytest.mark.parametrize(("method", "resource", "phone_system"), ROUTES, ids=[f"{m} {r}" for m, r, _ in ROUTES])
def test_inbound_function_answers_inside_the_patience_of_the_phone_system_behind_each_route(
    method: str, resource: str, phone_system: str
) -> None:
    module = load_function("inbound_handler")
    assert module.inbound.routes.keys() == {(m, r) for m, r, _ in ROUTES}
    configured = module.inbound.settings.answer_seconds  # INBOUND_ANSWER_SECONDS
    given = time_given(module, method, resource, LocalContext(function_name="InboundFunction", timeout_seconds=12))
    expected = min(configured, PATIENCE[phone_system].seconds - MARGIN_SECONDS)
    assert given == pytest.approx(expected, abs=0.05)
    assert given <= PATIENCE[phone_system].seconds - MARGIN_SECONDS


def test_the_answer_times_of_the_default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INBOUND_ANSWER_SECONDS", "8.0")
    module = load_function("inbound_handler")
    context = LocalContext(function_name="InboundFunction", timeout_seconds=12)
    given = {phone_system: time_given(module, m, r, context) for m, r, phone_system in ROUTES}
    expected = {"twilio": 8.0, "telnyx": 4.0, "vonage": 4.0, "plivo": 8.0, "sip": 2.0, "signalwire": 4.0}
    assert given == pytest.approx(expected, abs=0.05)


def test_the_functions_own_time_left_still_bounds_the_answer() -> None:
    module = load_function("inbound_handler")
    nearly_out = LocalContext(function_name="InboundFunction", timeout_seconds=2.0)
    assert time_given(module, "POST", twilio.VOICE_PATH, nearly_out) == pytest.approx(1.5, abs=0.05)


def test_chimes_answer_time_cannot_reach_chimes_patience() -> None:
    assert ChimeSettings.from_env({}).answer_seconds <= PATIENCE["chime"].answer_within
    with pytest.raises(ConfigurationError):
        ChimeSettings.from_env({"CHIME_ANSWER_SECONDS": str(PATIENCE["chime"].seconds)})


def test_signalwire_on_the_twilio_routes_is_answered_inside_signalwires_own_patience() -> None:
    module = load_function("inbound_handler")
    context = LocalContext(function_name="InboundFunction", timeout_seconds=12)
    given: list[float] = []

    def handle(request: Request, deadline: float) -> dict[str, Any]:
        given.append(deadline - time.monotonic())
        return reply(200, "answered")

    route = module.inbound.routes[("POST", twilio.VOICE_PATH)]
    module.inbound.routes[("POST", twilio.VOICE_PATH)] = replace(route, handle=handle)
    event = load_event("inbound-twilio-voice.json")
    event["headers"] = {**event["headers"], "X-SignalWire-Signature": "signed"}
    module.lambda_handler(event, context)
    assert given == [pytest.approx(PATIENCE["signalwire"].answer_within, abs=0.05)]


def test_signalwires_routes_share_the_twilio_credential_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """SignalWire's outbound and transfer routes are checked with the Twilio credential's secret: one source, so
    one Secrets Manager read and one SnapStart refresh, not two."""
    monkeypatch.setenv("TWILIO_AUTH_TOKEN_SECRET_ARN", "arn:aws:secretsmanager:us-west-2:123456789012:secret:tw-AbCdEf")
    module = load_function("inbound_handler")
    voice = module.inbound.routes[("POST", twilio.VOICE_PATH)].handle.__self__
    placed = module.inbound.routes[("POST", twilio.SIGNALWIRE_OUTBOUND_ANSWER_PATH)].handle.__self__
    assert placed._webhooks._credential is voice._credential
    assert voice._credential is not None

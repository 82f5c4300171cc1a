"""The phone path's budget under faults: DynamoDB or Secrets Manager that hang (a black hole on loopback that
accepts and never answers) cost a phone call at most its answer time, and the caller is bridged or hears the
failure message, never silence. Bounds are generous (this proves a budget, it does not benchmark): the answer
time plus one second."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from dev.lambda_context import LocalContext
from millis_sip.config import ChimeSettings, InboundSettings
from millis_sip.core.ports import STORE_BUDGET_SECONDS
from tests.conftest import load_event
from tests.support.blackhole import BlackHole
from tests.support.rig import TWILIO_AUTH_TOKEN

pytestmark = pytest.mark.integration
SECRET_ARN = "arn:aws:secretsmanager:us-west-2:123456789012:secret:millis-sip-bridge/test-AbCdEf"
CHIME_ANSWER = ChimeSettings.from_env({}).answer_seconds
INBOUND_ANSWER = InboundSettings.from_env({}).answer_seconds


@pytest.fixture
def hole() -> Iterator[BlackHole]:
    with BlackHole() as black_hole:
        yield black_hole


def new_call() -> dict[str, Any]:
    event = load_event("sma-new-inbound-call.json")
    event["CallDetails"]["TransactionId"] = f"budget-{uuid.uuid4()}"
    event["CallDetails"]["Participants"][0]["From"] = "+1206" + str(uuid.uuid4().int)[:7]
    return event


def timed(handler: Callable[[dict[str, Any], Any], dict[str, Any]], event: dict[str, Any]) -> tuple[Any, float]:
    started = time.monotonic()
    answer = handler(event, LocalContext())
    return answer, time.monotonic() - started


def actions(answer: dict[str, Any]) -> list[str]:
    return [action["Type"] for action in answer["Actions"]]


def test_dynamodb_hanging_still_bridges_a_chime_call_in_time(
    make_sma: Callable[..., ModuleType], sim: Any, hole: BlackHole
) -> None:
    sma = make_sma(AWS_ENDPOINT_URL_DYNAMODB=hole.url)
    answer, took = timed(sma.lambda_handler, new_call())
    assert actions(answer) == ["CallAndBridge"]  # the record rides with the call (TransactionAttributes)
    assert answer["TransactionAttributes"]["millis_call_id"].startswith("sim-")
    assert took < CHIME_ANSWER + 1


def test_the_millis_key_hanging_in_secrets_manager_gets_the_failure_message_in_time(
    make_sma: Callable[..., ModuleType], sim: Any, hole: BlackHole
) -> None:
    sma = make_sma(MILLIS_API_KEY="", MILLIS_API_KEY_SECRET_ARN=SECRET_ARN, AWS_ENDPOINT_URL_SECRETS_MANAGER=hole.url)
    answer, took = timed(sma.lambda_handler, new_call())
    assert actions(answer) == ["Speak", "Hangup"]
    assert answer["TransactionAttributes"]["failure_reason"] == "millis_key_unavailable"
    assert took < CHIME_ANSWER + 1
    assert sim.registrations() == []


def test_the_keys_secret_hanging_skips_the_lookup_and_still_bridges_in_time(
    make_sma: Callable[..., ModuleType], sim: Any, hole: BlackHole
) -> None:
    sma = make_sma(KEYS_SECRET="", KEYS_SECRET_ARN=SECRET_ARN, AWS_ENDPOINT_URL_SECRETS_MANAGER=hole.url)
    answer, took = timed(sma.lambda_handler, new_call())
    assert actions(answer) == ["CallAndBridge"]
    assert took < CHIME_ANSWER + 1


def test_the_keys_secret_hanging_with_a_cap_set_still_bridges_in_time(
    make_sma: Callable[..., ModuleType], sim: Any, hole: BlackHole
) -> None:
    # The counter of a number's hourly cap is keyed by the keys secret: its read belongs to the count's budget,
    # and a count that cannot be made lets the call through (it was refused after 3.75 s).
    sma = make_sma(
        KEYS_SECRET="",
        KEYS_SECRET_ARN=SECRET_ARN,
        AWS_ENDPOINT_URL_SECRETS_MANAGER=hole.url,
        DEFAULT_AGENT_CALLS_PER_HOUR="5",
        DEFAULT_AGENT_CALLS_PER_HOUR_TOTAL="50",
    )
    answer, took = timed(sma.lambda_handler, new_call())
    assert actions(answer) == ["CallAndBridge"], answer
    assert took < CHIME_ANSWER + 1


def test_a_failed_bridge_with_dynamodb_hanging_still_tries_the_other_region_in_time(
    make_sma: Callable[..., ModuleType], sim: Any, hole: BlackHole
) -> None:
    # Writing `failed` before deciding on the failover took 3.47 s with DynamoDB hanging, and skipped the other
    # region: the write now has the store's budget like every other round trip of the call.
    sma = make_sma(AWS_ENDPOINT_URL_DYNAMODB=hole.url)
    first = new_call()
    bridging = sma.lambda_handler(first, LocalContext())
    assert actions(bridging) == ["CallAndBridge"]
    failed = load_event("sma-bridge-failed.json")
    failed["CallDetails"]["TransactionId"] = first["CallDetails"]["TransactionId"]
    failed["CallDetails"]["TransactionAttributes"] = bridging["TransactionAttributes"]
    answer, took = timed(sma.lambda_handler, failed)
    assert actions(answer) == ["CallAndBridge"], answer
    assert [r.region for r in sim.registrations()] == ["us-west", "eu-west"]
    assert took < CHIME_ANSWER + 1


def twilio_call(token: str) -> dict[str, Any]:
    """events/inbound-twilio-voice.json as a new call, signed the way Twilio signs it."""
    event = copy.deepcopy(load_event("inbound-twilio-voice.json"))
    params = dict(parse_qsl(event["body"]))
    params.update(CallSid=f"CA{uuid.uuid4().hex}", From="+1206" + str(uuid.uuid4().int)[:7])
    event["body"] = urlencode(params)
    url = f"https://{event['requestContext']['domainName']}{event['requestContext']['path']}"
    event["headers"]["X-Twilio-Signature"] = RequestValidator(token).compute_signature(url, params)
    return event


def test_dynamodb_hanging_still_answers_twilio_with_a_dial_in_time(
    make_inbound: Callable[..., ModuleType], sim: Any, hole: BlackHole
) -> None:
    inbound = make_inbound(AWS_ENDPOINT_URL_DYNAMODB=hole.url)
    answer, took = timed(inbound.lambda_handler, twilio_call(TWILIO_AUTH_TOKEN))
    assert answer["statusCode"] == 200
    assert "<Dial" in answer["body"] and "<Sip>sip:call-sim-" in answer["body"], json.dumps(answer)
    assert took < INBOUND_ANSWER + 1


def test_a_carrier_credential_hanging_in_secrets_manager_is_a_refusal_in_time(
    make_inbound: Callable[..., ModuleType], sim: Any, hole: BlackHole
) -> None:
    inbound = make_inbound(
        TWILIO_AUTH_TOKEN="", TWILIO_AUTH_TOKEN_SECRET_ARN=SECRET_ARN, AWS_ENDPOINT_URL_SECRETS_MANAGER=hole.url
    )
    answer, took = timed(inbound.lambda_handler, twilio_call(TWILIO_AUTH_TOKEN))
    assert answer["statusCode"] == 503, answer  # Twilio then plays its fallback URL's answer, or retries
    assert answer["headers"]["Retry-After"] == "1"
    assert took < INBOUND_ANSWER + 1
    assert sim.registrations() == []


def twilio_status(call: dict[str, Any], query: str = "", **fields: str) -> dict[str, Any]:
    """The <Dial> action of ``call`` (an event from ``twilio_call``), signed as Twilio signs it."""
    event = copy.deepcopy(call)
    params = {**dict(parse_qsl(event["body"])), **fields}
    event["body"] = urlencode(params)
    for name in ("path", "resource"):
        event[name] = "/carriers/twilio/status"
    event["requestContext"]["path"] = event["requestContext"]["path"].replace("/voice", "/status")
    event["requestContext"]["resourcePath"] = "/carriers/twilio/status"
    pairs = parse_qsl(query)
    event["queryStringParameters"] = dict(pairs) or None
    event["multiValueQueryStringParameters"] = {name: [value] for name, value in pairs} or None
    url = f"https://{event['requestContext']['domainName']}{event['requestContext']['path']}"
    url += f"?{query}" if query else ""
    event["headers"]["X-Twilio-Signature"] = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, params)
    return event


def test_dynamodb_hanging_at_the_dial_action_still_answers_the_caller_in_time(
    make_inbound: Callable[..., ModuleType], sim: Any, hole: BlackHole
) -> None:
    # The call was bridged and recorded; then DynamoDB stops answering before Twilio reports that the leg to Millis
    # went unanswered. The record cannot be read within the store's budget, and without it no other region can be
    # chosen (which region failed, whether the stack made the registration): the caller hears the failure
    # message, within the answer time, never Twilio's silence or its application error.
    inbound = make_inbound()
    call = twilio_call(TWILIO_AUTH_TOKEN)
    answer, _ = timed(inbound.lambda_handler, call)
    assert "<Dial" in answer["body"], answer
    inbound = make_inbound(AWS_ENDPOINT_URL_DYNAMODB=hole.url)  # the same function, its DynamoDB now a black hole
    answer, took = timed(inbound.lambda_handler, twilio_status(call, DialCallStatus="no-answer"))
    assert answer["statusCode"] == 200, answer
    assert "<Say" in answer["body"] and answer["body"].endswith("<Hangup /></Response>"), answer["body"]
    assert took < INBOUND_ANSWER + 1
    assert len(sim.registrations()) == 1


def test_the_keys_secret_hanging_when_a_token_is_checked_is_a_503_in_time(
    make_inbound: Callable[..., ModuleType], sim: Any, hole: BlackHole
) -> None:
    inbound = make_inbound(KEYS_SECRET="", KEYS_SECRET_ARN=SECRET_ARN, AWS_ENDPOINT_URL_SECRETS_MANAGER=hole.url)
    status = twilio_status(
        twilio_call(TWILIO_AUTH_TOKEN), "attempt=2&token=AAAAAAAAAAAAAAAAAAAAAA", DialCallStatus="failed"
    )
    answer, took = timed(inbound.lambda_handler, status)
    assert answer["statusCode"] == 503, answer  # Twilio retries; nothing was read or changed
    assert answer["headers"]["Retry-After"] == "1"
    assert took < INBOUND_ANSWER + 1


@pytest.mark.parametrize("name", ["sma-bridge-succeeded.json", "sma-hangup-caller.json"])
def test_a_chime_calls_later_moves_give_up_on_a_hanging_dynamodb_after_the_stores_budget(
    make_sma: Callable[..., ModuleType], sim: Any, hole: BlackHole, name: str
) -> None:
    # Bridged and hung up are written within the store's budget like every other round trip of the call
    # (botocore's own timeouts, a second and one retry, took 2-3.5 s).
    sma = make_sma(AWS_ENDPOINT_URL_DYNAMODB=hole.url)
    first = new_call()
    bridging = sma.lambda_handler(first, LocalContext())
    later = load_event(name)
    later["CallDetails"]["TransactionId"] = first["CallDetails"]["TransactionId"]
    later["CallDetails"]["TransactionAttributes"] = bridging["TransactionAttributes"]
    answer, took = timed(sma.lambda_handler, later)
    assert "Actions" in answer
    assert took < STORE_BUDGET_SECONDS + 0.5

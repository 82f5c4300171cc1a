"""Property-based tests (hypothesis) over everything a client or Chime controls: request bodies, headers,
query strings and path parameters of every route, webhook payloads, and SIP media application events.
No exception escapes a handler, no input a client controls gets a 5xx, and nothing reaches Millis or
DynamoDB from a request the API refuses."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dev.functions import load_function
from dev.lambda_context import LocalContext
from millis_sip.edges.chime.events import SmaEvent
from tests.conftest import load_event
from tests.support.invoke import FakeApi
from tests.support.sma_schema import validate_response
from tests.unit.chime.rig import CHIME, make_app

# Deterministic in the test command (CI must not fail at random); HYPOTHESIS_EXPLORE=1 searches afresh.
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("HYPOTHESIS_EXPLORE") != "1",
)

# Every JSON value, and the numbers JSON writers emit that nothing downstream takes (NaN, Infinity, 1e999,
# integers of thousands of digits): each must be a 400 that names its field, never a 5xx.
numbers = st.integers() | st.floats() | st.sampled_from([10**400, -(10**30), 2**53, 2**64])
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)
fields = st.sampled_from(["agent_id", "agent_config", "metadata", "include_metadata_in_prompt", "lookup_key", "x"])
bodies = st.one_of(
    st.dictionaries(fields, json_values, max_size=6).map(json.dumps),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000]).map(
        lambda number: f'{{"agent_id": "a", "metadata": {{"n": {number}}}, "agent_config": {{"n": [{number}]}}}}'
    ),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda raw: base64.b64encode(raw).decode()),
)
header_values = st.text(st.characters(codec="latin-1"), max_size=60)


@pytest.fixture(scope="module", autouse=True)
def _fresh_environment() -> None:
    load_function("api_handler")


WEBHOOK_SECRET = "unit-webhook-secret"


def fresh() -> FakeApi:
    """A fresh management API (ApiFunction's wiring over in-memory ports) for one example."""
    return FakeApi(stack_secret=WEBHOOK_SECRET)


def call(api: FakeApi, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = api.lambda_handler(event, LocalContext())
    body = json.loads(response["body"])
    assert isinstance(body, dict)
    return response["statusCode"], body


@SETTINGS
@given(body=bodies, base64_encoded=st.booleans(), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_post_calls_never_fails_with_5xx_and_refused_requests_touch_nothing(
    body: str, base64_encoded: bool, content_type: str
) -> None:
    event = load_event("api-create-call.json")
    event["body"], event["isBase64Encoded"] = body, base64_encoded
    event["headers"]["Content-Type"] = content_type
    event["multiValueHeaders"]["Content-Type"] = [content_type]
    api = fresh()
    status, answer = call(api, event)
    assert status < 500, answer
    if status != 201:
        assert "error" in answer and "message" in answer
        assert api.gateway.calls == [] and api.store.items == {}


@SETTINGS
@given(key=header_values, body=st.fixed_dictionaries({"agent_id": st.just("a")}))
def test_any_idempotency_key_is_accepted_or_refused_cleanly(key: str, body: dict[str, str]) -> None:
    event = load_event("api-create-call.json")
    event["body"] = json.dumps(body)
    event["headers"]["Idempotency-Key"] = key
    event["multiValueHeaders"]["Idempotency-Key"] = [key]
    api = fresh()
    status, answer = call(api, event)
    assert status in (201, 400), answer
    assert (status == 201) == (len(api.gateway.calls) == 1)


@SETTINGS
@given(value=st.text(max_size=300), name=st.sampled_from(["lookup_key", "other"]))
def test_lookups_with_any_query_string(value: str, name: str) -> None:
    event = load_event("api-lookup-call.json")
    event["queryStringParameters"] = {name: value}
    event["multiValueQueryStringParameters"] = {name: [value]}
    api = fresh()
    status, answer = call(api, event)
    assert status in (400, 404), answer
    if status == 400:
        assert api.store.operations == 0


@SETTINGS
@given(call_id=st.text(max_size=300))
def test_get_with_any_path_parameter(call_id: str) -> None:
    event = load_event("api-get-call.json")
    event["pathParameters"] = {"call_id": call_id}
    api = fresh()
    status, answer = call(api, event)
    assert status in (400, 404), answer
    if status == 400:
        assert api.store.operations == 0


@SETTINGS
@given(body=bodies, secret=st.one_of(st.none(), header_values, st.just(WEBHOOK_SECRET)))
def test_the_webhook_with_any_body_and_secret(body: str, secret: str | None) -> None:
    event = load_event("api-millis-webhook.json")
    event["body"] = body
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("X-Webhook-Secret", None)
    if secret is not None:
        event["headers"]["X-Webhook-Secret"] = secret
    api = fresh()
    status, answer = call(api, event)
    assert status < 500, answer
    if secret != WEBHOOK_SECRET:  # no call holds it, and it is not the stack secret: refused, nothing written
        assert status in (400, 401, 413, 415), answer
        assert api.store.items == {}
        if secret is None or len(secret) < 16:  # refused before the body is read
            assert status == 401 and api.store.operations == 0
    assert api.gateway.calls == []


# --- SIP media application events ----------------------------------------------------------------------------

texts = st.one_of(st.none(), st.integers(), st.text(max_size=40), st.sampled_from(["LEG-A", "Leg-B", "leg-a", ""]))
participants = st.lists(
    st.dictionaries(
        st.sampled_from(["CallId", "ParticipantTag", "To", "From", "Direction", "StartTimeInMilliseconds", "Status"]),
        st.one_of(texts, st.sampled_from(["Inbound", "Outbound", "Connected", "Disconnected", "+14155550100"])),
    ),
    max_size=3,
)
events = st.fixed_dictionaries(
    {
        "SchemaVersion": st.sampled_from(["1.0", "2.0"]),
        "Sequence": st.one_of(st.integers(), st.text(max_size=5)),
        "InvocationEventType": st.sampled_from(
            [
                "NEW_INBOUND_CALL",
                "ACTION_SUCCESSFUL",
                "ACTION_FAILED",
                "HANGUP",
                "INVALID_LAMBDA_RESPONSE",
                "RINGING",
                "CALL_UPDATE_REQUESTED",
                "NEW_KIND_OF_EVENT",
            ]
        ),
        "ActionData": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {
                    "Type": st.sampled_from(["CallAndBridge", "Hangup", "Speak", "ReceiveDigits"]),
                    "Parameters": json_values,
                }
            ),
        ),
        "CallDetails": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {
                    "TransactionId": texts,
                    "Participants": participants,
                    "TransactionAttributes": st.dictionaries(
                        st.sampled_from(["millis_call_id", "sip_uri", "millis_region", "attempt", "bridged_at", "x"]),
                        st.one_of(st.text(max_size=30), st.integers()),
                    ),
                }
            ),
        ),
    }
)


@SETTINGS
@given(event=st.one_of(events, json_values))
def test_every_sip_media_application_event_gets_a_valid_answer(event: Any) -> None:
    app, _, _, clock = make_app()
    answer = app.handle(SmaEvent.parse(event), deadline=clock.monotonic() + CHIME.answer_seconds)
    validate_response(answer)

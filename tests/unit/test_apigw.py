"""The call path's reading of API Gateway REST proxy events (millis_sip.apigw): real events from the reference
set (tests/fixtures/chime-events/SOURCES.md), and the URL a carrier signed rebuilt for each way the API can be
reached: the execute-api domain (stage in the path), a custom domain with a base path mapping (base path in the
path), and PUBLIC_BASE_URL in front of either."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from millis_sip.apigw import MAX_BODY_BYTES, BadRequest, Request, reply
from tests.conftest import chime_fixture


def carrier_event(*, path: str, context_path: str, domain: str, query: dict[str, list[str]] | None = None) -> Any:
    event = copy.deepcopy(chime_fixture("apigw_v1_4.json"))  # SAM's REST proxy event
    event.update(
        resource="/carriers/twilio/voice",
        path=path,
        pathParameters=None,
        multiValueQueryStringParameters=query,
        queryStringParameters={k: v[-1] for k, v in query.items()} if query else None,
    )
    event["requestContext"].update(path=context_path, domainName=domain, resourcePath="/carriers/twilio/voice")
    return event


def test_real_rest_events_are_read_with_their_bodies_and_parameters() -> None:
    plain = Request.parse(chime_fixture("apigw_v1_1.json"))
    assert (plain.method, plain.resource, plain.path) == ("GET", "/my/path", "/my/path")
    assert plain.body == b"Hello from Lambda!"
    encoded = Request.parse(chime_fixture("apigw_v1_4.json"))  # isBase64Encoded
    assert encoded.body == b'{"test":"body"}'
    go = Request.parse(chime_fixture("apigw_v1_3.json"))  # no isBase64Encoded key at all
    assert go.query == {"name": "me"} and go.headers["content-type"] == "application/json"
    assert go.request_id == "deef4878-7910-11e6-8f14-25afc3e9ae33"


def test_the_url_on_the_execute_api_domain_keeps_the_stage() -> None:
    event = carrier_event(
        path="/carriers/twilio/voice",
        context_path="/v1/carriers/twilio/voice",
        domain="abc123.execute-api.us-west-2.amazonaws.com",
        query={"pin": ["none"]},
    )
    request = Request.parse(event)
    assert request.url == "https://abc123.execute-api.us-west-2.amazonaws.com/v1/carriers/twilio/voice?pin=none"


def test_the_url_on_a_custom_domain_keeps_its_base_path() -> None:
    # With a base path mapping, API Gateway puts the base path in path and requestContext.path, no stage.
    event = carrier_event(
        path="/bridge/carriers/twilio/voice", context_path="/bridge/carriers/twilio/voice", domain="voice.example.com"
    )
    assert Request.parse(event).url == "https://voice.example.com/bridge/carriers/twilio/voice"


@pytest.mark.parametrize("path", ["/carriers/twilio/voice", "/bridge/carriers/twilio/voice"])
def test_public_base_url_is_followed_by_the_routes_own_path_once(path: str) -> None:
    event = carrier_event(path=path, context_path=path, domain="voice.example.com")
    request = Request.parse(event, public_base_url="https://voice.example.com/bridge/")
    assert request.url == "https://voice.example.com/bridge/carriers/twilio/voice"


def test_every_query_value_is_in_the_url_in_order_and_percent_encoded() -> None:
    event = carrier_event(
        path="/carriers/twilio/voice",
        context_path="/v1/carriers/twilio/voice",
        domain="d.example",
        query={"to": ["+1 415"], "x": ["1", "2"]},
    )
    request = Request.parse(event)
    assert request.url.endswith("/voice?to=%2B1%20415&x=1&x=2")
    assert request.query_pairs == (("to", "+1 415"), ("x", "1"), ("x", "2"))
    assert request.query["x"] == "2"  # the last value, as queryStringParameters has it


@pytest.mark.parametrize(
    ("body", "is_b64", "problem"),
    [
        ("not base64!", True, "not valid base64"),
        ("x" * (MAX_BODY_BYTES + 1), False, "larger than"),
    ],
)
def test_an_unreadable_body_is_a_bad_request(body: str, is_b64: bool, problem: str) -> None:
    event = {**chime_fixture("apigw_v1_1.json"), "body": body, "isBase64Encoded": is_b64}
    with pytest.raises(BadRequest, match=problem):
        Request.parse(event)


def test_a_form_body_is_read_in_order_and_a_broken_one_is_a_bad_request() -> None:
    event = {
        **chime_fixture("apigw_v1_1.json"),
        "body": "From=%2B14155550100&To=%2B1505&From=x",
        "isBase64Encoded": False,
    }
    assert Request.parse(event).form() == [("From", "+14155550100"), ("To", "+1505"), ("From", "x")]
    latin = base64.b64encode("From=\xe9".encode("latin-1")).decode()
    with pytest.raises(BadRequest, match="UTF-8"):
        Request.parse({**event, "body": latin, "isBase64Encoded": True}).form()
    with pytest.raises(BadRequest, match="form-encoded"):
        Request.parse({**event, "body": "a=1&&&=&b"}).form()


def test_a_reply_is_a_proxy_answer() -> None:
    assert reply(503, "later", headers={"Retry-After": "1"}) == {
        "statusCode": 503,
        "headers": {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "1"},
        "multiValueHeaders": {},
        "body": "later",
        "isBase64Encoded": False,
    }

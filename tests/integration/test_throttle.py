"""The template's throttles and API keys, enforced by the local API as API Gateway enforces them: a flood on the
Millis webhook (a route without an API key) is cut to its method throttle, never reaches the function past it, and
leaves the keyed routes and the carriers' routes answering; each API key has its own usage plan, and the SIP
servers' key opens GET /route only. The clock is a fake one: the counts are exact."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import httpx
import pytest

from dev.local_api import LocalApi, TokenBucket, local_api_key_id
from dev.template import api_keys, method_throttles, usage_plan_throttle

pytestmark = pytest.mark.integration
API_KEY = "throttle-test-key"
SIP_SERVER_KEY = "throttle-test-sip-server-key"
FLOOD_WORKERS = 8


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counted:
    """A function's handler that counts its invocations per route."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], dict[str, Any]]) -> None:
        self.handler = handler
        self.calls: Counter[str] = Counter()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.calls[f"{event['httpMethod']} {event['resource']}"] += 1
        return self.handler(event, context)


def test_the_template_declares_the_throttles_the_local_api_enforces() -> None:
    throttles = method_throttles()
    assert throttles[("POST", "/webhooks/millis")] == (20.0, 40.0)  # OpenRoutesRateLimit, OpenRoutesBurstLimit
    assert throttles[("POST", "/carriers/twilio/voice")] == (20.0, 40.0)
    assert ("GET", "/calls/{call_id}") not in throttles  # keyed: the usage plan's throttle applies
    assert usage_plan_throttle() == (50.0, 100.0)  # ApiThrottleRateLimit, ApiThrottleBurstLimit
    assert method_throttles(parameters={"OpenRoutesRateLimit": 2})[("POST", "/webhooks/millis")] == (2.0, 40.0)


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=20, burst=40, clock=clock)
    assert sum(bucket.take() for _ in range(100)) == 40
    clock.now += 0.5
    assert sum(bucket.take() for _ in range(100)) == 10
    clock.now += 3600  # a long quiet spell refills to the burst, never past it
    assert sum(bucket.take() for _ in range(100)) == 40


def flood(client: httpx.Client, requests: int) -> list[httpx.Response]:
    """Unauthenticated POST /webhooks/millis requests (no X-Webhook-Secret), sent concurrently."""
    with ThreadPoolExecutor(FLOOD_WORKERS) as pool:
        return list(pool.map(lambda _: client.post("/webhooks/millis", json={"call_id": "flood"}), range(requests)))


def test_a_webhook_flood_gets_429s_past_the_burst_and_other_routes_still_answer(
    make_api: Callable[..., ModuleType], make_inbound: Callable[..., ModuleType]
) -> None:
    clock = FakeClock()
    api, inbound = Counted(make_api().lambda_handler), Counted(make_inbound().lambda_handler)
    server = LocalApi(api, api_key=API_KEY, port=0, functions={"InboundFunction": inbound}, throttle=True, clock=clock)
    rate, burst = method_throttles()[("POST", "/webhooks/millis")]
    with server, httpx.Client(base_url=server.url, timeout=10, limits=httpx.Limits(max_connections=32)) as client:
        first = flood(client, 100)
        assert api.calls["POST /webhooks/millis"] == burst
        statuses = Counter(r.status_code for r in first)
        assert statuses == {401: burst, 429: 100 - burst}  # the function refuses what it gets; the rest never reach it
        throttled = [r for r in first if r.status_code == 429]
        assert all(r.json() == {"message": "Too Many Requests"} for r in throttled)

        # Meanwhile a keyed route and a carrier route answer: their buckets are their own.
        keyed = client.get("/openapi.json", headers={"x-api-key": API_KEY})
        assert keyed.status_code == 200 and "paths" in keyed.json()
        carrier = client.post("/carriers/twilio/voice", data={"CallSid": "CAflood", "From": "+12065550100"})
        assert carrier.status_code == 403  # refused by the function (no Twilio signature), not throttled
        assert inbound.calls["POST /carriers/twilio/voice"] == 1

        # A second later the webhook's bucket holds `rate` more requests, and no more.
        clock.now += 1.0
        second = flood(client, 50)
        assert Counter(r.status_code for r in second) == {401: rate, 429: 50 - rate}
        assert api.calls["POST /webhooks/millis"] == rate + burst  # never more than rate + burst reached it
        assert client.post("/carriers/twilio/voice", data={"CallSid": "CAflood2"}).status_code == 403


def test_the_usage_plan_throttles_each_api_key_on_the_keyed_routes(make_api: Callable[..., ModuleType]) -> None:
    clock = FakeClock()
    api = Counted(make_api().lambda_handler)
    parameters = {"ApiThrottleRateLimit": 1, "ApiThrottleBurstLimit": 3}
    with (
        LocalApi(api, api_key=API_KEY, port=0, throttle=True, parameters=parameters, clock=clock) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        answers = [client.get("/openapi.json", headers={"x-api-key": API_KEY}).status_code for _ in range(5)]
        assert answers == [200, 200, 200, 429, 429]
        assert client.get("/openapi.json").status_code == 403  # no key: refused before any throttle
        # The webhook (no key) has its own method throttle and is not counted against the key.
        assert client.post("/webhooks/millis", content=json.dumps({})).status_code == 401
        clock.now += 1.0
        assert client.get("/openapi.json", headers={"x-api-key": API_KEY}).status_code == 200
    assert api.calls["GET /openapi.json"] == 4


def test_throttling_is_off_unless_asked(make_api: Callable[..., ModuleType]) -> None:
    api = Counted(make_api().lambda_handler)
    with LocalApi(api, api_key=API_KEY, port=0) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert server.throttles is None
        assert {r.status_code for r in flood(client, 60)} == {401}
    assert api.calls["POST /webhooks/millis"] == 60


# --- the SIP servers' API key ------------------------------------------------------------------------------------


def test_the_template_gives_each_api_key_its_own_usage_plan() -> None:
    plans = api_keys()
    assert set(plans) == {"MillisApiApiKey", "SipServerApiKey"}
    assert plans["MillisApiApiKey"].throttle == usage_plan_throttle() and not plans["MillisApiApiKey"].methods
    sip = plans["SipServerApiKey"]  # SipServerThrottleRateLimit, SipServerThrottleBurstLimit
    sip_routes = {("GET", "/route"), ("GET", "/route/refer"), ("GET", "/route/refer/status")}  # and its REFER routes
    assert sip.methods == dict.fromkeys(sip_routes, (20.0, 40.0)) and sip.throttle == (20.0, 40.0)
    overridden = api_keys(parameters={"SipServerThrottleRateLimit": 2, "SipServerThrottleBurstLimit": 3})
    assert overridden["SipServerApiKey"].methods[("GET", "/route")] == (2.0, 3.0)


def sip_server_api(
    make_api: Callable[..., ModuleType], make_inbound: Callable[..., ModuleType], **options: Any
) -> tuple[LocalApi, Counted, Counted]:
    """The local API with both keys, ApiFunction told the SIP servers' key's id as the template tells it."""
    api = Counted(make_api(SIP_SERVER_API_KEY_ID=local_api_key_id("SipServerApiKey")).lambda_handler)
    inbound = Counted(make_inbound().lambda_handler)
    server = LocalApi(
        api,
        api_key=API_KEY,
        api_keys={"SipServerApiKey": SIP_SERVER_KEY},
        port=0,
        functions={"InboundFunction": inbound},
        **options,
    )
    return server, api, inbound


def route_query() -> dict[str, str]:
    return {"to": "+15055550144", "from": "+1206" + str(uuid.uuid4().int)[:7], "call": f"{uuid.uuid4()}@pbx.example"}


def test_the_sip_servers_key_opens_get_route_and_nothing_else(
    make_api: Callable[..., ModuleType], make_inbound: Callable[..., ModuleType]
) -> None:
    server, api, inbound = sip_server_api(make_api, make_inbound)
    sip = {"x-api-key": SIP_SERVER_KEY}
    with server, httpx.Client(base_url=server.url, timeout=10) as client:
        routed = client.get("/route", params=route_query(), headers=sip)
        assert routed.status_code == 200, routed.text
        assert routed.json()["sip_uri"].startswith("sip:call-sim-")
        refused = [
            client.put("/numbers/%2B15055550144", json={"agent_id": "attacker-agent"}, headers=sip),
            client.post("/calls", json={"agent_id": "my-agent-id", "lookup_key": "+14155550100"}, headers=sip),
            client.get("/calls", params={"lookup_key": "+14155550100"}, headers=sip),
        ]
        for answer in refused:
            assert answer.status_code == 403, answer.text
            assert answer.json()["error"] == "forbidden"  # ApiFunction's refusal, not API Gateway's
        # The main key keeps working on GET /route (SIP servers set up with it) and everywhere else.
        assert client.get("/route", params=route_query(), headers={"x-api-key": API_KEY}).status_code == 200
        assert client.get("/numbers/%2B15055550144", headers={"x-api-key": API_KEY}).status_code == 404
        # Neither key, or another: API Gateway's own 403.
        assert client.get("/route", params=route_query(), headers={"x-api-key": "nope"}).json() == {
            "message": "Forbidden"
        }
    assert inbound.calls["GET /route"] == 2
    assert api.calls == Counter(
        {"PUT /numbers/{number}": 1, "POST /calls": 1, "GET /calls": 1, "GET /numbers/{number}": 1}
    )


def test_the_local_api_hands_the_functions_the_key_and_its_id_on_keyed_routes_only(
    make_api: Callable[..., ModuleType], make_inbound: Callable[..., ModuleType]
) -> None:
    seen: list[dict[str, Any]] = []

    def recording(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(event["requestContext"]["identity"])
        return {"statusCode": 204, "body": ""}

    server = LocalApi(
        recording,
        api_key=API_KEY,
        api_keys={"SipServerApiKey": SIP_SERVER_KEY},
        port=0,
        functions={"InboundFunction": recording},
    )
    with server, httpx.Client(base_url=server.url, timeout=10) as client:
        client.get("/route", headers={"x-api-key": SIP_SERVER_KEY})
        client.get("/openapi.json", headers={"x-api-key": API_KEY})
        client.post("/webhooks/millis", headers={"x-api-key": SIP_SERVER_KEY})  # a route without a key
    assert [(i["apiKey"], i["apiKeyId"]) for i in seen] == [
        (SIP_SERVER_KEY, local_api_key_id("SipServerApiKey")),
        (API_KEY, local_api_key_id("MillisApiApiKey")),
        (None, None),
    ]
    with pytest.raises(ValueError, match="not API keys of the template"):
        LocalApi(recording, api_key=API_KEY, api_keys={"SipServerKey": "typo"}, port=0)


def test_each_key_is_throttled_by_its_own_usage_plan(
    make_api: Callable[..., ModuleType], make_inbound: Callable[..., ModuleType]
) -> None:
    clock = FakeClock()
    parameters = {"SipServerThrottleRateLimit": 1, "SipServerThrottleBurstLimit": 2}
    server, api, inbound = sip_server_api(make_api, make_inbound, throttle=True, parameters=parameters, clock=clock)
    sip, main = {"x-api-key": SIP_SERVER_KEY}, {"x-api-key": API_KEY}
    with server, httpx.Client(base_url=server.url, timeout=10) as client:
        answers = [client.get("/route", params=route_query(), headers=sip).status_code for _ in range(4)]
        assert answers == [200, 200, 429, 429]
        # The main key's plan is its own: the SIP servers' exhausted bucket does not touch it.
        assert client.get("/route", params=route_query(), headers=main).status_code == 200
        # The rest of what the SIP servers' key sends has the plan's own bucket: refused by ApiFunction, then
        # throttled before it reaches it.
        other = [client.get("/numbers", headers=sip).status_code for _ in range(3)]
        assert other == [403, 403, 429]
        clock.now += 1.0
        assert client.get("/route", params=route_query(), headers=sip).status_code == 200
        assert client.get("/route", params=route_query(), headers=sip).status_code == 429
    assert inbound.calls["GET /route"] == 4
    assert api.calls["GET /numbers"] == 2

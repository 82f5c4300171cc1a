"""ApiFunction routes and error mapping, with its own wiring over in-memory ports (no sockets)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import unquote

import pytest

from dev.functions import load_function
from dev.lambda_context import LocalContext
from dev.local_api import build_event
from dev.template import api_routes
from millis_sip.core.calls import CallStatus
from millis_sip.core.errors import (
    Attempt,
    BridgeError,
    CallAlreadyExists,
    MillisAuthError,
    MillisBadResponse,
    MillisKeyUnavailable,
    MillisRejectedRequest,
    MillisUnavailable,
    StoreUnavailable,
)
from millis_sip.core.keys import StackKeys
from millis_sip.core.registration import webhook_credential_hash
from millis_sip.edges.http.models import MAX_BODY_BYTES
from millis_sip.wiring import compose_management
from tests.conftest import load_event
from tests.support.fakes import FakeGateway, MemoryStore
from tests.support.invoke import FakeApi, unpack
from tests.support.invoke import invoke as invoke_handler


@pytest.fixture(scope="module", autouse=True)
def _fresh_environment() -> None:
    """A fresh import with the unit-test environment, whatever another suite loaded before."""
    load_function("api_handler")


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


def invoke(api: FakeApi, event: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    return invoke_handler(api, event)


def post(body: str | bytes | dict[str, Any] | None, **overrides: Any) -> dict[str, Any]:
    event = load_event("api-create-call.json")
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, bytes):
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        event["body"] = body
    event.update(overrides)
    return event


def test_the_create_event_registers_and_answers_201(api: FakeApi) -> None:
    gateway, store = api.gateway, api.store
    status, headers, body = invoke(api, load_event("api-create-call.json"))
    assert status == 201
    assert headers["content-type"] == "application/json"
    assert set(body) >= {"call_id", "sip_uri", "millis_region", "lookup_key", "status", "created_at", "expires_at"}
    assert body["status"] == "registered"
    assert body["lookup_key"] == "+14155550100"
    assert body["call_id"] in store.items
    [sent] = gateway.calls
    hook = sent.pop("agent_config")["session_data_webhook"]  # the call's own webhook credential, added
    assert hook["url"] == "https://abc123.execute-api.us-west-2.amazonaws.com/v1/webhooks/millis"
    assert store.items[body["call_id"]].webhook_hash == webhook_credential_hash(hook["headers"]["X-Webhook-Secret"])
    assert sent == {
        "agent_id": "my-agent-id",
        "metadata": {"caller": "+14155550100", "crm_ticket": "T-1001"},
        "include_metadata_in_prompt": True,
    }


def test_the_budget_stays_inside_the_function_timeout(api: FakeApi) -> None:
    gateway = api.gateway
    api.lambda_handler(load_event("api-create-call.json"), LocalContext(timeout_seconds=5))
    assert 3.5 < gateway.budgets[0] <= 4.0


def test_get_and_lookup_events(api: FakeApi) -> None:
    _, _created_headers, created = invoke(api, load_event("api-create-call.json"))
    get_event = load_event("api-get-call.json")
    get_event["pathParameters"]["call_id"] = created["call_id"]
    get_event["path"] = f"/calls/{created['call_id']}"
    status, _, got = invoke(api, get_event)
    assert (status, got) == (200, created)
    status, _, found = invoke(api, load_event("api-lookup-call.json"))
    assert (status, found["call_id"]) == (200, created["call_id"])


def test_unknown_call_is_404_with_a_hint(api: FakeApi) -> None:
    status, _, body = invoke(api, load_event("api-get-call.json"))
    assert status == 404
    assert body["error"] == "call_not_found"
    assert body["hint"]
    assert body["request_id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


def listing(query: dict[str, str] | None) -> dict[str, Any]:
    event = load_event("api-lookup-call.json")
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    return event


def test_without_a_lookup_key_get_calls_lists_the_last_day_newest_first(api: FakeApi) -> None:
    _, _, first = invoke(api, load_event("api-create-call.json"))
    _, _, second = invoke(api, load_event("api-create-call.json"))
    status, _, page = invoke(api, listing(None))
    assert status == 200
    assert {c["call_id"] for c in page["calls"]} == {first["call_id"], second["call_id"]}
    assert page["next"] is None
    assert page["calls"][0]["created_at"] >= page["calls"][1]["created_at"]
    status, _, page = invoke(api, listing({"limit": "1"}))
    assert (status, len(page["calls"])) == (200, 1)
    status, _, rest = invoke(api, listing({"limit": "1", "next": page["next"]}))
    assert (status, len(rest["calls"]), rest["next"]) == (200, 1, None)
    assert rest["calls"][0]["call_id"] != page["calls"][0]["call_id"]
    status, _, none = invoke(api, listing({"status": "claimed"}))
    assert (status, none) == (200, {"calls": [], "next": None})


def test_the_carrier_lookup_answers_as_before_and_takes_no_listing_parameter(api: FakeApi) -> None:
    _, _, created = invoke(api, load_event("api-create-call.json"))
    status, _, found = invoke(api, listing({"lookup_key": "+14155550100"}))
    assert (status, found["call_id"], found["status"]) == (200, created["call_id"], "registered")
    assert "calls" not in found
    status, _, body = invoke(api, listing({"lookup_key": "+14155550100", "status": "registered"}))
    assert (status, body["error"]) == (400, "invalid_request")
    assert "status" in body["message"]


@pytest.mark.parametrize(
    ("query", "field_or_text"),
    [
        ({"status": "sleeping"}, "query.status"),
        ({"direction": "sideways"}, "query.direction"),
        ({"number": "4155550100"}, "query.number"),
        ({"carrier": "Twilio!"}, "query.carrier"),
        ({"limit": "0"}, "query.limit"),
        ({"limit": "101"}, "query.limit"),
        ({"since": "yesterday"}, "query.since"),
        ({"since": "2026-02-30T00:00:00Z"}, "ISO 8601"),
        ({"since": "1999-12-31T00:00:00Z", "until": "2000-01-01T00:00:00Z"}, "years"),
        ({"since": "2026-12-04T10:00:00Z", "until": "2026-12-04T09:00:00Z"}, "before until"),
        ({"since": "2026-11-01T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "7 days"),
        ({"next": "bm90IGEgY3Vyc29y"}, "cursor"),
        ({"next": "%%%"}, "cursor"),
    ],
)
def test_a_listing_with_a_bad_parameter_is_a_precise_400(
    api: FakeApi, query: dict[str, str], field_or_text: str
) -> None:
    status, _, body = invoke(api, listing(query))
    assert status == 400, body
    fields = [d.get("field") for d in body.get("details") or []]
    assert field_or_text in fields or field_or_text in body["message"], body


def test_delete_cancels_a_registration_no_phone_call_has_claimed(api: FakeApi) -> None:
    _, _, created = invoke(api, load_event("api-create-call.json"))
    event = route_event("DELETE", "/calls/{call_id}", "any-key")
    event["path"] = f"/calls/{created['call_id']}"
    event["pathParameters"] = {"call_id": created["call_id"]}
    status, _, canceled = invoke(api, event)
    assert (status, canceled["status"], canceled["reason"]) == (200, "canceled", "canceled_by_api")
    assert canceled["ended_at"]
    status, _, body = invoke(api, listing({"lookup_key": "+14155550100"}))
    assert (status, body["error"]) == (404, "call_not_found")  # no carrier lookup finds it any more
    status, _, again = invoke(api, event)
    assert (status, again["status"]) == (200, "canceled")
    event["path"], event["pathParameters"] = "/calls/nobody", {"call_id": "nobody"}
    status, _, body = invoke(api, event)
    assert (status, body["error"]) == (404, "call_not_found")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{not json", 400, "invalid_json"),
        ("", 400, "invalid_request"),
        ("[1, 2]", 400, "invalid_request"),
        ('"agent"', 400, "invalid_request"),
        ({"agent_id": "a", "agent": "b"}, 400, "invalid_request"),
        ({"agent_id": 42}, 400, "invalid_request"),
        ({"agent_id": "a", "include_metadata_in_prompt": "yes"}, 400, "invalid_request"),
        ({"agent_id": "a", "lookup_key": ""}, 400, "invalid_request"),
        ({"agent_id": "a", "lookup_key": "k" * 129}, 400, "invalid_request"),
        ({"agent_id": "a", "metadata": {"v": "x" * 9000}}, 400, "invalid_request"),
        ({"metadata": {"a": 1}}, 400, "invalid_request"),
        ("[" * 5000 + "]" * 5000, 400, "invalid_request"),
        ('{"agent_id": "a", "metadata": ' + '{"a": ' * 5000 + "1" + "}" * 5001, 400, "invalid_request"),
        ("[" * 30000 + "]" * 30000, 400, "invalid_json"),
        ({"agent_id": "a", "metadata": {"x": "y" * (MAX_BODY_BYTES + 1)}}, 413, "body_too_large"),
        ("\u00e9" * (MAX_BODY_BYTES // 2 + 1), 413, "body_too_large"),
        (b"\xff\xfe" * (MAX_BODY_BYTES // 2 + 10), 413, "body_too_large"),
    ],
    ids=[
        "bad-json",
        "empty",
        "array",
        "string",
        "unknown-field",
        "wrong-type",
        "bool-as-string",
        "empty-lookup-key",
        "long-lookup-key",
        "big-metadata",
        "no-agent",
        "deep-array",
        "deep-metadata",
        "too-deep-to-parse",
        "huge",
        "huge-multibyte",
        "huge-binary",
    ],
)
def test_bad_input_is_a_4xx_and_reaches_neither_millis_nor_dynamodb(
    api: FakeApi, body: Any, status: int, code: str
) -> None:
    gateway, store = api.gateway, api.store
    got_status, headers, answer = invoke(api, post(body))
    assert (got_status, answer["error"]) == (status, code)
    assert answer["message"]
    assert headers["content-type"] == "application/json"
    assert gateway.calls == []
    assert store.operations == 0


def test_non_json_content_type_is_415(api: FakeApi) -> None:
    gateway = api.gateway
    event = post("agent_id=a")
    event["headers"]["Content-Type"] = "text/plain"
    event["multiValueHeaders"]["Content-Type"] = ["text/plain"]
    status, _, body = invoke(api, event)
    assert (status, body["error"]) == (415, "unsupported_media_type")
    assert gateway.calls == []


def with_content_type(event: dict[str, Any], value: str) -> dict[str, Any]:
    for headers in (event["headers"], event["multiValueHeaders"]):
        for name in [n for n in headers if n.lower() == "content-type"]:
            del headers[name]
    event["headers"]["Content-Type"] = value
    event["multiValueHeaders"]["Content-Type"] = [value]
    return event


def test_a_form_body_is_415_not_a_confusing_400(api: FakeApi) -> None:
    # curl -d without -H sends application/x-www-form-urlencoded; Powertools would parse it as a form.
    event = with_content_type(post({"agent_id": "a"}), "application/x-www-form-urlencoded")
    status, _, body = invoke(api, event)
    assert (status, body["error"]) == (415, "unsupported_media_type")
    assert "curl" in body["hint"]
    assert api.gateway.calls == []


@pytest.mark.parametrize(
    "content_type",
    ["APPLICATION/JSON", "Application/Json; charset=UTF-8", "application/vnd.api+json", "application/json"],
)
def test_media_types_are_case_insensitive_and_json_suffixes_are_json(api: FakeApi, content_type: str) -> None:
    status, _, body = invoke(api, with_content_type(post({"agent_id": "a"}), content_type))
    assert status == 201, body


def test_a_raw_plus_in_a_lookup_key_gets_a_hint_to_encode_it(api: FakeApi) -> None:
    event = load_event("api-lookup-call.json")
    event["queryStringParameters"] = {"lookup_key": " 14155550100"}  # what "?lookup_key=+1415..." decodes to
    event["multiValueQueryStringParameters"] = {"lookup_key": [" 14155550100"]}
    status, _, body = invoke(api, event)
    assert status == 400
    assert "%2B" in body["hint"]


def test_unknown_route_is_a_json_404(api: FakeApi) -> None:
    event = load_event("api-lookup-call.json")
    event["path"] = "/nothing"
    status, _, body = invoke(api, event)
    assert (status, body["error"]) == (404, "route_not_found")


ATTEMPTS = (Attempt("us-west", "http_503", 10.0), Attempt("eu-west", "timeout", 2000.0))


@pytest.mark.parametrize(
    ("error", "status", "code", "retry_after"),
    [
        (MillisUnavailable("both down", ATTEMPTS), 503, "millis_unavailable", "2"),
        (MillisUnavailable("limited", ATTEMPTS, rate_limited=True, retry_after=9), 429, "millis_rate_limited", "9"),
        (MillisAuthError("Millis rejected the API key (HTTP 401)"), 502, "millis_key_rejected", None),
        (MillisBadResponse("no call_id"), 502, "millis_bad_response", None),
        (MillisRejectedRequest("refused", status=404, detail="Agent not found"), 404, "millis_rejected_request", None),
        (MillisRejectedRequest("refused", status=422, detail=[{"msg": "x"}]), 422, "millis_rejected_request", None),
        (MillisRejectedRequest("refused", status=400, detail="bad"), 422, "millis_rejected_request", None),
        (MillisKeyUnavailable("secret unreadable"), 503, "millis_key_unavailable", "2"),
    ],
)
def test_millis_failures_map_to_precise_statuses(
    error: BridgeError, status: int, code: str, retry_after: str | None
) -> None:
    store = MemoryStore()
    api = FakeApi(FakeGateway(error), store)
    got_status, headers, body = invoke(api, load_event("api-create-call.json"))
    assert (got_status, body["error"]) == (status, code)
    assert headers.get("retry-after") == retry_after
    assert store.items == {}


def test_millis_detail_is_passed_on() -> None:
    error = MillisRejectedRequest("refused", status=404, detail="Agent my-agent-id not found")
    api = FakeApi(FakeGateway(error), MemoryStore())
    _, _, body = invoke(api, load_event("api-create-call.json"))
    assert body["details"][0] == {"millis_status": 404, "millis_detail": "Agent my-agent-id not found"}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (StoreUnavailable("DynamoDB put failed (ProvisionedThroughputExceededException)."), 503),
        (CallAlreadyExists("x"), 502),
    ],
)
def test_store_failures_are_not_acknowledged(error: BridgeError, status: int) -> None:
    api = FakeApi(FakeGateway(), MemoryStore(error))
    got_status, headers, body = invoke(api, load_event("api-create-call.json"))
    assert got_status == status
    assert "call_id" not in body
    if status == 503:
        assert headers["retry-after"] == "2"


def test_an_unexpected_exception_is_a_json_500() -> None:
    class Broken(FakeGateway):
        def register(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("bug")

    api = FakeApi(Broken(), MemoryStore())
    status, _, body = invoke(api, load_event("api-create-call.json"))
    assert (status, body["error"]) == (500, "internal_error")
    assert "bug" not in body["message"]


@pytest.mark.parametrize(
    ("domain", "path", "context_path", "expected"),
    [
        ("abc123.execute-api.us-west-2.amazonaws.com", "/calls", "/v1/calls", "/v1/webhooks/millis"),
        ("voice.example.com", "/bridge/calls", "/bridge/calls", "/bridge/webhooks/millis"),  # base path mapping
        ("voice.example.com", "/calls", "/calls", "/webhooks/millis"),  # mapped at the root
    ],
)
def test_the_webhook_url_follows_how_the_api_was_reached(
    api: FakeApi, domain: str, path: str, context_path: str, expected: str
) -> None:
    event = load_event("api-create-call.json")
    event["path"] = path
    event["headers"]["Host"] = event["multiValueHeaders"]["Host"][0] = domain
    event["requestContext"].update(domainName=domain, path=context_path)
    status, _, _ = invoke(api, event)
    assert status == 201
    hook = api.gateway.calls[-1]["agent_config"]["session_data_webhook"]
    assert hook["url"] == f"https://{domain}{expected}"


# --- the SIP servers' API key: GET /route only, so ApiFunction refuses it ---------------------------------------

SIP_KEY_ID, MAIN_KEY_ID = "sipsrv0001", "mainkey001"  # what API Gateway puts into requestContext.identity.apiKeyId
# A request for each route, as a caller would send it (the path parameters and query filled in).
ROUTE_REQUESTS = {
    ("POST", "/calls"): ("/calls", {"agent_id": "my-agent-id", "lookup_key": "+14155550100"}),
    ("GET", "/calls"): ("/calls?lookup_key=%2B14155550100", None),
    ("GET", "/calls/{call_id}"): ("/calls/call-unit-1", None),
    ("DELETE", "/calls/{call_id}"): ("/calls/call-unit-1", None),
    ("POST", "/calls/outbound"): (
        "/calls/outbound",
        {"to": "+14155550123", "from": "+15055550100", "carrier": "twilio"},
    ),
    ("POST", "/calls/{call_id}/transfer"): ("/calls/call-unit-1/transfer", {"to": "+14155550199"}),
    ("PUT", "/numbers/{number}"): ("/numbers/%2B15055550144", {"agent_id": "my-agent-id"}),
    ("GET", "/numbers/{number}"): ("/numbers/%2B15055550144", None),
    ("DELETE", "/numbers/{number}"): ("/numbers/%2B15055550144", None),
    ("GET", "/numbers"): ("/numbers", None),
    ("GET", "/openapi.json"): ("/openapi.json", None),
    ("POST", "/webhooks/millis"): ("/webhooks/millis", {"call_id": "call-unit-1"}),
}


def keyed_api(**fakes: Any) -> FakeApi:
    """ApiFunction as composed in AWS with SIP_SERVER_API_KEY_ID set, over the given fakes."""
    api = FakeApi(**fakes, sip_server_api_key_id=SIP_KEY_ID)
    return api


def route_event(method: str, resource: str, key_id: str) -> dict[str, Any]:
    raw_path, body = ROUTE_REQUESTS[(method, resource)]
    path_params = {
        name: unquote(value)
        for name, value in zip(re.findall(r"\{(\w+)\}", resource), raw_path.split("?")[0].split("/")[2:], strict=False)
    }
    headers = [("Host", "abc123.execute-api.us-west-2.amazonaws.com"), ("Content-Type", "application/json")]
    data = json.dumps(body).encode() if body is not None else None
    return build_event(
        method, raw_path, resource, path_params, headers, data, api_key=f"value-of-{key_id}", api_key_id=key_id
    )


def test_every_api_function_route_has_a_request_here() -> None:
    assert set(api_routes("ApiFunction")) == set(ROUTE_REQUESTS)


@pytest.mark.parametrize(("method", "resource"), sorted(ROUTE_REQUESTS))
def test_the_sip_servers_key_is_refused_on_every_route_before_anything_else_runs(method: str, resource: str) -> None:
    # Millis, the calls table and the number routes all fail: a 403 and nothing else shows none of them was reached.
    down = StoreUnavailable("down")
    api = keyed_api(gateway=FakeGateway(down), store=MemoryStore(down))
    api.numbers.fail_with = down
    status, headers, body = invoke(api, route_event(method, resource, SIP_KEY_ID))
    assert status == 403, body
    assert headers["content-type"] == "application/json"
    assert body["error"] == "forbidden"
    assert "GET /route" in body["message"]
    assert "ApiKeyId" in body["hint"]
    assert body["request_id"]
    assert api.gateway.calls == [] and api.store.operations == 0


@pytest.mark.parametrize(("method", "resource"), sorted(ROUTE_REQUESTS))
def test_the_main_key_is_not_refused(method: str, resource: str) -> None:
    api = keyed_api()
    status, _, body = invoke(api, route_event(method, resource, MAIN_KEY_ID))
    assert (status, body.get("error")) != (403, "forbidden"), body  # outbound_disabled is the route's own answer


def test_without_a_sip_servers_key_id_no_key_is_refused() -> None:
    api = FakeApi()  # composed without sip_server_api_key_id, as where SIP_SERVER_API_KEY_ID is empty
    status, _, body = invoke(api, route_event("GET", "/openapi.json", ""))
    assert status == 200, body
    status, _, _ = invoke(api, route_event("GET", "/openapi.json", SIP_KEY_ID))
    assert status == 200


def test_the_entry_module_takes_the_sip_servers_key_id_from_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIP_SERVER_API_KEY_ID", SIP_KEY_ID)
    try:
        module = load_function("api_handler")
        status, _, body = unpack(module.lambda_handler(route_event("GET", "/openapi.json", SIP_KEY_ID), LocalContext()))
        assert (status, body["error"]) == (403, "forbidden")
        status, _, _ = unpack(module.lambda_handler(route_event("GET", "/openapi.json", MAIN_KEY_ID), LocalContext()))
        assert status == 200
    finally:
        monkeypatch.delenv("SIP_SERVER_API_KEY_ID")
        load_function("api_handler")  # the unit-test environment again, for the tests that follow


def test_a_keys_secret_that_cannot_be_read_is_a_503_before_millis_is_asked() -> None:
    from millis_sip.core.errors import KeysSecretUnavailable

    class Unreadable:
        def __call__(self) -> str:
            raise KeysSecretUnavailable("Secrets Manager did not answer.")

        def forget(self) -> None:
            return None

    api = FakeApi()
    api.app, api.services = compose_management(
        api.settings,
        gateway=api.gateway,
        store=api.store,
        numbers=api.numbers,
        stack_secret=None,
        idempotency=None,
        keys=StackKeys(Unreadable()),
    )
    status, headers, body = invoke(api, load_event("api-create-call.json"))  # it has a lookup_key
    assert (status, body["error"], headers["retry-after"]) == (503, "keys_secret_unavailable", "2")
    assert api.gateway.calls == [] and api.store.items == {}


def test_the_document_describes_both_answers_of_get_calls_and_bounds_its_parameters(api: FakeApi) -> None:
    status, _, doc = invoke(api, route_event("GET", "/openapi.json", "any-key"))
    assert status == 200
    operation = doc["paths"]["/calls"]["get"]
    answers = operation["responses"]["200"]["content"]["application/json"]["schema"]["anyOf"]
    assert {a["$ref"] for a in answers} == {"#/components/schemas/CallView", "#/components/schemas/CallPage"}
    page = doc["components"]["schemas"]["CallPage"]
    assert page["required"] == ["calls"] and set(page["properties"]) == {"calls", "next"}
    schemas = {p["name"]: p["schema"]["anyOf"][0] for p in operation["parameters"]}
    assert not any(p.get("required") for p in operation["parameters"])  # lookup_key too: without it, a listing
    assert (schemas["limit"]["minimum"], schemas["limit"]["maximum"]) == (1, 100)
    for bounded in ("lookup_key", "carrier", "agent_id", "number", "since", "until"):
        assert "pattern" in schemas[bounded], bounded
    assert "maxLength" in schemas["next"]
    assert set(schemas["status"]["enum"]) == {status.value for status in CallStatus}
    cancel = doc["paths"]["/calls/{call_id}"]["delete"]["responses"]
    assert {a["$ref"].rsplit("/", 1)[1] for a in cancel["200"]["content"]["application/json"]["schema"]["anyOf"]} == {
        "CallView",
        "OutboundCallView",
    }
    assert "registration" in cancel["409"]["description"]

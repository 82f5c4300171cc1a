"""Number routes over HTTP: ApiFunction behind the local API Gateway stand-in, against DynamoDB Local (the
store's own behaviour is in test_store_contract; this is what a client of /numbers sees)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest

from dev.local_api import LocalApi

pytestmark = pytest.mark.integration
API_KEY = "numbers-api-key"


@pytest.fixture
def client(api: ModuleType) -> Iterator[httpx.Client]:
    with (
        LocalApi(api.lambda_handler, api_key=API_KEY, port=0) as server,
        httpx.Client(base_url=server.url, headers={"x-api-key": API_KEY}, timeout=30) as http,
    ):
        yield http


def number() -> str:
    return "+1505" + str(uuid.uuid4().int)[:7]


def error(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["request_id"]
    return body


def test_a_route_is_created_replaced_read_and_deleted(client: httpx.Client) -> None:
    dialed = number()
    created = client.put(f"/numbers/{dialed}", json={"agent_id": "sales", "metadata": {"team": "east"}})
    assert created.status_code == 201, created.text
    assert created.json()["number"] == dialed and created.json()["metadata"] == {"team": "east"}
    replaced = client.put(f"/numbers/%2B{dialed[1:]}", json={"agent_config": {"prompt": "You take orders."}})
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["agent_id"], replaced.json()["agent_config"]) == (None, {"prompt": "You take orders."})
    assert replaced.json()["created_at"] == created.json()["created_at"]
    assert client.get(f"/numbers/{dialed}").json() == replaced.json()
    assert client.delete(f"/numbers/{dialed}").status_code == 204
    assert error(client.get(f"/numbers/{dialed}"), 404)["error"] == "number_not_found"
    assert error(client.delete(f"/numbers/{dialed}"), 404)["error"] == "number_not_found"


@pytest.mark.parametrize(
    ("path", "body", "problem"),
    [
        ("/numbers/14155550100", {"agent_id": "a"}, "E.164"),  # no +
        ("/numbers/+1%20415", {"agent_id": "a"}, "E.164"),
        # Digits of another script and a trailing newline were stored as routes no call can match.
        ("/numbers/%2B1%D9%A5%D9%A0%D9%A5%D9%A5%D9%A5%D9%A5%D9%A0%D9%A1%D9%A2%D9%A3", {"agent_id": "a"}, "E.164"),
        ("/numbers/%2B15055550123%0A", {"agent_id": "a"}, "E.164"),
        ("/numbers/+14155550100", {}, "agent_id or agent_config"),
        ("/numbers/+14155550100", {"agent_id": "a", "lookup_key": "x"}, "lookup_key"),  # not a route's field
    ],
)
def test_a_bad_route_is_a_400_that_says_why(client: httpx.Client, path: str, body: Any, problem: str) -> None:
    assert problem in error(client.put(path, json=body), 400)["message"]


def test_every_route_is_listed_once_a_page_at_a_time(client: httpx.Client) -> None:
    mine = {number() for _ in range(7)}
    for dialed in mine:
        assert client.put(f"/numbers/{dialed}", json={"agent_id": "paged"}).status_code == 201
    seen: list[str] = []
    query: dict[str, Any] = {"limit": 3}
    for _ in range(1000):  # other tests' routes share the table: page to the end
        page = client.get("/numbers", params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["numbers"]) <= 3
        seen += [route["number"] for route in body["numbers"]]
        if body["next"] is None:
            break
        query["next"] = body["next"]
    assert mine <= set(seen)
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"next": "bm90LWEtY3Vyc29y"}, "next"),
        ({"limt": 5}, "Unknown query parameter 'limt'"),
    ],
)
def test_a_bad_page_request_is_a_400(client: httpx.Client, query: dict[str, Any], problem: str) -> None:
    assert problem in error(client.get("/numbers", params=query), 400)["message"]

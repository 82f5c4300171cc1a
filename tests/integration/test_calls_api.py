"""GET /calls (the listing) and DELETE /calls/{call_id} of a registration, as a client and a carrier see them:
ApiFunction and InboundFunction behind the local API server, DynamoDB Local, the Millis simulator (the store's own
behaviour is in test_store_contract)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.test_carrier_flows import Phone, caller, dial, phone, register

pytestmark = pytest.mark.integration
__all__ = ["phone"]  # the fixture, shared with the carrier flows


def agent() -> str:
    return f"list-{uuid.uuid4().hex[:12]}"


def listed(phone: Phone, **query: Any) -> dict[str, Any]:
    answer = phone.api("GET", "/calls", params=query)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body: dict[str, Any] = answer.json()
    assert set(body) == {"calls", "next"}
    return body


def test_calls_are_listed_newest_first_a_page_at_a_time_and_filtered(phone: Phone) -> None:
    mine = agent()
    made = [register(phone, caller(), agent_id=mine) for _ in range(5)]
    everything = listed(phone, agent_id=mine)
    assert [c["call_id"] for c in everything["calls"]] == [c["call_id"] for c in reversed(made)]
    assert everything["next"] is None
    assert everything["calls"] == list(reversed(made))  # each as GET /calls/{call_id} shows it
    seen: list[str] = []
    query: dict[str, Any] = {"agent_id": mine, "limit": 2}
    for _ in range(10):
        page = listed(phone, **query)
        assert len(page["calls"]) <= 2
        seen += [c["call_id"] for c in page["calls"]]
        if page["next"] is None:
            break
        query["next"] = page["next"]
    assert seen == [c["call_id"] for c in reversed(made)]
    number = made[2]["lookup_key"]
    assert [c["call_id"] for c in listed(phone, number=number)["calls"]] == [made[2]["call_id"]]
    assert listed(phone, agent_id=mine, status="claimed")["calls"] == []
    assert listed(phone, agent_id=mine, direction="outbound")["calls"] == []
    assert len(listed(phone, agent_id=mine, direction="inbound", status="registered")["calls"]) == 5
    soon = datetime.now(UTC) + timedelta(minutes=1)
    since, until = soon.strftime("%Y-%m-%dT%H:%M:%SZ"), (soon + timedelta(minutes=1)).isoformat()
    assert listed(phone, agent_id=mine, since=since, until=until) == {"calls": [], "next": None}
    earlier = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")  # no offset: UTC
    assert len(listed(phone, agent_id=mine, since=earlier)["calls"]) == 5


def test_a_phone_call_lists_with_its_carrier_and_numbers(phone: Phone) -> None:
    answer, params = phone.ring(caller())
    uri, _ = dial(answer)
    call_id = uri.split("call-", 1)[1].split("@")[0]
    [found] = listed(phone, number=params["From"], carrier="twilio")["calls"]
    assert (found["call_id"], found["status"], found["source"]) == (call_id, "claimed", "twilio")
    assert "caller_number" not in found  # an inbound call's view shows no phone number but its lookup_key


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ({"status": "sleeping"}, "status"),
        ({"limit": "1000"}, "limit"),
        ({"number": "14155550100"}, "number"),
        ({"since": "2026-12-04T10:00:00Z", "until": "2026-12-04T09:00:00Z"}, "since must be before until"),
        ({"since": "2026-11-01T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "7 days"),
        ({"next": "eyJzaW5jZSI6MX0"}, "cursor"),
        ({"lookup_key": "+14155550100", "limit": "5"}, "lookup_key"),
        ({"sort": "asc"}, "sort"),
    ],
)
def test_a_bad_listing_is_a_400_that_says_why(phone: Phone, query: dict[str, str], problem: str) -> None:
    answer = phone.api("GET", "/calls", params=query)
    assert answer.status_code == 400, answer.text
    assert problem in answer.text


def test_the_carrier_lookup_is_unchanged(phone: Phone) -> None:
    number = caller()
    registered = register(phone, number)
    found = phone.api("GET", "/calls", params={"lookup_key": number})
    assert found.status_code == 200, found.text
    assert found.json() == registered  # the same shape as before: one call, not a page
    assert phone.api("GET", "/calls", params={"lookup_key": caller()}).status_code == 404


def test_a_canceled_registration_is_found_by_no_lookup_and_claimed_by_no_phone_call(phone: Phone) -> None:
    number = caller()
    registered = register(phone, number)
    canceled = phone.api("DELETE", f"/calls/{registered['call_id']}")
    assert canceled.status_code == 200, canceled.text
    body = canceled.json()
    assert (body["status"], body["reason"], body["call_id"]) == ("canceled", "canceled_by_api", registered["call_id"])
    assert body["ended_at"]
    assert phone.api("GET", f"/calls/{registered['call_id']}").json()["status"] == "canceled"
    assert phone.api("GET", "/calls", params={"lookup_key": number}).status_code == 404
    answer, _ = phone.ring(number, StirVerstat="TN-Validation-Passed-A")  # would claim it, attested
    uri, _ = dial(answer)
    assert uri != registered["sip_uri"]  # a registration of its own, for the default agent
    again = phone.api("DELETE", f"/calls/{registered['call_id']}")
    assert (again.status_code, again.json()["status"]) == (200, "canceled")
    [listed_one] = listed(phone, number=number, status="canceled")["calls"]
    assert listed_one["call_id"] == registered["call_id"]


def test_a_claimed_registration_is_not_cancelable_and_an_unknown_call_is_404(phone: Phone) -> None:
    number = caller()
    registered = register(phone, number)
    answer, _ = phone.ring(number, StirVerstat="TN-Validation-Passed-A")
    uri, _ = dial(answer)
    assert uri == registered["sip_uri"]
    refused = phone.api("DELETE", f"/calls/{registered['call_id']}")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "call_not_cancelable"
    assert "claimed" in refused.json()["message"]
    assert phone.api("DELETE", f"/calls/call-{uuid.uuid4().hex}").status_code == 404

"""The Millis gateway against httpx.MockTransport: what it sends, when it fails over, what it refuses."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from millis_sip.adapters.millis_http import MAX_RESPONSE_BYTES, HttpMillisGateway
from millis_sip.core.errors import (
    MillisAuthError,
    MillisBadResponse,
    MillisKeyUnavailable,
    MillisRejectedRequest,
    MillisUnavailable,
)
from millis_sip.core.regions import MillisRegion
from tests.support.clock import FakeClock

KEY = "pk_live_secret_value"
URLS = {MillisRegion.US_WEST: "https://us.example/", MillisRegion.EU_WEST: "https://eu.example"}
ORDER = (MillisRegion.US_WEST, MillisRegion.EU_WEST)
OK = {"call_id": "c-1", "sip_uri": "sip:call-c-1@sip.millis.example"}


Answer = httpx.Response | Exception


def gateway(
    answers: dict[str, list[Answer]],
    seen: list[httpx.Request],
    clock: FakeClock | None = None,
    cost: float = 0.0,
    key: Callable[[], str] = lambda: KEY,
) -> HttpMillisGateway:
    """A gateway whose region answers come from ``answers`` (host -> queue); each try costs ``cost`` s."""
    clock = clock or FakeClock()

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        clock.advance(cost)
        answer = answers[request.url.host].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = httpx.Client(transport=httpx.MockTransport(handle))
    return HttpMillisGateway(client, URLS, ORDER, key, connect_timeout=1.0, read_timeout=2.0, clock=clock)


def ok(**fields: Any) -> httpx.Response:
    return httpx.Response(200, json=fields or OK)


def test_posts_the_callers_fields_with_the_raw_key() -> None:
    seen: list[httpx.Request] = []
    payload = {
        "agent_id": "a",
        "agent_config": {"prompt": "hi"},
        "metadata": {"k": 1},
        "include_metadata_in_prompt": False,
    }
    result = gateway({"us.example": [ok()]}, seen).register(payload, budget=5)
    assert (result.call_id, str(result.sip_uri), result.region) == ("c-1", OK["sip_uri"], MillisRegion.US_WEST)
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == "https://us.example/register_sip_call"
    assert request.headers["Authorization"] == KEY  # raw, no "Bearer"
    assert json.loads(request.content) == payload
    assert not result.failed_over


def test_accepts_the_sip_spelling_of_the_uri_field() -> None:
    result = gateway({"us.example": [ok(call_id="c-2", sip="sip:call-c-2@h.example")]}, []).register({}, budget=5)
    assert str(result.sip_uri) == "sip:call-c-2@h.example"


def test_prefers_sip_uri_when_both_spellings_are_present() -> None:
    answer = ok(call_id="c-3", sip_uri="sip:a@one.example", sip="sip:b@two.example")
    assert str(gateway({"us.example": [answer]}, []).register({}, budget=5).sip_uri) == "sip:a@one.example"


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503, json={"detail": "down"}),
        httpx.Response(500, text="boom"),
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow connect"),
        httpx.ReadTimeout("black hole"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=["503", "500", "429", "refused", "connect-timeout", "read-timeout", "dropped"],
)
def test_fails_over_once_to_the_other_region(failure: Answer) -> None:
    seen: list[httpx.Request] = []
    result = gateway({"us.example": [failure], "eu.example": [ok()]}, seen).register({"agent_id": "a"}, budget=10)
    assert result.region is MillisRegion.EU_WEST
    assert result.failed_over
    assert [r.url.host for r in seen] == ["us.example", "eu.example"]
    assert seen[1].content == seen[0].content


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, MillisAuthError), (403, MillisAuthError), (404, MillisRejectedRequest), (422, MillisRejectedRequest)],
)
def test_does_not_fail_over_when_another_region_would_answer_the_same(status: int, error: type[Exception]) -> None:
    seen: list[httpx.Request] = []
    answer = httpx.Response(status, json={"detail": "nope"})
    with pytest.raises(error):
        gateway({"us.example": [answer], "eu.example": [ok()]}, seen).register({"agent_id": "a"}, budget=10)
    assert len(seen) == 1


def test_rejected_request_passes_millis_detail_on() -> None:
    detail = [{"loc": ["body", "agent_id"], "msg": "Input should be a valid string", "type": "string_type"}]
    with pytest.raises(MillisRejectedRequest) as caught:
        gateway({"us.example": [httpx.Response(422, json={"detail": detail})]}, []).register({}, budget=5)
    assert caught.value.status == 422
    assert caught.value.detail == detail


def test_an_echoed_key_is_redacted_from_the_detail() -> None:
    answer = httpx.Response(422, json={"detail": f"bad key {KEY} for agent"})
    with pytest.raises(MillisRejectedRequest) as caught:
        gateway({"us.example": [answer]}, []).register({}, budget=5)
    assert KEY not in json.dumps(caught.value.detail)
    assert "[redacted]" in json.dumps(caught.value.detail)


def test_auth_error_says_the_key_was_rejected_without_the_key() -> None:
    with pytest.raises(MillisAuthError) as caught:
        gateway({"us.example": [httpx.Response(401, json={"detail": KEY})]}, []).register({}, budget=5)
    assert "rejected the API key" in caught.value.message
    assert KEY not in caught.value.message
    assert KEY not in repr(caught.value)


def test_both_regions_down_is_unavailable_with_each_attempt() -> None:
    answers: dict[str, list[Answer]] = {
        "us.example": [httpx.Response(503)],
        "eu.example": [httpx.ConnectError("refused")],
    }
    with pytest.raises(MillisUnavailable) as caught:
        gateway(answers, []).register({}, budget=10)
    assert [(a.region, a.outcome) for a in caught.value.attempts] == [
        ("us-west", "http_503"),
        ("eu-west", "connect_error"),
    ]
    assert not caught.value.rate_limited


def test_rate_limited_everywhere_is_reported_as_such_with_retry_after() -> None:
    answers: dict[str, list[Answer]] = {
        "us.example": [httpx.Response(429)],
        "eu.example": [httpx.Response(429, headers={"Retry-After": "9"})],
    }
    with pytest.raises(MillisUnavailable) as caught:
        gateway(answers, []).register({}, budget=10)
    assert caught.value.rate_limited
    assert caught.value.retry_after == 9


def test_no_failover_when_the_deadline_has_no_room_left() -> None:
    seen: list[httpx.Request] = []
    clock = FakeClock()
    answers: dict[str, list[Answer]] = {"us.example": [httpx.ReadTimeout("slow")], "eu.example": [ok()]}
    with pytest.raises(MillisUnavailable):
        gateway(answers, seen, clock, cost=3.9).register({}, budget=4.0)
    assert len(seen) == 1


def test_each_attempt_gets_at_most_the_time_left() -> None:
    seen: list[httpx.Request] = []
    clock = FakeClock()
    answers: dict[str, list[Answer]] = {"us.example": [httpx.ReadTimeout("slow")], "eu.example": [ok()]}
    gateway(answers, seen, clock, cost=1.5).register({}, budget=2.5)
    first, second = (r.extensions["timeout"] for r in seen)
    assert first == {"connect": 1.0, "read": 2.0, "write": 2.0, "pool": 1.0}
    assert second["read"] == pytest.approx(1.0)  # 2.5 s budget - 1.5 s spent
    assert second["connect"] == pytest.approx(1.0)


def test_explicit_region_order_is_honoured() -> None:
    seen: list[httpx.Request] = []
    result = gateway({"eu.example": [ok()]}, seen).register({}, budget=5, regions=(MillisRegion.EU_WEST,))
    assert result.region is MillisRegion.EU_WEST
    assert [r.url.host for r in seen] == ["eu.example"]


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>oops</html>"),
        httpx.Response(200, json=["call_id", "sip_uri"]),
        httpx.Response(200, json={"sip_uri": "sip:a@b.example"}),
        httpx.Response(200, json={"call_id": "", "sip_uri": "sip:a@b.example"}),
        httpx.Response(200, json={"call_id": 12, "sip_uri": "sip:a@b.example"}),
        httpx.Response(200, json={"call_id": "c 1", "sip_uri": "sip:a@b.example"}),
        httpx.Response(200, json={"call_id": "c-1"}),
        httpx.Response(200, json={"call_id": "c-1", "sip_uri": "https://evil.example"}),
        httpx.Response(200, json={"call_id": "c-1", "sip_uri": {"nested": True}}),
        httpx.Response(200, text="[" * 100_000),
        httpx.Response(200, content=b"x" * (MAX_RESPONSE_BYTES + 1)),
    ],
    ids=[
        "html",
        "array",
        "no-call-id",
        "empty-call-id",
        "numeric-call-id",
        "space-in-call-id",
        "no-uri",
        "http-uri",
        "object-uri",
        "deep-nesting",
        "huge",
    ],
)
def test_unusable_success_bodies_are_upstream_errors(answer: httpx.Response) -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(MillisBadResponse):
        gateway({"us.example": [answer], "eu.example": [ok()]}, seen).register({}, budget=5)
    assert len(seen) == 1


def test_a_key_that_cannot_be_read_sends_nothing() -> None:
    seen: list[httpx.Request] = []

    def no_key() -> str:
        raise MillisKeyUnavailable("Secrets Manager unreachable")

    with pytest.raises(MillisKeyUnavailable):
        gateway({"us.example": [ok()]}, seen, key=no_key).register({}, budget=5)
    assert seen == []


@pytest.mark.parametrize("header", ["²", "-1", "soon", "Wed, 21 Oct 2026 07:28:00 GMT", ""])
def test_a_retry_after_that_is_not_a_whole_number_is_ignored(header: str) -> None:
    answers: dict[str, list[Answer]] = {
        "us.example": [httpx.Response(503, headers=[(b"Retry-After", header.encode("latin-1"))])],
        "eu.example": [httpx.Response(429, headers=[(b"Retry-After", header.encode("latin-1"))])],
    }
    with pytest.raises(MillisUnavailable) as caught:
        gateway(answers, []).register({}, budget=10)
    assert caught.value.retry_after == 2  # the default


def test_a_cached_secrets_manager_key_is_used_without_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.session
    from botocore.stub import Stubber

    from millis_sip.adapters import threads
    from millis_sip.adapters.secrets import SecretsManagerApiKey

    arn = "arn:aws:secretsmanager:us-west-2:123456789012:secret:millis-AbCdEf"
    client = botocore.session.get_session().create_client("secretsmanager", region_name="us-west-2")
    stub = Stubber(client)
    stub.add_response("get_secret_value", {"ARN": arn, "Name": "millis", "SecretString": KEY}, {"SecretId": arn})
    hand_offs: list[int] = []
    real = threads.parallel

    def counted(*calls: Callable[[], Any], timeout: float | None = None) -> list[Any]:
        hand_offs.append(len(calls))
        return real(*calls, timeout=timeout)

    monkeypatch.setattr(threads, "parallel", counted)
    seen: list[httpx.Request] = []
    millis = gateway({"us.example": [ok(), ok()]}, seen, key=SecretsManagerApiKey(client, arn, 300))
    with stub:
        millis.register({}, budget=5)  # the first read goes to Secrets Manager, bounded by the budget on a worker
        millis.register({}, budget=5)  # then the key is in memory: read on the calling thread
    assert hand_offs == [1]
    assert [r.headers["Authorization"] for r in seen] == [KEY, KEY]

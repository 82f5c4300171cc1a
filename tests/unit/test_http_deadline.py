"""A deadline ends a whole HTTP exchange, held to the installed httpx and httpcore: a server that drips its
answer one byte at a time, each byte well within the read timeout, is cut off at the deadline whether the drip
is in the headers or in the body, and the Millis gateway goes on to the other region. Real sockets (a Unix
socket: unit tests open no network sockets) and real time: an httpx or httpcore upgrade that changes how a
read waits fails here."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from millis_sip.adapters import http_deadline
from millis_sip.adapters.http_deadline import BoundedTransport
from millis_sip.adapters.millis_http import HttpMillisGateway
from millis_sip.core.errors import MillisUnavailable
from millis_sip.core.regions import MillisRegion
from tests.support.drip import ANSWER, BODY, HEAD, Drip, DrippingMillis

LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=4, keepalive_expiry=60)
PATIENT = httpx.Timeout(5.0)  # every phase's own timeout far longer than any deadline here
PAUSE = 0.02  # between dripped bytes: a registration's answer takes 4-6 s this way
DEADLINE = 0.3
SLACK = 1.0  # scheduling on a busy 2-core CI machine; a drip that is not cut off overshoots by 2-6 s
US, EU = "us.example", "eu.example"
URLS = {MillisRegion.US_WEST: f"http://{US}", MillisRegion.EU_WEST: f"http://{EU}"}
ORDER = (MillisRegion.US_WEST, MillisRegion.EU_WEST)


@pytest.fixture
def socket_path() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="drip-") as folder:  # short: a Unix socket path has ~100 bytes
        yield Path(folder) / "millis.sock"


def client(path: Path) -> httpx.Client:
    return httpx.Client(transport=BoundedTransport(limits=LIMITS, uds=str(path)), timeout=PATIENT)


def test_a_drip_in_the_headers_ends_at_the_deadline(socket_path: Path) -> None:
    with DrippingMillis(socket_path, {US: Drip(PAUSE, headers=True)}) as millis, client(socket_path) as http:
        started = time.monotonic()
        with http_deadline.within(DEADLINE), pytest.raises(httpx.ReadTimeout):
            http.post(f"http://{US}/register_sip_call", json={})
        took = time.monotonic() - started
    assert DEADLINE <= took < DEADLINE + SLACK
    assert 3 <= millis.sent[US] < len(HEAD)  # cut off inside the status line and headers


def test_a_drip_ends_at_the_time_allowed_from_the_requests_first_byte(socket_path: Path) -> None:
    with DrippingMillis(socket_path, {US: Drip(PAUSE, headers=True)}), client(socket_path) as http:
        started = time.monotonic()
        with http_deadline.within(5.0, once_sending=DEADLINE), pytest.raises(httpx.ReadTimeout):
            http.post(f"http://{US}/register_sip_call", json={})
        took = time.monotonic() - started
    assert DEADLINE <= took < DEADLINE + SLACK


def test_a_drip_in_the_body_ends_at_the_deadline(socket_path: Path) -> None:
    with DrippingMillis(socket_path, {US: Drip(PAUSE, headers=False)}) as millis, client(socket_path) as http:
        started = time.monotonic()
        with http_deadline.within(DEADLINE), http.stream("POST", f"http://{US}/register_sip_call", json={}) as answer:
            assert answer.status_code == 200  # the headers came at once
            with pytest.raises(httpx.ReadTimeout):
                answer.read()
        took = time.monotonic() - started
    assert DEADLINE <= took < DEADLINE + SLACK
    assert len(HEAD) < millis.sent[US] < len(HEAD) + len(BODY)  # cut off inside the body


def test_an_answer_inside_the_deadline_is_untouched_and_no_deadline_means_none(socket_path: Path) -> None:
    with DrippingMillis(socket_path, {}), client(socket_path) as http:
        with http_deadline.within(DEADLINE):
            assert http.post(f"http://{US}/register_sip_call", json={}).json() == ANSWER
        assert http.post(f"http://{US}/register_sip_call", json={}).json() == ANSWER


def test_nothing_starts_once_the_deadline_has_passed(socket_path: Path) -> None:
    with (
        DrippingMillis(socket_path, {}) as millis,
        client(socket_path) as http,
        http_deadline.within(0),
        pytest.raises(httpx.ConnectTimeout),
    ):
        http.post(f"http://{US}/register_sip_call", json={})
    assert millis.requests == []


def gateway(path: Path, *, connect: float = 0.5, read: float = 0.2) -> HttpMillisGateway:
    return HttpMillisGateway(client(path), URLS, ORDER, lambda: "k", connect_timeout=connect, read_timeout=read)


@pytest.mark.parametrize("headers", [True, False], ids=["headers", "body"])
def test_the_gateway_fails_over_after_a_dripping_region_within_its_attempts_deadline(
    socket_path: Path, headers: bool
) -> None:
    with DrippingMillis(socket_path, {US: Drip(PAUSE, headers=headers)}) as millis:
        started = time.monotonic()
        registration = gateway(socket_path).register({"agent_id": "a"}, budget=5.0)
        took = time.monotonic() - started
    assert registration.region is MillisRegion.EU_WEST
    assert [(a.region, a.outcome) for a in registration.attempts] == [("us-west", "timeout"), ("eu-west", "ok")]
    assert millis.requests == [US, EU]
    # A dripping region costs what a silent one does: the time to connect (none here), then the read timeout.
    assert registration.attempts[0].elapsed_ms < (0.2 + SLACK) * 1000
    assert took < 0.2 + SLACK


def test_both_regions_dripping_is_unavailable_after_each_attempts_deadline(socket_path: Path) -> None:
    drips = {US: Drip(PAUSE, headers=True), EU: Drip(PAUSE, headers=False)}
    with DrippingMillis(socket_path, drips):
        started = time.monotonic()
        with pytest.raises(MillisUnavailable) as caught:
            gateway(socket_path).register({"agent_id": "a"}, budget=5.0)
        took = time.monotonic() - started
    assert [(a.region, a.outcome) for a in caught.value.attempts] == [("us-west", "timeout"), ("eu-west", "timeout")]
    assert 2 * 0.2 <= took < 2 * 0.2 + SLACK


def test_a_dripping_region_never_keeps_the_gateway_past_the_callers_budget(socket_path: Path) -> None:
    with DrippingMillis(socket_path, {US: Drip(PAUSE, headers=True)}) as millis:
        started = time.monotonic()
        with pytest.raises(MillisUnavailable) as caught:
            gateway(socket_path, connect=1.0, read=2.0).register({"agent_id": "a"}, budget=0.6)
        took = time.monotonic() - started
    assert [(a.region, a.outcome) for a in caught.value.attempts] == [("us-west", "timeout")]  # none left for eu
    assert millis.requests == [US]
    assert 0.6 <= took < 0.6 + SLACK

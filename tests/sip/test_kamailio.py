"""Real SIP through examples/kamailio/kamailio.cfg: a SIPp carrier calls, Kamailio asks the route API (a stand-in
here) and relays to a SIPp stand-in for Millis' SIP server."""

from __future__ import annotations

import dataclasses
import time

import pytest

from tests.sip.conftest import API_KEY, HarnessFactory
from tests.sip.harness import (
    MillisRoute,
    Responder,
    RouteReply,
    RouteRequest,
    RouteServer,
    SipHarness,
    free_port,
    iter_headers,
    route_line,
)

pytestmark = pytest.mark.integration

TO = "+14155550100"
FROM = "+14155550111"


def test_the_call_reaches_millis_at_the_routed_uri_with_the_headers(sip: SipHarness, route: MillisRoute) -> None:
    result = sip.place_call(TO, FROM)

    assert result.ok, result.summary()
    assert result.final_status == 200
    [invite] = sip.received_invites()
    answer = route.answers[result.call_id]
    uri = answer.partition("?")[0]
    millis_id = uri.removeprefix("sip:").partition("@")[0]
    assert invite.request_uri == uri
    assert dict(iter_headers(invite)) == {
        "X-Millis-Call-Id": millis_id,
        "X-Carrier": "sip",
        "X-Carrier-Call-Id": result.call_id,  # "...@carrier.test": %40 in the answer, decoded
    }
    # the carrier's own X-Millis-Call-Id (scenarios/uac.xml sends one) did not survive
    assert invite.header_values("X-Millis-Call-Id") == [millis_id]
    assert invite.header("Record-Route") == f"<sip:127.0.0.1:{sip.kamailio_port};lr>"
    assert invite.header("Call-ID") == result.call_id
    # ACK and BYE came along the recorded route, to the Contact Millis answered with
    in_dialog = [m for m in sip.received_messages() if m.method in ("ACK", "BYE")]
    assert [m.method for m in in_dialog] == ["ACK", "BYE"]
    assert all(m.request_uri == f"sip:agent@127.0.0.1:{sip.uas_port};transport=UDP" for m in in_dialog)


def test_the_route_is_asked_with_the_call_details_and_the_key(sip: SipHarness, route_server: RouteServer) -> None:
    result = sip.place_call(TO, FROM)

    assert result.ok, result.summary()
    [request] = route_server.requests
    assert (request.method, request.path) == ("GET", "/route")
    assert request.query == {"to": TO, "from": FROM, "call": result.call_id}
    assert request.raw_query.lower().startswith("to=%2b14155550100&from=%2b14155550111&call=")
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["accept"] == "text/plain"


def test_a_second_call_to_the_same_number_goes_to_its_own_millis_call(
    sip: SipHarness, route: MillisRoute, route_server: RouteServer
) -> None:
    first = sip.place_call(TO, FROM)
    second = sip.place_call(TO, FROM)

    assert first.ok, first.summary()
    assert second.ok, second.summary()
    uris = [route.answers[call.call_id].partition("?")[0] for call in (first, second)]
    assert uris[0] != uris[1]
    assert [invite.request_uri for invite in sip.received_invites()] == uris
    assert [r.query["call"] for r in route_server.requests] == [first.call_id, second.call_id]


def test_header_values_are_percent_decoded_and_unsafe_ones_skipped(sip: SipHarness, route_server: RouteServer) -> None:
    uri = sip.millis_uri("call-encoded")
    line = (
        route_line(uri, {"X-Millis-Call-Id": "call-encoded", "X-Note": "a b+c/d%e@f;g=h"})
        + "&X-Raw=a+b"  # '+' sent unencoded stays '+' (s.unescape.param, not form-decoding)
        + "&x-lower=ok&X-Empty="
        + "&Contact=%3Csip:evil@example.com%3E"  # not an X- header
        + "&X-Inject=a%0D%0AX-Evil:%201"  # CR LF: would inject a header
        + "&X-Utf8=caf%C3%A9"  # non-ASCII: refused by s.unescape.param, so skipped
        + "&X-Bad=%zz"
    )
    route_server.reset(lambda _request: RouteReply(200, line + "\r\n"))

    result = sip.place_call(TO, FROM)

    assert result.ok, result.summary()
    [invite] = sip.received_invites()
    assert invite.request_uri == uri
    assert list(iter_headers(invite)) == [
        ("X-Millis-Call-Id", "call-encoded"),
        ("X-Note", "a b+c/d%e@f;g=h"),
        ("X-Raw", "a+b"),
        ("x-lower", "ok"),
        ("X-Empty", ""),
    ]
    assert invite.header("Contact") != "<sip:evil@example.com>"
    assert "skipping URI header [X-Inject=a%0D%0AX-Evil:%201]" in sip.kamailio_log()


@pytest.mark.parametrize("suffix", ["", "?"], ids=["no-headers", "empty-headers"])
def test_an_answer_without_uri_headers_is_relayed_as_is(
    sip: SipHarness, route_server: RouteServer, suffix: str
) -> None:
    uri = sip.millis_uri("call-plain")
    route_server.reset(lambda _request: RouteReply(200, uri + suffix))

    result = sip.place_call(TO, FROM)

    assert result.ok, result.summary()
    [invite] = sip.received_invites()
    assert invite.request_uri == uri
    assert list(iter_headers(invite)) == []  # and the carrier's X-Millis-Call-Id was dropped


def test_no_agent_for_the_number_is_a_404(sip: SipHarness, route: MillisRoute) -> None:
    route.agents = {"+18005550199"}

    result = sip.place_call(TO, FROM, expect=404)

    assert result.ok, result.summary()
    assert result.final_status == 404
    assert result.reason(404) == "No agent for this number"
    assert sip.received_invites() == []


@pytest.mark.parametrize("reason", ["call_conflict", "call_ended"])
def test_a_call_id_the_route_will_not_answer_again_is_a_403(
    sip: SipHarness, route_server: RouteServer, reason: str
) -> None:
    # GET /route answers 409 for a Call-ID first asked for other numbers, or whose call is over (a replayed INVITE):
    # the call is refused for good, never relayed, and not failed over elsewhere as a 503 would be.
    route_server.reset(lambda _request: RouteReply(409, f"{reason}: {reason}\n"))

    result = sip.place_call(TO, FROM, expect=403)

    assert result.ok, result.summary()
    assert result.final_status == 403
    assert result.reason(403) == "Call-ID already used"
    assert sip.received_invites() == []
    assert len(route_server.requests) == 1


def _slow(request: RouteRequest) -> RouteReply:
    return RouteReply(200, "sip:late@127.0.0.1:9;transport=udp", delay=1.5)  # past the harness's 1 s timeout


@pytest.mark.parametrize(
    "reply",
    [
        RouteReply(500, "boom\n"),
        RouteReply(502, ""),
        RouteReply(403, "forbidden\n"),
        RouteReply(401, "unauthorized\n"),
        RouteReply(200, "not a sip uri\n"),
        RouteReply(200, ""),
        RouteReply(200, "sip:a@127.0.0.1?X-A=1?X-B=2\n"),
        RouteReply(302, "sip:moved@127.0.0.1:9\n"),
        _slow,
    ],
    ids=["500", "502", "403", "401", "not-a-uri", "empty", "two-question-marks", "302", "timeout"],
)
def test_a_failing_route_is_a_503(sip: SipHarness, route_server: RouteServer, reply: RouteReply | Responder) -> None:
    route_server.reset((lambda _request: reply) if isinstance(reply, RouteReply) else reply)

    result = sip.place_call(TO, FROM, expect=503)

    assert result.ok, result.summary()
    assert result.final_status == 503
    assert sip.received_invites() == []


def test_an_unreachable_route_api_is_a_503(start_harness: HarnessFactory) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    harness = start_harness(nowhere, API_KEY)

    result = harness.place_call(TO, FROM, expect=503)

    assert result.ok, result.summary()
    assert harness.received_invites() == []
    # http_client_query returns libcurl's error code (7: could not connect), not -1 as its docs say
    assert f"route API answered 7 for to={TO}" in harness.kamailio_log()


def test_a_wrong_api_key_is_a_503(start_harness: HarnessFactory, route_server: RouteServer, route: MillisRoute) -> None:
    harness = start_harness(route_server.base_url, "not-the-key")

    result = harness.place_call(TO, FROM, expect=503)

    assert result.ok, result.summary()
    assert [r.headers["x-api-key"] for r in route_server.requests] == ["not-the-key"]
    assert harness.received_invites() == []


def test_the_route_url_and_key_can_come_from_the_environment(
    start_harness: HarnessFactory, route_server: RouteServer
) -> None:
    harness = start_harness(route_server.base_url, API_KEY, config_via="env")
    route_server.reset(MillisRoute(API_KEY, harness.uas_host, harness.uas_port))

    result = harness.place_call(TO, FROM)

    assert result.ok, result.summary()
    assert [r.headers["x-api-key"] for r in route_server.requests] == [API_KEY]
    assert len(harness.received_invites()) == 1


def test_a_slow_route_is_asked_once_and_the_caller_hears_trying_at_once(
    sip: SipHarness, route: MillisRoute, route_server: RouteServer
) -> None:
    route_server.reset(lambda request: dataclasses.replace(route(request), delay=0.7))

    result = sip.place_call(TO, FROM)

    assert result.ok, result.summary()
    assert result.responses[0] == (100, "INVITE")
    # the 100 came before the UAC's 500 ms retransmission timer, and Kamailio asked the route once
    assert [m.method for m in result.messages if m.direction == "sent"].count("INVITE") == 1
    assert len(route_server.requests) == 1
    assert len(sip.received_invites()) == 1


def test_a_cancel_while_the_route_is_asked_ends_the_call_there(sip: SipHarness, route_server: RouteServer) -> None:
    route_server.reset(lambda _request: RouteReply(200, sip.millis_uri("call-cancelled"), delay=0.6))

    result = sip.place_call(TO, FROM, cancel_after_ms=150)

    assert result.ok, result.summary()
    assert (487, "INVITE") in result.responses
    assert (200, "CANCEL") in result.responses
    time.sleep(0.7)  # the route answers after the CANCEL: Kamailio must not relay then
    assert len(route_server.requests) == 1
    assert sip.received_invites() == []


def test_a_carrier_on_tcp_reaches_millis_on_udp(sip: SipHarness, route: MillisRoute) -> None:
    result = sip.place_call(TO, FROM, transport="tcp")

    assert result.ok, result.summary()
    [invite] = sip.received_invites()
    assert invite.request_uri == route.answers[result.call_id].partition("?")[0]
    # double Record-Route: one entry per side, so in-dialog requests cross transports correctly
    record_route = invite.header_values("Record-Route")
    assert len(record_route) == 2
    assert any("transport=tcp" in rr for rr in record_route)
    assert [m.method for m in sip.received_messages()] == ["INVITE", "ACK", "BYE"]

from __future__ import annotations

import pytest

from millis_sip.core.sip import InvalidSipUri, parse_sip_uri


@pytest.mark.parametrize(
    ("uri", "user", "host", "port"),
    [
        ("sip:call-abc123@sip.millis.ai", "call-abc123", "sip.millis.ai", None),
        ("sips:call-abc123@sip.millis.ai:5061", "call-abc123", "sip.millis.ai", 5061),
        ("sip:call-1@203.0.113.7;transport=tcp", "call-1", "203.0.113.7", None),
        ("sip:call-1@[2001:db8::1]:5060", "call-1", "[2001:db8::1]", 5060),
        ("SIP:Call-1@Sip.Millis.AI", "Call-1", "sip.millis.ai", None),
        ("sip:sip.millis.ai", None, "sip.millis.ai", None),
    ],
)
def test_valid_uris_are_taken_apart_not_rebuilt(uri: str, user: str | None, host: str, port: int | None) -> None:
    parsed = parse_sip_uri(uri)
    assert (parsed.user, parsed.host, parsed.port) == (user, host, port)
    assert str(parsed) == uri


@pytest.mark.parametrize(
    "value",
    [
        "https://sip.millis.ai",
        "sip:",
        "sip:call@",
        "sip:call @host",
        "tel:+14155550100",
        "sip:call@host:99999",
        "sip:call@-bad-.example",
        "sip:call@" + "a" * 300,
        "",
        None,
        42,
        {"uri": "sip:a@b"},
    ],
)
def test_anything_else_is_refused(value: object) -> None:
    with pytest.raises(InvalidSipUri):
        parse_sip_uri(value)

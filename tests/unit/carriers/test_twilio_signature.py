"""Twilio's X-Twilio-Signature, with the official SDK (twilio ``RequestValidator``) as the oracle."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from millis_sip.edges.carriers import InvalidSignature
from millis_sip.edges.carriers.twilio import signature, verify

TOKEN = "12345"
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+12349013030"),
    ("Digits", "1234"),
    ("From", "+12349013030"),
    ("To", "+18005551212"),
]
DOC_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
URL = "https://bridge.example.com/twilio/voice?tenant=acme"
PARAMS = [
    ("AccountSid", "AC" + "0" * 32),
    ("CallSid", "CA" + "1" * 32),
    ("From", "+14155550100"),
    ("To", "+14155550199"),
    ("CallStatus", "ringing"),
    ("StirVerstat", "TN-Validation-Passed-A"),
    ("SipHeader_X-Customer", "gold&vip=1"),
]


class MultiDict:
    """The SDK reads repeated form fields through ``getlist`` (Django's QueryDict protocol)."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._pairs = list(pairs)

    def __iter__(self) -> Iterator[str]:
        return iter([name for name, _ in self._pairs])

    def __len__(self) -> int:
        return len(self._pairs)

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self._pairs if key == name]


def sdk_signature(url: str, params: Sequence[tuple[str, str]], token: str = TOKEN) -> str:
    result: str = RequestValidator(token).compute_signature(url, MultiDict(params))
    return result


def sdk_accepts(url: str, params: Sequence[tuple[str, str]] | str, presented: str, token: str = TOKEN) -> bool:
    payload = params if isinstance(params, str) else MultiDict(params)
    result: bool = RequestValidator(token).validate(url, payload, presented)
    return result


def test_twilio_documented_example_signs_and_verifies() -> None:
    assert signature(DOC_URL, DOC_PARAMS, TOKEN) == DOC_SIGNATURE
    verify(DOC_URL, DOC_PARAMS, DOC_SIGNATURE, [TOKEN])
    assert sdk_accepts(DOC_URL, DOC_PARAMS, DOC_SIGNATURE)


def test_a_request_the_sdk_signed_is_accepted_in_any_parameter_order() -> None:
    presented = sdk_signature(URL, PARAMS)
    verify(URL, list(reversed(PARAMS)), presented, [TOKEN])


def test_get_webhooks_sign_the_url_alone() -> None:
    url = URL + "&CallSid=CA1&From=%2B14155550100"
    presented = sdk_signature(url, [])
    verify(url, [], presented, [TOKEN])


def test_repeated_parameters_sort_by_value_and_count_once_like_the_sdk() -> None:
    params = [*PARAMS, ("Tag", "b"), ("Tag", "a"), ("Tag", "b")]
    ours = signature(URL, params, TOKEN)
    assert ours == sdk_signature(URL, params)
    verify(URL, params, ours, [TOKEN])


@settings(max_examples=60, deadline=None)
@given(
    params=st.lists(st.tuples(st.text(min_size=1, max_size=12), st.text(max_size=20)), max_size=8),
    token=st.text(min_size=1, max_size=40),
)
def test_our_signature_is_the_sdks_for_any_parameters(params: list[tuple[str, str]], token: str) -> None:
    ours = signature(URL, params, token)
    assert ours == sdk_signature(URL, params, token)
    assert sdk_accepts(URL, params, ours, token)


def test_a_tampered_parameter_is_refused() -> None:
    presented = sdk_signature(URL, PARAMS)
    tampered = [(name, "+19005550123" if name == "From" else value) for name, value in PARAMS]
    with pytest.raises(InvalidSignature) as caught:
        verify(URL, tampered, presented, [TOKEN])
    assert caught.value.reason == "signature mismatch"
    assert not sdk_accepts(URL, tampered, presented)


def test_an_added_parameter_is_refused() -> None:
    presented = sdk_signature(URL, PARAMS)
    with pytest.raises(InvalidSignature, match="signature mismatch"):
        verify(URL, [*PARAMS, ("Digits", "1")], presented, [TOKEN])


@pytest.mark.parametrize(
    "other_url",
    [
        "https://bridge.example.com/twilio/voice?tenant=other",
        "https://bridge.example.com/twilio/voice",
        "http://bridge.example.com/twilio/voice?tenant=acme",
        "https://evil.example.com/twilio/voice?tenant=acme",
        "https://bridge.example.com/twilio/status?tenant=acme",
    ],
)
def test_a_signature_for_another_url_is_refused(other_url: str) -> None:
    presented = sdk_signature(URL, PARAMS)
    with pytest.raises(InvalidSignature, match="signature mismatch"):
        verify(other_url, PARAMS, presented, [TOKEN])
    assert not sdk_accepts(other_url, PARAMS, presented)


def test_a_wrong_token_is_refused() -> None:
    presented = sdk_signature(URL, PARAMS, token="another-accounts-token")
    with pytest.raises(InvalidSignature, match="signature mismatch"):
        verify(URL, PARAMS, presented, [TOKEN])


def test_a_rotated_token_keeps_working_beside_the_new_one() -> None:
    presented = sdk_signature(URL, PARAMS, token="old-token")
    verify(URL, PARAMS, presented, ["new-token", "old-token"])


@pytest.mark.parametrize(
    ("signed_url", "received_url"),
    [
        ("https://bridge.example.com:443/twilio/voice?tenant=acme", URL),
        (URL, "https://bridge.example.com:443/twilio/voice?tenant=acme"),
        ("http://bridge.example.com:80/voice", "http://bridge.example.com/voice"),
        ("https://bridge.example.com/voice", "https://bridge.example.com:8443/voice"),
    ],
)
def test_ports_are_tried_with_and_without_as_the_sdk_does(signed_url: str, received_url: str) -> None:
    presented = sdk_signature(signed_url, PARAMS)
    verify(received_url, PARAMS, presented, [TOKEN])
    assert sdk_accepts(received_url, PARAMS, presented)


@pytest.mark.parametrize("presented", [None, ""])
def test_a_missing_signature_is_refused(presented: str | None) -> None:
    with pytest.raises(InvalidSignature) as caught:
        verify(URL, PARAMS, presented, [TOKEN])
    assert caught.value.reason == "missing signature"


@pytest.mark.parametrize(
    "presented",
    ["not base64!", "0/KCTR6DLpKmkAf8muzZqo1nDg", "AAAA", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=0/KC", "é" * 28],
)
def test_a_malformed_signature_is_refused(presented: str) -> None:
    with pytest.raises(InvalidSignature) as caught:
        verify(URL, PARAMS, presented, [TOKEN])
    assert caught.value.reason == "malformed signature"


def test_no_configured_token_refuses_everything() -> None:
    with pytest.raises(InvalidSignature, match="no key configured"):
        verify(DOC_URL, DOC_PARAMS, DOC_SIGNATURE, [])


def test_the_reason_never_carries_the_token_or_the_signature() -> None:
    presented = sdk_signature(URL, PARAMS, token="secret-token-value")
    with pytest.raises(InvalidSignature) as caught:
        verify(URL, [], presented, ["secret-token-value"])
    assert "secret-token-value" not in str(caught.value)
    assert presented not in str(caught.value)


BODY = b'{"CallSid":"CA123","CallStatus":"completed"}'
JSON_URL = f"https://bridge.example.com/twilio/events?bodySHA256={hashlib.sha256(BODY).hexdigest()}"


def test_a_json_body_is_verified_through_body_sha256() -> None:
    presented = sdk_signature(JSON_URL, [])
    verify(JSON_URL, [], presented, [TOKEN], body=BODY)
    assert sdk_accepts(JSON_URL, BODY.decode(), presented)


def test_a_tampered_json_body_is_refused() -> None:
    presented = sdk_signature(JSON_URL, [])
    tampered = BODY.replace(b"completed", b"failed")
    with pytest.raises(InvalidSignature) as caught:
        verify(JSON_URL, [], presented, [TOKEN], body=tampered)
    assert caught.value.reason == "body hash mismatch"
    assert not sdk_accepts(JSON_URL, tampered.decode(), presented)


def test_a_json_body_without_body_sha256_is_refused() -> None:
    url = "https://bridge.example.com/twilio/events"
    with pytest.raises(InvalidSignature, match="missing bodySHA256"):
        verify(url, [], sdk_signature(url, []), [TOKEN], body=BODY)

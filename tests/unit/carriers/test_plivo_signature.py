"""Plivo's X-Plivo-Signature-V3, with the official SDK (plivo ``utils/signature_v3.py``) as the oracle."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plivo.utils.signature_v3 import (  # type: ignore[import-untyped]
    construct_get_url,
    construct_post_url,
    get_signature_v3,
    validate_v3_signature,
)

from millis_sip.edges.carriers import InvalidSignature
from millis_sip.edges.carriers.plivo import signature, string_to_sign, verify_v3

TOKEN = "MzYwODdjNjQ3ZWU0YTk1ZmM1MDdkMmQ4ZTE5YTc2"
NONCE = "05429567804466091622"
URL = "https://bridge.example.com/plivo/answer"
PARAMS = [
    ("CallUUID", "2b8a5f2e-0e1b-11ee-bc17-4f2d1d2a9a11"),
    ("From", "14155550100"),
    ("To", "14155550199"),
    ("CallStatus", "ringing"),
    ("Direction", "inbound"),
    ("X-PH-Tenant", "acme"),
]


def as_sdk_params(params: Sequence[tuple[str, str]]) -> dict[str, str | list[str]]:
    """The SDK takes a dict; repeated fields are a list (what a framework's MultiDict gives)."""
    grouped: dict[str, list[str]] = {}
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in grouped.items()}


def sdk_signature(
    method: str, url: str, params: Sequence[tuple[str, str]], token: str = TOKEN, nonce: str = NONCE
) -> str:
    if method == "GET":
        base = construct_get_url(url, as_sdk_params(params))
    else:
        base = construct_post_url(url, as_sdk_params(params))
    result: bytes = get_signature_v3(token, base.decode(), nonce)
    return result.decode()


def sdk_accepts(method: str, url: str, params: Sequence[tuple[str, str]], presented: str, token: str = TOKEN) -> bool:
    result: bool = validate_v3_signature(method, url, NONCE, token, presented, as_sdk_params(params))
    return result


@pytest.mark.parametrize(
    ("method", "url", "params", "expected"),
    [
        ("POST", URL, PARAMS[:2], f"{URL}?CallUUID{PARAMS[0][1]}From14155550100.{NONCE}"),
        ("POST", URL + "?b=2&a=1", PARAMS[:1], f"{URL}?a=1&b=2.CallUUID{PARAMS[0][1]}.{NONCE}"),
        ("POST", URL + "?b=2&a=1", [], f"{URL}?a=1&b=2.{NONCE}"),
        ("POST", URL, [], f"{URL}.{NONCE}"),
        ("GET", URL + "?To=2&From=1", [], f"{URL}?From=1&To=2.{NONCE}"),
        ("GET", URL, [], f"{URL}.{NONCE}"),
    ],
)
def test_the_string_to_sign_matches_the_sdks_construction(
    method: str, url: str, params: list[tuple[str, str]], expected: str
) -> None:
    assert string_to_sign(method, url, params, NONCE) == expected
    assert signature(method, url, params, NONCE, TOKEN) == sdk_signature(method, url, params)


@pytest.mark.parametrize(
    ("method", "url", "params"),
    [
        ("POST", URL, PARAMS),
        ("POST", URL + "?tenant=acme&region=us", PARAMS),
        ("GET", URL + "?CallUUID=abc&From=14155550100&To=14155550199", []),
        ("POST", URL, [*PARAMS, ("Tag", "b"), ("Tag", "a")]),
    ],
)
def test_a_request_the_sdk_signed_is_accepted_and_the_sdk_accepts_ours(
    method: str, url: str, params: list[tuple[str, str]]
) -> None:
    verify_v3(method, url, list(reversed(params)), NONCE, sdk_signature(method, url, params), [TOKEN])
    assert sdk_accepts(method, url, params, signature(method, url, params, NONCE, TOKEN))


@settings(max_examples=60, deadline=None)
@given(
    params=st.lists(
        st.tuples(st.text(st.characters(codec="ascii"), min_size=1, max_size=10), st.text(max_size=20)),
        min_size=1,
        max_size=8,
    ),
    token=st.text(st.characters(codec="ascii"), min_size=1, max_size=40),
)
def test_our_post_signature_is_the_sdks_for_any_parameters(params: list[tuple[str, str]], token: str) -> None:
    assert signature("POST", URL, params, NONCE, token) == sdk_signature("POST", URL, params, token=token)


def test_one_valid_signature_among_several_comma_separated_is_enough() -> None:
    valid = sdk_signature("POST", URL, PARAMS)
    other = sdk_signature("POST", URL, PARAMS, token="sub-account-token")
    verify_v3("POST", URL, PARAMS, NONCE, f"{other},{valid}", [TOKEN])
    verify_v3("POST", URL, PARAMS, NONCE, f"{other}, {valid}", [TOKEN])
    assert sdk_accepts("POST", URL, PARAMS, f"{other},{valid}")


def test_a_rotated_token_keeps_working_beside_the_new_one() -> None:
    presented = sdk_signature("POST", URL, PARAMS, token="old-token")
    verify_v3("POST", URL, PARAMS, NONCE, presented, ["new-token", "old-token"])


def test_a_tampered_parameter_is_refused() -> None:
    presented = sdk_signature("POST", URL, PARAMS)
    tampered = [(name, "19005550123" if name == "From" else value) for name, value in PARAMS]
    with pytest.raises(InvalidSignature) as caught:
        verify_v3("POST", URL, tampered, NONCE, presented, [TOKEN])
    assert caught.value.reason == "signature mismatch"
    assert not sdk_accepts("POST", URL, tampered, presented)


@pytest.mark.parametrize(
    "other_url",
    [URL + "?tenant=other", "https://bridge.example.com/plivo/hangup", "http://bridge.example.com/plivo/answer"],
)
def test_a_signature_for_another_url_is_refused(other_url: str) -> None:
    presented = sdk_signature("POST", URL, PARAMS)
    with pytest.raises(InvalidSignature, match="signature mismatch"):
        verify_v3("POST", other_url, PARAMS, NONCE, presented, [TOKEN])


def test_another_nonce_is_refused() -> None:
    presented = sdk_signature("POST", URL, PARAMS)
    with pytest.raises(InvalidSignature, match="signature mismatch"):
        verify_v3("POST", URL, PARAMS, "99999999999999999999", presented, [TOKEN])


def test_a_wrong_token_is_refused_and_the_sdk_agrees() -> None:
    presented = sdk_signature("POST", URL, PARAMS, token="someone-elses-token")
    with pytest.raises(InvalidSignature, match="signature mismatch"):
        verify_v3("POST", URL, PARAMS, NONCE, presented, [TOKEN])
    assert not sdk_accepts("POST", URL, PARAMS, presented)


def test_a_get_signature_does_not_verify_as_a_post() -> None:
    url = URL + "?From=14155550100"
    with pytest.raises(InvalidSignature, match="signature mismatch"):
        verify_v3("POST", url, [("To", "1")], NONCE, sdk_signature("GET", url, []), [TOKEN])


@pytest.mark.parametrize(
    ("nonce", "presented", "reason"),
    [
        (NONCE, None, "missing signature"),
        (NONCE, "", "missing signature"),
        (None, "c2ln", "missing nonce"),
        ("", "c2ln", "missing nonce"),
    ],
)
def test_missing_headers_are_refused(nonce: str | None, presented: str | None, reason: str) -> None:
    with pytest.raises(InvalidSignature) as caught:
        verify_v3("POST", URL, PARAMS, nonce, presented, [TOKEN])
    assert caught.value.reason == reason


@pytest.mark.parametrize("presented", ["not base64!!", ",,,", "é", "AAAA"])
def test_malformed_signatures_only_mismatch(presented: str) -> None:
    with pytest.raises(InvalidSignature, match="signature mismatch"):
        verify_v3("POST", URL, PARAMS, NONCE, presented, [TOKEN])


def test_an_unsupported_method_is_refused() -> None:
    with pytest.raises(InvalidSignature, match="unsupported method"):
        verify_v3("PUT", URL, PARAMS, NONCE, sdk_signature("POST", URL, PARAMS), [TOKEN])


def test_no_configured_token_refuses_everything() -> None:
    with pytest.raises(InvalidSignature, match="no key configured"):
        verify_v3("POST", URL, PARAMS, NONCE, sdk_signature("POST", URL, PARAMS), [])

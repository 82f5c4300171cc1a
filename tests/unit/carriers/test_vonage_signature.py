"""Vonage's signed webhooks. PyJWT signs the tokens (it is what the Vonage SDK uses; Vonage ships no HS256
signer) and vonage-jwt's ``verify_signature`` (the official helper) must agree with what we accept."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import jwt
import pytest
from vonage_jwt import verify_signature  # type: ignore[import-untyped]

from millis_sip.edges.carriers import InvalidSignature
from millis_sip.edges.carriers.vonage import query_payload, verify

NOW = 1_800_000_000
SECRET = "signature-secret-" + "0123456789abcdef" * 4  # 64+ bytes: PyJWT warns about shorter HS512 keys
OTHER_SECRET = "another-signature-secret-" + "fedcba9876543210" * 4
BODY = json.dumps(
    {
        "from": "14155550100",
        "to": "14155550199",
        "uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        "conversation_uuid": "CON-aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        "status": "completed",
        "duration": "42",
    },
    separators=(",", ":"),
).encode()


def claims(payload: bytes = BODY, changes: dict[str, object] | None = None) -> dict[str, object]:
    base: dict[str, object] = {
        "iat": NOW - 2,
        "jti": "c5ba8f24-1a14-4c10-bfdf-3fbe8ce511b5",
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(payload).hexdigest(),
        "api_key": "a1b2c3d",
        "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    }
    base.update(changes or {})
    return {name: value for name, value in base.items() if value is not None}


def token(payload: dict[str, object] | None = None, secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload if payload is not None else claims(), secret, algorithm=algorithm)


def bearer(value: str) -> str:
    return f"Bearer {value}"


def segment(value: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def test_a_signed_webhook_returns_its_claims_and_the_sdk_agrees() -> None:
    now = int(time.time())  # the SDK helper checks iat against the real clock
    presented = token(claims(changes={"iat": now}))
    verified = verify(bearer(presented), BODY, [SECRET], now=now)
    assert verified["api_key"] == "a1b2c3d"
    assert verified["application_id"] == "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
    assert verify_signature(presented, SECRET) is True


def test_a_get_answer_webhook_hashes_its_query_as_compact_json_in_url_order() -> None:
    params = [("to", "14155550199"), ("from", "14155550100"), ("uuid", "u-1"), ("SipHeader_X-Tenant", "acme")]
    payload = query_payload(params)
    assert payload == b'{"to":"14155550199","from":"14155550100","uuid":"u-1","SipHeader_X-Tenant":"acme"}'
    verify(bearer(token(claims(payload))), payload, [SECRET], now=NOW)
    with pytest.raises(InvalidSignature, match="payload hash mismatch"):
        verify(bearer(token(claims(payload))), query_payload(list(reversed(params))), [SECRET], now=NOW)


def test_a_pretty_printed_body_matches_the_hash_of_its_compact_form() -> None:
    pretty = json.dumps(json.loads(BODY), indent=2).encode()
    verify(bearer(token(claims(BODY))), pretty, [SECRET], now=NOW)


def test_a_tampered_body_is_refused_although_the_sdk_helper_would_not_notice() -> None:
    now = int(time.time())
    presented = token(claims(changes={"iat": now}))
    tampered = BODY.replace(b"completed", b"failed")
    with pytest.raises(InvalidSignature) as caught:
        verify(bearer(presented), tampered, [SECRET], now=now)
    assert caught.value.reason == "payload hash mismatch"
    assert verify_signature(presented, SECRET) is True  # vonage-jwt checks the signature only


def test_a_tampered_claim_is_refused() -> None:
    header, _, signature = token().split(".")
    forged = f"{header}.{segment(claims(changes={'application_id': 'someone-else'}))}.{signature}"
    with pytest.raises(InvalidSignature, match="signature mismatch"):
        verify(bearer(forged), BODY, [SECRET], now=NOW)
    assert verify_signature(forged, SECRET) is False


def test_another_secret_is_refused_and_the_sdk_agrees() -> None:
    presented = token(secret=OTHER_SECRET)
    with pytest.raises(InvalidSignature, match="signature mismatch"):
        verify(bearer(presented), BODY, [SECRET], now=NOW)
    assert verify_signature(presented, SECRET) is False


def test_a_rotated_secret_keeps_working_beside_the_new_one() -> None:
    verify(bearer(token(secret=OTHER_SECRET)), BODY, [SECRET, OTHER_SECRET], now=NOW)


def test_alg_none_is_refused() -> None:
    unsigned = jwt.encode(claims(), "", algorithm="none")
    with pytest.raises(InvalidSignature):
        verify(bearer(unsigned), BODY, [SECRET], now=NOW)
    header, payload, _ = token().split(".")
    none_with_a_valid_mac = f"{segment({'alg': 'none', 'typ': 'JWT'})}.{payload}.{token().split('.')[2]}"
    with pytest.raises(InvalidSignature) as caught:
        verify(bearer(none_with_a_valid_mac), BODY, [SECRET], now=NOW)
    assert caught.value.reason == "unsupported alg"
    assert header != segment({"alg": "none", "typ": "JWT"})


@pytest.mark.parametrize("algorithm", ["HS512", "HS384"])
def test_other_hmac_algorithms_are_refused_even_with_the_right_secret(algorithm: str) -> None:
    with pytest.raises(InvalidSignature) as caught:
        verify(bearer(token(algorithm=algorithm)), BODY, [SECRET], now=NOW)
    assert caught.value.reason == "unsupported alg"


def test_a_critical_header_extension_is_refused() -> None:
    presented = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"crit": ["exp"]})
    with pytest.raises(InvalidSignature, match="unsupported header"):
        verify(bearer(presented), BODY, [SECRET], now=NOW)


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "missing authorization"),
        ("", "missing authorization"),
        ("Bearer", "malformed authorization"),
        ("Bearer   ", "malformed authorization"),
        ("Basic dXNlcjpwYXNz", "malformed authorization"),
        ("Bearer abc", "malformed token"),
        ("Bearer a.b", "malformed token"),
        ("Bearer a.b.c.d", "malformed token"),
        ("Bearer a+b.c/d.e=", "malformed token"),
        ("Bearer ..", "malformed token"),
        ("Bearer " + "a" * 9000 + ".b.c", "malformed token"),
        ("Bearer bm90IGpzb24.e30.c2ln", "malformed token"),
        ("Bearer W10.e30.c2ln", "malformed token"),
    ],
)
def test_garbage_authorization_is_refused(authorization: str | None, reason: str) -> None:
    with pytest.raises(InvalidSignature) as caught:
        verify(authorization, BODY, [SECRET], now=NOW)
    assert caught.value.reason == reason


def test_the_bearer_scheme_is_case_insensitive() -> None:
    verify(f"bearer {token()}", BODY, [SECRET], now=NOW)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"iat": NOW - 301}, "stale token"),
        ({"iat": NOW + 61}, "future token"),
        ({"iat": None}, "missing iat"),
        ({"iat": "1800000000"}, "malformed iat"),
        ({"iat": True}, "malformed iat"),
        ({"iat": float("nan")}, "malformed iat"),
        ({"iat": 10**400}, "malformed iat"),
        ({"exp": NOW - 61}, "expired token"),
        ({"nbf": NOW + 61}, "future token"),
        ({"payload_hash": None}, "missing payload_hash"),
        ({"payload_hash": 42}, "missing payload_hash"),
        ({"payload_hash": "abc"}, "malformed payload_hash"),
        ({"payload_hash": hashlib.sha256(b"other").hexdigest()}, "payload hash mismatch"),
    ],
)
def test_claims_that_fail_their_checks_are_refused(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidSignature) as caught:
        verify(bearer(token(claims(changes=changes))), BODY, [SECRET], now=NOW)
    assert caught.value.reason == reason


@pytest.mark.parametrize("iat", [NOW - 300, NOW + 60])
def test_tokens_at_the_edge_of_their_window_are_accepted(iat: int) -> None:
    verify(bearer(token(claims(changes={"iat": iat}))), BODY, [SECRET], now=NOW)


def test_an_upper_case_payload_hash_is_accepted() -> None:
    upper = hashlib.sha256(BODY).hexdigest().upper()
    verify(bearer(token(claims(changes={"payload_hash": upper}))), BODY, [SECRET], now=NOW)


def test_no_configured_secret_refuses_everything() -> None:
    with pytest.raises(InvalidSignature, match="no key configured"):
        verify(bearer(token()), BODY, [], now=NOW)


def test_the_reason_never_carries_the_secret_or_the_token() -> None:
    presented = token(secret=OTHER_SECRET)
    with pytest.raises(InvalidSignature) as caught:
        verify(bearer(presented), BODY, [SECRET], now=NOW)
    assert SECRET not in str(caught.value)
    assert presented not in str(caught.value)

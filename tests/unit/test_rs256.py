"""RS256 as the stack signs Vonage's application JWTs (adapters/call_control/rs256.py), held to ``cryptography``
(every signature verifies with the public key, and equals the one cryptography makes: PKCS#1 v1.5 is
deterministic) and to PyJWT (every token decodes with the public key, header and claims as written)."""

from __future__ import annotations

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from millis_sip.adapters.call_control import rs256

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PKCS8 = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
PKCS1 = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
).decode()


@pytest.mark.parametrize("pem", [PKCS8, PKCS1], ids=["pkcs8", "pkcs1"])
def test_both_pem_forms_read_the_same_key(pem: str) -> None:
    key = rs256.load_pem(pem)
    numbers = KEY.private_numbers()
    assert (key.n, key.e, key.d, key.p, key.q) == (
        numbers.public_numbers.n,
        numbers.public_numbers.e,
        numbers.d,
        numbers.p,
        numbers.q,
    )


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=600))
def test_every_signature_is_the_one_cryptography_makes(message: bytes) -> None:
    ours = rs256.load_pem(PKCS8).sign(message)
    assert ours == KEY.sign(message, padding.PKCS1v15(), hashes.SHA256())
    KEY.public_key().verify(ours, message, padding.PKCS1v15(), hashes.SHA256())


def test_a_token_decodes_with_pyjwt_and_the_public_key() -> None:
    claims = {"application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "iat": 1700000000, "jti": "x-1"}
    token = rs256.jwt(claims, rs256.load_pem(PKCS8))
    assert pyjwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT"}
    assert pyjwt.decode(token, KEY.public_key(), algorithms=["RS256"], options={"verify_iat": False}) == claims


@pytest.mark.parametrize(
    ("pem", "says"),
    [
        ("not a key", "not a PEM RSA private key"),
        ("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----", "not base64"),
        ("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----", "malformed"),
        ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----", "encrypted"),
        (PKCS8.replace("MII", "MIJ", 1), "malformed"),  # a damaged length
    ],
)
def test_an_unreadable_key_is_refused_with_what_is_wrong(pem: str, says: str) -> None:
    with pytest.raises(rs256.UnreadableKey, match=says):
        rs256.load_pem(pem)


def test_an_ec_key_is_not_taken_for_rsa() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with pytest.raises(rs256.UnreadableKey, match="not an RSA key"):
        rs256.load_pem(pem)


def test_a_faulty_private_operation_never_leaves() -> None:
    """A key whose CRT exponent is damaged (as a fault would) signs nothing: the check with e refuses it."""
    from dataclasses import replace

    damaged = replace(rs256.load_pem(PKCS8), dp=rs256.load_pem(PKCS8).dp + 2)
    with pytest.raises(ArithmeticError):
        damaged.sign(b"payload")

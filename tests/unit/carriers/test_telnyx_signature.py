"""Telnyx's Ed25519 webhook signature. Telnyx signs with its private key; here PyNaCl (what telnyx-python
uses) and, as a second implementation, cryptography sign with a test key pair, and the official SDK's
``verify_webhook_signature`` must agree with what we accept."""

from __future__ import annotations

import base64
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.signing import SigningKey

from millis_sip.edges.carriers import InvalidSignature
from millis_sip.edges.carriers.telnyx import verify

NOW = 1_800_000_000
SIGNED_AT = str(NOW - 5)
# A TeXML POST is form-encoded, an API v2 webhook is JSON: the signature covers the raw bytes either way.
TEXML_BODY = b"AccountSid=acc&CallSid=v3%3Aabc&From=%2B14155550100&To=%2B14155550199&CallStatus=ringing"
JSON_BODY = b'{"data":{"event_type":"call.initiated","payload":{"call_control_id":"v3:abc"}}}'
KEY = SigningKey(b"\x01" * 32)
OTHER_KEY = SigningKey(b"\x02" * 32)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def public(key: SigningKey) -> str:
    return b64(bytes(key.verify_key))


def sign(body: bytes, timestamp: str = SIGNED_AT, key: SigningKey = KEY) -> str:
    return b64(key.sign(timestamp.encode() + b"|" + body).signature)


@pytest.mark.parametrize("body", [TEXML_BODY, JSON_BODY, b""])
def test_a_request_signed_by_the_account_key_is_accepted(body: bytes) -> None:
    verify(body, sign(body), SIGNED_AT, [public(KEY)], now=NOW)


def test_a_signature_made_by_another_ed25519_implementation_is_accepted() -> None:
    private = Ed25519PrivateKey.from_private_bytes(b"\x03" * 32)
    key = b64(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    presented = b64(private.sign(SIGNED_AT.encode() + b"|" + TEXML_BODY))
    verify(TEXML_BODY, presented, SIGNED_AT, [key], now=NOW)


def test_a_tampered_body_is_refused() -> None:
    presented = sign(TEXML_BODY)
    with pytest.raises(InvalidSignature) as caught:
        verify(TEXML_BODY.replace(b"ringing", b"completed"), presented, SIGNED_AT, [public(KEY)], now=NOW)
    assert caught.value.reason == "signature mismatch"


def test_a_replayed_signature_under_a_fresh_timestamp_is_refused() -> None:
    presented = sign(TEXML_BODY, timestamp=str(NOW - 3600))
    with pytest.raises(InvalidSignature, match="signature mismatch"):
        verify(TEXML_BODY, presented, SIGNED_AT, [public(KEY)], now=NOW)


def test_another_key_is_refused() -> None:
    with pytest.raises(InvalidSignature, match="signature mismatch"):
        verify(TEXML_BODY, sign(TEXML_BODY, key=OTHER_KEY), SIGNED_AT, [public(KEY)], now=NOW)


def test_a_second_configured_key_keeps_working_during_a_rotation() -> None:
    verify(TEXML_BODY, sign(TEXML_BODY, key=OTHER_KEY), SIGNED_AT, [public(KEY), public(OTHER_KEY)], now=NOW)


@pytest.mark.parametrize(
    ("signed_at", "reason"),
    [(str(NOW - 301), "stale timestamp"), (str(NOW + 301), "future timestamp")],
)
def test_timestamps_beyond_the_tolerance_are_refused_even_when_signed(signed_at: str, reason: str) -> None:
    presented = sign(TEXML_BODY, timestamp=signed_at)
    with pytest.raises(InvalidSignature) as caught:
        verify(TEXML_BODY, presented, signed_at, [public(KEY)], now=NOW)
    assert caught.value.reason == reason


@pytest.mark.parametrize("signed_at", [str(NOW - 300), str(NOW + 300)])
def test_timestamps_at_the_edge_of_the_tolerance_are_accepted(signed_at: str) -> None:
    verify(TEXML_BODY, sign(TEXML_BODY, timestamp=signed_at), signed_at, [public(KEY)], now=NOW)


def test_the_tolerance_is_configurable() -> None:
    signed_at = str(NOW - 30)
    with pytest.raises(InvalidSignature, match="stale timestamp"):
        verify(
            TEXML_BODY, sign(TEXML_BODY, timestamp=signed_at), signed_at, [public(KEY)], now=NOW, tolerance_seconds=10
        )


@pytest.mark.parametrize(
    ("presented", "timestamp", "reason"),
    [
        (None, SIGNED_AT, "missing signature"),
        ("", SIGNED_AT, "missing signature"),
        ("sig", None, "missing timestamp"),
        ("sig", "", "missing timestamp"),
    ],
)
def test_missing_headers_are_refused(presented: str | None, timestamp: str | None, reason: str) -> None:
    with pytest.raises(InvalidSignature) as caught:
        verify(TEXML_BODY, presented, timestamp, [public(KEY)], now=NOW)
    assert caught.value.reason == reason


@pytest.mark.parametrize("timestamp", ["1.8e9", "-1800000000", "0x6b49d200", "soon", "1800000000000000", "１８０"])
def test_malformed_timestamps_are_refused(timestamp: str) -> None:
    with pytest.raises(InvalidSignature, match="malformed timestamp"):
        verify(TEXML_BODY, sign(TEXML_BODY), timestamp, [public(KEY)], now=NOW)


@pytest.mark.parametrize(
    "presented",
    [
        "not base64!!",
        b64(b"\x00" * 63),
        b64(b"\x00" * 65),
        sign(TEXML_BODY)[:-4],
        "é" * 88,
    ],
)
def test_malformed_signatures_are_refused(presented: str) -> None:
    with pytest.raises(InvalidSignature, match="malformed signature"):
        verify(TEXML_BODY, presented, SIGNED_AT, [public(KEY)], now=NOW)


@pytest.mark.parametrize("key", ["not a key", b64(b"\x01" * 31), b64(b"\x01" * 33)])
def test_a_malformed_configured_key_refuses_without_echoing_it(key: str) -> None:
    with pytest.raises(InvalidSignature) as caught:
        verify(TEXML_BODY, sign(TEXML_BODY), SIGNED_AT, [key], now=NOW)
    assert caught.value.reason == "malformed key configured"
    assert key not in str(caught.value)


def test_no_configured_key_refuses_everything() -> None:
    with pytest.raises(InvalidSignature, match="no key configured"):
        verify(TEXML_BODY, sign(TEXML_BODY), SIGNED_AT, [], now=NOW)


def telnyx_sdk_verifier() -> Callable[[bytes, Mapping[str, str], str], None]:
    """telnyx-python's ``lib/webhook_verification.py``, loaded by path: it imports only the standard library
    (and PyNaCl when called), while importing the ``telnyx`` package would cost about four seconds."""
    package = importlib.util.find_spec("telnyx")
    assert package is not None and package.origin is not None
    spec = importlib.util.spec_from_file_location(
        "telnyx_sdk_webhook_verification", Path(package.origin).parent / "lib" / "webhook_verification.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return cast("Callable[[bytes, Mapping[str, str], str], None]", module.verify_webhook_signature)


@pytest.mark.parametrize(
    ("age", "signer", "tamper", "accepted"),
    [
        (0, KEY, False, True),
        (250, KEY, False, True),
        (0, KEY, True, False),
        (0, OTHER_KEY, False, False),
        (400, KEY, False, False),
        (-400, KEY, False, False),
    ],
)
def test_the_official_sdk_agrees_with_what_we_accept(
    age: int, signer: SigningKey, tamper: bool, accepted: bool
) -> None:
    sdk_verify = telnyx_sdk_verifier()
    now = time.time()  # the SDK reads the real clock
    signed_at = str(int(now) - age)
    presented = sign(TEXML_BODY, timestamp=signed_at, key=signer)
    body = TEXML_BODY.replace(b"ringing", b"completed") if tamper else TEXML_BODY
    headers = {"Telnyx-Signature-Ed25519": presented, "Telnyx-Timestamp": signed_at}
    try:
        sdk_verify(body, headers, public(KEY))
        sdk_accepted = True
    except Exception:  # noqa: BLE001 - the SDK's WebhookVerificationError, from a module loaded by path
        sdk_accepted = False
    try:
        verify(body, presented, signed_at, [public(KEY)], now=now)
        ours = True
    except InvalidSignature:
        ours = False
    assert (ours, sdk_accepted) == (accepted, accepted)


def test_importing_the_carrier_edges_does_not_import_pynacl() -> None:
    layer = Path(__file__).resolve().parents[3] / "layers" / "millis_sip"
    code = (
        "import sys\n"
        "import millis_sip.edges.carriers.telnyx, millis_sip.edges.carriers.twilio\n"
        "import millis_sip.edges.carriers.vonage, millis_sip.edges.carriers.plivo\n"
        "sys.exit(1 if 'nacl' in sys.modules else 0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(layer)}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0

"""Carrier webhooks as each carrier signs them, with the carriers' own libraries (development and test
dependencies only, never in the layer): Twilio's and SignalWire's with twilio's ``RequestValidator``
(signalwire-python's validator delegates to it), Telnyx's with an Ed25519 key pair (PyNaCl, what Telnyx's SDK
verifies with), Vonage's with an HS256 JWT carrying the payload's hash (PyJWT, what vonage-jwt verifies),
Plivo's with the plivo SDK's V3 signer. ``make demo`` and the tests sign through this one module.

``CarrierKeys`` are one set of carrier credentials (``env()``: what InboundFunction must hold to accept them);
``SignedCarrier`` sends signed requests to the stack at a base URL. Its keyword arguments sign otherwise
(another key, secret, application or token, another time, another URL), as a forger or a misconfigured account
would."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from nacl.signing import SigningKey
from plivo.utils.signature_v3 import construct_post_url, get_signature_v3  # type: ignore[import-untyped]
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]


@dataclass(frozen=True)
class CarrierKeys:
    twilio_auth_token: str
    telnyx_seed: bytes  # the Ed25519 private key's 32-byte seed; Telnyx's public key is derived from it
    vonage_secret: str  # 32 bytes or more, as RFC 7518 asks of an HS256 key
    vonage_application: str
    plivo_auth_token: str

    @property
    def telnyx_key(self) -> SigningKey:
        return SigningKey(self.telnyx_seed)

    def env(self) -> dict[str, str]:
        """InboundFunction's settings that accept requests signed with these keys."""
        return {
            "TWILIO_AUTH_TOKEN": self.twilio_auth_token,
            "TELNYX_PUBLIC_KEY": base64.b64encode(bytes(self.telnyx_key.verify_key)).decode(),
            "VONAGE_SIGNATURE_SECRET": self.vonage_secret,
            "VONAGE_APPLICATION_ID": self.vonage_application,
            "PLIVO_AUTH_TOKEN": self.plivo_auth_token,
        }


# The credentials of `make demo` and `make serve` (docs/development.md): local values, no account behind them.
LOCAL_KEYS = CarrierKeys(
    twilio_auth_token="local-twilio-auth-token",  # noqa: S106
    telnyx_seed=bytes(range(32)),
    vonage_secret="local-vonage-signature-secret-0123456789",  # noqa: S106
    vonage_application="5ca1ab1e-0000-4000-8000-00000000dead",
    plivo_auth_token="bG9jYWwtcGxpdm8tYXV0aC10b2tlbg",  # noqa: S106
)


def twilio_signature(url: str, params: Any, token: str) -> str:
    """``X-Twilio-Signature`` for a POST of ``params`` (a mapping, or a multi-dict with repeated fields) to
    ``url``, as Twilio computes it."""
    return str(RequestValidator(token).compute_signature(url, params))  # a MultiDict keeps its repeated fields


def telnyx_headers(body: bytes, key: SigningKey, *, signed_at: float | None = None) -> dict[str, str]:
    """Telnyx's Ed25519 signature over ``timestamp|body``, and the timestamp."""
    stamp = str(int(signed_at if signed_at is not None else time.time()))
    return {
        "telnyx-signature-ed25519": base64.b64encode(key.sign(f"{stamp}|".encode() + body).signature).decode(),
        "telnyx-timestamp": stamp,
    }


def vonage_token(payload: bytes, secret: str, application: str) -> str:
    """Vonage's signed-webhook JWT (HS256) over ``payload``: its SHA-256 in ``payload_hash``."""
    claims = {
        "iat": int(time.time()),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(payload).hexdigest(),
        "api_key": "abcd1234",
        "application_id": application,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def plivo_headers(url: str, params: Mapping[str, str], token: str) -> dict[str, str]:
    """``X-Plivo-Signature-V3`` and its nonce for a POST of ``params`` to ``url``, with Plivo's own signer."""
    nonce = str(uuid.uuid4().int)[:20]
    signed = construct_post_url(url, dict(params)).decode()
    return {
        "X-Plivo-Signature-V3": get_signature_v3(token, signed, nonce).decode(),
        "X-Plivo-Signature-V3-Nonce": nonce,
    }


class SignedCarrier:
    """Signed requests to the stack at ``base_url`` (``path`` may carry a query), one method per carrier."""

    def __init__(self, base_url: str, http: httpx.Client, keys: CarrierKeys = LOCAL_KEYS) -> None:
        self.base_url = base_url
        self.http = http
        self.keys = keys

    def twilio(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        signalwire: bool = False,
        token: str | None = None,
        signed_url: str | None = None,
    ) -> httpx.Response:
        url = signed_url or f"{self.base_url}{path}"
        signature = twilio_signature(url, params, token or self.keys.twilio_auth_token)
        header = "X-SignalWire-Signature" if signalwire else "X-Twilio-Signature"
        return self.http.post(path, data=dict(params), headers={header: signature})

    def telnyx(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        method: str = "POST",
        signed_at: float | None = None,
        key: SigningKey | None = None,
    ) -> httpx.Response:
        body = urlencode(dict(params)).encode() if method == "POST" else b""
        headers = telnyx_headers(body, key or self.keys.telnyx_key, signed_at=signed_at)
        if method == "GET":
            return self.http.get(path, params=dict(params), headers=headers)
        headers["content-type"] = "application/x-www-form-urlencoded"
        return self.http.post(path, content=body, headers=headers)

    def vonage_token(self, payload: bytes, *, secret: str | None = None, app: str | None = None) -> str:
        return vonage_token(payload, secret or self.keys.vonage_secret, app or self.keys.vonage_application)

    def vonage(
        self,
        path: str,
        payload: Mapping[str, Any],
        *,
        method: str = "POST",
        secret: str | None = None,
        app: str | None = None,
    ) -> httpx.Response:
        if method == "GET":  # Vonage hashes a GET's query as a compact JSON object, in URL order
            hashed = json.dumps(dict(payload), separators=(",", ":")).encode()
            headers = {"Authorization": f"Bearer {self.vonage_token(hashed, secret=secret, app=app)}"}
            return self.http.get(path, params=dict(payload), headers=headers)
        body = json.dumps(dict(payload)).encode()
        token = self.vonage_token(body, secret=secret, app=app)
        return self.http.post(
            path, content=body, headers={"Authorization": f"Bearer {token}", "content-type": "application/json"}
        )

    def plivo(self, path: str, params: Mapping[str, str], *, token: str | None = None) -> httpx.Response:
        headers = plivo_headers(f"{self.base_url}{path}", params, token or self.keys.plivo_auth_token)
        return self.http.post(path, data=dict(params), headers=headers)

"""Vonage's signed webhooks: ``Authorization: Bearer <JWT>``, HS256 with the account's signature secret.

What Vonage sends (developer.vonage.com/en/getting-started/concepts/webhooks, "Decoding signed webhooks";
Voice API webhook reference, "Signed Webhooks"): header ``{"alg": "HS256", "typ": "JWT"}``; claims ``iat``
(Unix seconds), ``jti``, ``iss`` ("Vonage"), ``payload_hash``, ``api_key`` and, for an application,
``application_id``; no ``exp``. ``payload_hash`` is the lower-case hex SHA-256 of the payload: for a POST the
JSON body, for a GET the query parameters written as a compact JSON object in URL order (Vonage support,
"How do I verify that the Voice API Webhook request and its payload has not been tampered during transit";
the official Node snippet hashes ``JSON.stringify(Object.assign(query, body))``).

The official Python helper (vonage-jwt ``verify_signature``, used by vonage-voice ``Voice.verify_signature``)
checks only the HS256 signature with PyJWT. This module also pins the algorithm, checks ``payload_hash`` and
the token's age, and parses the JWT with the standard library: with one fixed algorithm and a symmetric key
there is nothing a JWT library adds, and the classic JWT flaws (``alg: none``, algorithm confusion) cannot
arise when anything but ``HS256`` is refused before the signature is looked at.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Sequence

from millis_sip.edges.carriers import InvalidSignature

AUTHORIZATION_HEADER = "Authorization"
_MAX_TOKEN_LENGTH = 8192
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def verify(
    authorization: str | None,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    max_age_seconds: int = 300,
    leeway_seconds: int = 60,
) -> dict[str, object]:
    """Return the verified claims, or raise ``InvalidSignature``.

    ``authorization`` is the ``Authorization`` header value; ``body`` is what Vonage hashed: the raw body of
    a POST, or ``query_payload(params)`` for a GET. ``secrets`` are the account's signature secrets (two while
    one is rotated). The token must have been issued at most ``max_age_seconds`` ago and at most
    ``leeway_seconds`` in the future (clock skew). The caller may further check ``api_key`` and
    ``application_id`` in the returned claims against its own configuration.
    """
    if not secrets:
        raise InvalidSignature("no key configured")
    token = _bearer_token(authorization)
    header_b64, claims_b64, signature_b64 = _segments(token)
    header = _json_object(header_b64)
    if header.get("alg") != "HS256":
        raise InvalidSignature("unsupported alg")
    if "crit" in header:
        raise InvalidSignature("unsupported header")
    signing_input = f"{header_b64}.{claims_b64}".encode("ascii")
    presented = _b64url_decode(signature_b64)
    if not any(
        hmac.compare_digest(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest(), presented)
        for secret in secrets
    ):
        raise InvalidSignature("signature mismatch")
    claims = _json_object(claims_b64)
    _check_times(claims, now, max_age_seconds, leeway_seconds)
    _check_payload_hash(claims, body)
    return claims


def query_payload(params: Sequence[tuple[str, str]]) -> bytes:
    """What Vonage hashes for a GET webhook: the query parameters as a compact JSON object, in URL order."""
    return json.dumps(dict(params), separators=(",", ":"), ensure_ascii=False).encode()


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise InvalidSignature("missing authorization")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidSignature("malformed authorization")
    return token


def _segments(token: str) -> tuple[str, str, str]:
    parts = token.split(".")
    if len(token) > _MAX_TOKEN_LENGTH or len(parts) != 3 or not all(_SEGMENT.fullmatch(part) for part in parts):
        raise InvalidSignature("malformed token")
    return parts[0], parts[1], parts[2]


def _b64url_decode(segment: str) -> bytes:
    """Unpadded base64url (RFC 7515): ``_segments`` already allowed only that alphabet."""
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidSignature("malformed token") from None


def _json_object(segment: str) -> dict[str, object]:
    try:
        value = json.loads(_b64url_decode(segment))
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise InvalidSignature("malformed token") from None
    if not isinstance(value, dict):
        raise InvalidSignature("malformed token")
    return value


def _number(claims: dict[str, object], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSignature(f"malformed {name}")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidSignature(f"malformed {name}") from None
    if not math.isfinite(number):  # json.loads accepts NaN and Infinity
        raise InvalidSignature(f"malformed {name}")
    return number


def _check_times(claims: dict[str, object], now: float, max_age: int, leeway: int) -> None:
    issued_at = _number(claims, "iat")
    if issued_at is None:
        raise InvalidSignature("missing iat")
    if issued_at < now - max_age:
        raise InvalidSignature("stale token")
    if issued_at > now + leeway:
        raise InvalidSignature("future token")
    expires = _number(claims, "exp")  # Vonage sends none today; honour one if it appears
    if expires is not None and now >= expires + leeway:
        raise InvalidSignature("expired token")
    not_before = _number(claims, "nbf")
    if not_before is not None and now < not_before - leeway:
        raise InvalidSignature("future token")


def _check_payload_hash(claims: dict[str, object], body: bytes) -> None:
    claimed = claims.get("payload_hash")
    if not isinstance(claimed, str):
        raise InvalidSignature("missing payload_hash")
    if not _HEX_SHA256.fullmatch(claimed):
        raise InvalidSignature("malformed payload_hash")
    wanted = claimed.lower().encode("ascii")
    if not any(hmac.compare_digest(hashlib.sha256(form).hexdigest().encode(), wanted) for form in _payload_forms(body)):
        raise InvalidSignature("payload hash mismatch")


def _payload_forms(body: bytes) -> list[bytes]:
    """The body as received and, for a JSON object, its compact form (Vonage hashes the compact JSON)."""
    forms = [body]
    try:
        value = json.loads(body)
    except ValueError:
        return forms
    if isinstance(value, dict):
        compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        if compact != body:
            forms.append(compact)
    return forms

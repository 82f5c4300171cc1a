"""RS256 JSON Web Tokens (RFC 7515, RFC 7518 §3.3) signed with an RSA private key in PEM, for the carriers whose
REST APIs take one (Vonage: a JWT of the application, signed with its private key).

Written here rather than taken from ``cryptography`` (whose aarch64 wheel unpacks to 14 MB in a layer the phone
functions share, for one signature per outbound call): RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2) over
the standard library's modular arithmetic, with the two defences a signer owes its key:

* blinding (RFC 8017's advice against timing attacks): the private operation runs on ``m * r^e mod n`` for a
  fresh random ``r``, so its time says nothing about the message;
* the signature is verified with the public exponent before it leaves (a fault in the CRT computation would
  otherwise reveal a factor of ``n``).

Keys: PKCS#8 (``BEGIN PRIVATE KEY``, what Vonage's dashboard and API hand out) or PKCS#1 (``BEGIN RSA PRIVATE
KEY``), unencrypted. The tests check every signature against ``cryptography`` and every token against PyJWT.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

# DigestInfo for SHA-256 (RFC 8017 §9.2, note 1): the DER prefix of the hash in EMSA-PKCS1-v1_5.
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
_RSA_ENCRYPTION_OID = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1


class UnreadableKey(ValueError):
    """The private key cannot be read (not PEM, not RSA, encrypted, or malformed)."""


@dataclass(frozen=True, slots=True)
class RsaKey:
    n: int
    e: int
    d: int
    p: int
    q: int
    dp: int
    dq: int
    qinv: int

    @property
    def size(self) -> int:
        return (self.n.bit_length() + 7) // 8

    def sign(self, message: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 of ``message``."""
        digest = _SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
        padding = self.size - len(digest) - 3
        if padding < 8:
            raise UnreadableKey("the key is too short for SHA-256 signatures")
        encoded = int.from_bytes(b"\x00\x01" + b"\xff" * padding + b"\x00" + digest, "big")
        while True:  # a blinding factor that has an inverse modulo n (any r not a multiple of p or q)
            r = secrets.randbelow(self.n - 2) + 2
            if r % self.p and r % self.q:
                break
        blinded = (encoded * pow(r, self.e, self.n)) % self.n
        m1, m2 = pow(blinded, self.dp, self.p), pow(blinded, self.dq, self.q)
        signed = (m2 + self.q * ((self.qinv * (m1 - m2)) % self.p)) % self.n
        signature = (signed * pow(r, -1, self.n)) % self.n
        if pow(signature, self.e, self.n) != encoded:  # a faulty computation must never leave
            raise ArithmeticError("RSA signature check failed")
        return signature.to_bytes(self.size, "big")


def load_pem(pem: str) -> RsaKey:
    """An RSA private key from PEM (PKCS#8 or PKCS#1, unencrypted)."""
    text = pem.strip()
    if "ENCRYPTED" in text:
        raise UnreadableKey("the private key is encrypted: store it unencrypted in the secret")
    for label in ("PRIVATE KEY", "RSA PRIVATE KEY"):
        begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
        if text.startswith(begin) and end in text:
            body = "".join(text[len(begin) : text.index(end)].split())
            try:
                der = base64.b64decode(body, validate=True)
            except ValueError:
                raise UnreadableKey("the private key's PEM is not base64") from None
            return _pkcs1(_pkcs8(der) if label == "PRIVATE KEY" else der)
    raise UnreadableKey("not a PEM RSA private key (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)")


def jwt(claims: dict[str, Any], key: RsaKey) -> str:
    """A compact JWS of ``claims`` with ``{"alg": "RS256", "typ": "JWT"}``."""
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    return f"{header}.{payload}.{_b64(key.sign(signing_input))}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


# --- DER, just enough for the two key formats -------------------------------------------------------------


def _pkcs8(der: bytes) -> bytes:
    """PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier, OCTET STRING privateKey, ... }."""
    info, rest = _read(der, 0x30)
    if rest:
        raise UnreadableKey("trailing bytes after the key")
    _version, info = _read(info, 0x02)
    algorithm, info = _read(info, 0x30)
    oid, _ = _read(algorithm, 0x06)
    if oid != _RSA_ENCRYPTION_OID:
        raise UnreadableKey("not an RSA key")
    private, _ = _read(info, 0x04)
    return private


def _pkcs1(der: bytes) -> RsaKey:
    """RSAPrivateKey ::= SEQUENCE { version, n, e, d, p, q, dp, dq, qinv }."""
    body, rest = _read(der, 0x30)
    if rest:
        raise UnreadableKey("trailing bytes after the key")
    numbers = []
    for _ in range(9):
        value, body = _read(body, 0x02)
        numbers.append(int.from_bytes(value, "big", signed=True))
    version, n, e, d, p, q, dp, dq, qinv = numbers
    if version != 0 or min(n, e, d, p, q, dp, dq, qinv) <= 0 or p * q != n:
        raise UnreadableKey("a malformed RSA key")
    return RsaKey(n, e, d, p, q, dp, dq, qinv)


def _read(data: bytes, tag: int) -> tuple[bytes, bytes]:
    """One DER element of ``tag`` at the start of ``data``: its contents, and what follows."""
    if len(data) < 2 or data[0] != tag:
        raise UnreadableKey("a malformed key (unexpected DER)")
    length, offset = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            raise UnreadableKey("a malformed key (DER length)")
        length, offset = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
    if len(data) < offset + length:
        raise UnreadableKey("a malformed key (truncated)")
    return data[offset : offset + length], data[offset + length :]

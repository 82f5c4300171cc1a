"""Carrier webhooks as each carrier sends and signs them, for end-to-end tests through the local API: Twilio's and
SignalWire's signed by twilio's own RequestValidator (signalwire-python's validator delegates to it), Telnyx's
with an Ed25519 key pair (PyNaCl, what Telnyx's SDK verifies with), Vonage's with an HS256 JWT carrying the
payload's hash (PyJWT, what vonage-jwt verifies), Plivo's with the plivo SDK's V3 signer. ``inbound_env`` is what
InboundFunction must be given to hold the matching credentials; ``inbound_server`` serves it behind the template's
routes; ``pending_registration`` stores what a backend's POST /calls would have."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from nacl.signing import SigningKey
from plivo.utils.signature_v3 import construct_post_url, get_signature_v3  # type: ignore[import-untyped]
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from dev.local_api import LocalApi
from millis_sip.core.calls import CallerVerification, CallRecord, CallStatus
from millis_sip.core.clock import SystemClock
from millis_sip.core.ports import CallStore
from millis_sip.core.sip import parse_sip_uri
from tests.support.rig import TWILIO_AUTH_TOKEN

TELNYX_KEY = SigningKey(b"\x0b" * 32)
VONAGE_SECRET = "corpus-vonage-signature-secret-0123"  # 32 bytes or more, as RFC 7518 asks of an HS256 key
VONAGE_APP = "aaaaaaaa-bbbb-cccc-dddd-ffffffffffff"
PLIVO_TOKEN = "Q29ycHVzUGxpdm9BdXRoVG9rZW4xMjM0NTY3OA"


def inbound_env() -> dict[str, str]:
    """InboundFunction's settings for these credentials (Twilio's token is the rig's default)."""
    return {
        "TELNYX_PUBLIC_KEY": base64.b64encode(bytes(TELNYX_KEY.verify_key)).decode(),
        "VONAGE_SIGNATURE_SECRET": VONAGE_SECRET,
        "VONAGE_APPLICATION_ID": VONAGE_APP,
        "PLIVO_AUTH_TOKEN": PLIVO_TOKEN,
    }


class CarrierRequests:
    """Signed requests to the stack at ``base_url``, one method per carrier (``path`` may carry a query). The
    keyword arguments sign otherwise (another key, secret, application or token; another time), as a forger
    or a misconfigured account would."""

    def __init__(self, base_url: str, http: httpx.Client) -> None:
        self.base_url = base_url
        self.http = http

    def twilio(self, path: str, params: Mapping[str, str], *, signalwire: bool = False) -> httpx.Response:
        signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(f"{self.base_url}{path}", dict(params))
        header = "X-SignalWire-Signature" if signalwire else "X-Twilio-Signature"
        return self.http.post(path, data=dict(params), headers={header: signature})

    def telnyx(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        method: str = "POST",
        signed_at: float | None = None,
        key: SigningKey = TELNYX_KEY,
    ) -> httpx.Response:
        body = urlencode(dict(params)).encode() if method == "POST" else b""
        stamp = str(int(signed_at if signed_at is not None else time.time()))
        headers = {
            "telnyx-signature-ed25519": base64.b64encode(key.sign(f"{stamp}|".encode() + body).signature).decode(),
            "telnyx-timestamp": stamp,
        }
        if method == "GET":
            return self.http.get(path, params=dict(params), headers=headers)
        headers["content-type"] = "application/x-www-form-urlencoded"
        return self.http.post(path, content=body, headers=headers)

    def vonage_token(self, payload: bytes, *, secret: str = VONAGE_SECRET, app: str = VONAGE_APP) -> str:
        claims = {
            "iat": int(time.time()),
            "jti": str(uuid.uuid4()),
            "iss": "Vonage",
            "payload_hash": hashlib.sha256(payload).hexdigest(),
            "api_key": "abcd1234",
            "application_id": app,
        }
        return jwt.encode(claims, secret, algorithm="HS256")

    def vonage(
        self,
        path: str,
        payload: Mapping[str, Any],
        *,
        method: str = "POST",
        secret: str = VONAGE_SECRET,
        app: str = VONAGE_APP,
    ) -> httpx.Response:
        if method == "GET":  # Vonage hashes a GET's query as a compact JSON object, in URL order
            hashed = json.dumps(dict(payload), separators=(",", ":")).encode()
            headers = {"Authorization": f"Bearer {self.vonage_token(hashed, secret=secret, app=app)}"}
            return self.http.get(path, params=dict(payload), headers=headers)
        body = json.dumps(dict(payload)).encode()
        token = self.vonage_token(body, secret=secret, app=app)
        headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
        return self.http.post(path, content=body, headers=headers)

    def plivo(self, path: str, params: Mapping[str, str], *, token: str = PLIVO_TOKEN) -> httpx.Response:
        nonce = str(uuid.uuid4().int)[:20]
        signed = construct_post_url(f"{self.base_url}{path}", dict(params)).decode()
        headers = {
            "X-Plivo-Signature-V3": get_signature_v3(token, signed, nonce).decode(),
            "X-Plivo-Signature-V3-Nonce": nonce,
        }
        return self.http.post(path, data=dict(params), headers=headers)


@contextmanager
def inbound_server(make_inbound: Callable[..., ModuleType], api_key: str) -> Iterator[LocalApi]:
    """The local API with InboundFunction behind the template's routes, holding these credentials and calling
    itself by the server's URL (what each carrier is configured with)."""
    functions: dict[str, ModuleType] = {}
    server = LocalApi(
        lambda e, c: e,
        api_key=api_key,
        port=0,
        functions={"InboundFunction": lambda e, c: functions["inbound"].lambda_handler(e, c)},
    )
    functions["inbound"] = make_inbound(PUBLIC_BASE_URL=server.url, **inbound_env())
    with server:
        yield server


def pending_registration(store: CallStore, number: str, verification: CallerVerification) -> CallRecord:
    """A registration a backend made for ``number``, stored as POST /calls stores it (on the simulator's us-west)."""
    now, call_id = SystemClock().now(), f"crm-{uuid.uuid4().hex[:12]}"
    record = CallRecord(
        call_id,
        parse_sip_uri(f"sip:call-{call_id}@sip-us-west.millis-simulator.test"),
        "us-west",
        CallStatus.REGISTERED,
        now,
        now + timedelta(hours=1),
        lookup_key=number,
        caller_verification=verification,
    )
    store.put_new(record)
    return record

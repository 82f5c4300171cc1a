"""Carrier webhooks as each carrier sends and signs them, for end-to-end tests through the local API: the
signing is ``dev/carrier_signing.py`` (the carriers' own libraries, the same module ``make demo`` signs with),
under the tests' own keys. ``inbound_env`` is what InboundFunction must be given to hold the matching
credentials; ``inbound_server`` serves it behind the template's routes; ``pending_registration`` stores what a
backend's POST /calls would have."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import ModuleType
from typing import Any

import httpx
from nacl.signing import SigningKey

from dev.carrier_signing import CarrierKeys, SignedCarrier
from dev.local_api import LocalApi
from millis_sip.core.calls import CallerVerification, CallRecord, CallStatus
from millis_sip.core.clock import SystemClock
from millis_sip.core.ports import CallStore
from millis_sip.core.sip import parse_sip_uri
from tests.support.rig import TWILIO_AUTH_TOKEN

TEST_KEYS = CarrierKeys(
    twilio_auth_token=TWILIO_AUTH_TOKEN,
    telnyx_seed=b"\x0b" * 32,
    vonage_secret="corpus-vonage-signature-secret-0123",
    vonage_application="aaaaaaaa-bbbb-cccc-dddd-ffffffffffff",
    plivo_auth_token="Q29ycHVzUGxpdm9BdXRoVG9rZW4xMjM0NTY3OA",
)
TELNYX_KEY: SigningKey = TEST_KEYS.telnyx_key
VONAGE_SECRET = TEST_KEYS.vonage_secret
VONAGE_APP = TEST_KEYS.vonage_application
PLIVO_TOKEN = TEST_KEYS.plivo_auth_token


def inbound_env() -> dict[str, str]:
    """InboundFunction's settings for these credentials (Twilio's token is the rig's default)."""
    return {name: value for name, value in TEST_KEYS.env().items() if name != "TWILIO_AUTH_TOKEN"}


class CarrierRequests(SignedCarrier):
    """Signed requests to the stack at ``base_url`` under the tests' keys."""

    def __init__(self, base_url: str, http: httpx.Client) -> None:
        super().__init__(base_url, http, TEST_KEYS)


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


def vonage_key() -> tuple[str, Any]:
    """A Vonage application's key pair, as the dashboard hands out its private key (PKCS#8 PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode(), key.public_key()

"""What the keys secret (the KeysSecret secret, which never leaves the stack) keys: the lookup index and the
numbers' hourly counters, so that DynamoDB holds no phone number anyone could read back from them (a keyed hash,
not a plain one: six to fifteen digits are quickly guessed); the PINs of registrations, derived again from the
call id whenever they are needed instead of being stored anywhere, in clear or hashed (a hash of six digits is a
million guesses away); and the tokens in the action URLs the stack hands a carrier, where the carrier's
signature does not cover the query. Each use has its own label, so one output never stands for another."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging

from millis_sip.core.calls import PIN_DIGITS
from millis_sip.core.phone import canonical_number
from millis_sip.core.ports import Secret

log = logging.getLogger(__name__)

_LOOKUP_LABEL = b"millis-sip-bridge/lookup-index/v1\x00"
_PIN_LABEL = b"millis-sip-bridge/pin/v1\x00"
_ACTION_LABEL = b"millis-sip-bridge/action-url/v1\x00"


class StackKeys:
    """Keyed hashes under the keys secret. Without a secret (a local run that sets none) the hashes are keyed
    with an empty key: still no number in the index in clear, but guessable; a warning says so."""

    def __init__(self, secret: Secret | None) -> None:
        self._secret = secret
        if secret is None:
            log.warning("No keys secret: the lookup index, PINs and action tokens are hashed without a key")

    def _mac(self, label: bytes, text: str) -> bytes:
        key = self._secret().encode() if self._secret is not None else b""  # its BridgeError propagates
        return hmac.new(key, label + text.encode(), hashlib.sha256).digest()

    def ready(self) -> None:
        """Read the keys secret now (it is cached), so that a failure to read it comes before any work."""
        if self._secret is not None:
            self._secret()

    def lookup_index(self, lookup_key: str) -> str:
        """What the lookup index is keyed by: 128 bits of HMAC-SHA256, base64url. A key that is a phone number
        in any spelling is keyed as its E.164 form, so ``14155550100``, ``tel:+1-415-555-0100`` and
        ``+14155550100`` find each other; any other key as it is."""
        return _b64(self._mac(_LOOKUP_LABEL, canonical_number(lookup_key) or lookup_key)[:16])

    def action_token(self, purpose: str, carrier: str, call_ref: str) -> str:
        """The token an action URL carries for ``purpose`` (e.g. the second attempt's status callback) of one
        carrier call: 128 bits of HMAC-SHA256, base64url. A carrier that signs only the body cannot vouch for
        the query; this token can, and only this stack could have written it."""
        return _b64(self._mac(_ACTION_LABEL, "\x00".join((purpose, carrier, call_ref)))[:16])

    def action_token_matches(self, token: str | None, purpose: str, carrier: str, call_ref: str) -> bool:
        if not token:
            return False
        return hmac.compare_digest(token.encode(), self.action_token(purpose, carrier, call_ref).encode())

    def pin(self, call_id: str) -> str:
        """The registration's PIN, the same every time it is asked for (six digits, uniform enough: the
        64-bit value's bias over 10^6 is below 10^-13)."""
        value = int.from_bytes(self._mac(_PIN_LABEL, call_id)[:8], "big")
        return f"{value % 10**PIN_DIGITS:0{PIN_DIGITS}d}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")

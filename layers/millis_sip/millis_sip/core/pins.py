"""Caller ID proven by a PIN (docs/router.md, "Caller ID is not proof"): whether a caller proves a registration
for their number is theirs, as the registration asks; each PIN attempt counted before its digits are compared,
so that however many calls try at once no more than MAX_PIN_FAILURES are ever compared."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import TYPE_CHECKING

from millis_sip.core.calls import MAX_PIN_FAILURES, CallerVerification, CallRecord
from millis_sip.core.errors import StoreUnavailable
from millis_sip.core.keys import StackKeys
from millis_sip.core.ports import InboundCallStore, Metrics
from millis_sip.core.registration import pin_matches
from millis_sip.core.transaction import CallTransaction

if TYPE_CHECKING:
    from millis_sip.core.router import InboundCall

log = logging.getLogger(__name__)

FULL_ATTESTATION = "A"


class Proof(StrEnum):
    """Whether a caller proves a registration for their number is theirs, as it asks (or why not)."""

    VERIFIED = "verified"
    CHALLENGE = "challenge"  # ask the caller for the PIN first
    NOT_ATTESTED = "not_attested"
    PIN_LOCKED = "pin_locked"  # the registration's PIN attempts are spent
    PIN_MISMATCH = "pin_mismatch"
    PIN_UNCOUNTED = "pin_uncounted"  # the attempt could not be counted (the store): not compared
    NO_PIN_PROMPT = "no_pin_prompt"  # the edge can neither prompt nor pass digits


class PinCheck:
    def __init__(self, store: InboundCallStore, *, keys: StackKeys, metrics: Metrics) -> None:
        self._store = store
        self._keys = keys
        self._metrics = metrics

    def proof(self, call: InboundCall, candidate: CallRecord, tx: CallTransaction) -> Proof:
        """Whether the caller proves the number is theirs, as ``candidate`` asks."""
        policy = candidate.caller_verification
        if policy is CallerVerification.TRUST_CALLER_ID:
            return Proof.VERIFIED
        if policy is CallerVerification.ATTESTATION:
            return Proof.VERIFIED if call.attestation == FULL_ATTESTATION else Proof.NOT_ATTESTED
        if candidate.pin_locked:
            return Proof.PIN_LOCKED
        if call.pin:  # digits the phone system collected itself (a SIP server's dialplan)
            return self.try_pin(candidate, call.pin, tx)[0]
        return Proof.CHALLENGE if call.can_challenge and call.pin is None else Proof.NO_PIN_PROMPT

    def try_pin(self, candidate: CallRecord, digits: str, tx: CallTransaction) -> tuple[Proof, int]:
        """Count the attempt first, then compare: however many calls try at once, no more than MAX_PIN_FAILURES
        attempts are ever compared. With the attempts counted so far (this one included)."""
        try:
            count = tx.within(lambda: self._store.reserve_pin_attempt(candidate.call_id, limit=MAX_PIN_FAILURES))
        except StoreUnavailable as exc:
            log.warning("Cannot count the PIN attempt: not comparing it", extra={"error": str(exc)})
            self._metrics.inbound_failure(Proof.PIN_UNCOUNTED.value)
            return Proof.PIN_UNCOUNTED, MAX_PIN_FAILURES
        if count is None:
            return Proof.PIN_LOCKED, MAX_PIN_FAILURES
        if pin_matches(candidate, digits, self._keys):
            return Proof.VERIFIED, count
        self._metrics.inbound_failure(Proof.PIN_MISMATCH.value)
        return Proof.PIN_MISMATCH, count

    def ask(self, tx: CallTransaction, candidate: str, *, tries: int) -> bool:
        if not tx.ask_pin(candidate, tries=tries):
            return False
        self._metrics.inbound("pin_requested")
        return True

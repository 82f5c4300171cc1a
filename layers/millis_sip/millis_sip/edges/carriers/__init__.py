"""Carrier edges: Twilio (and SignalWire LaML), Telnyx TeXML, Vonage Voice API and Plivo Voice.

Each carrier module authenticates its webhook before anything reads it. The verifiers are pure functions
(no clock, no environment, no I/O): the caller passes the request's parts, the configured keys and, where
a timestamp is checked, ``now``. They return quietly or raise ``InvalidSignature``. Every verifier takes a
sequence of keys so that a rotated secret keeps working while the old one is still in flight.

Only the standard library is imported at module level; Telnyx's Ed25519 check imports PyNaCl when it runs,
so no other carrier pays for its import.
"""

from __future__ import annotations


class InvalidSignature(Exception):
    """A carrier webhook failed authentication.

    ``reason`` is short and safe to log: it names what was wrong ("signature mismatch", "stale timestamp")
    and never holds a secret, a key or the presented signature.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Refusal(Exception):
    """A signed carrier request answered before the router sees it: ``status`` 400 (a field the edge reads is not
    in its documented form), 403 (the action URL's query names state this stack did not vouch for) or 503 (the
    keys secret that vouches for it cannot be read now: the carrier retries). ``reason`` is short, safe to log
    and to answer: it names the field or the parameter, never a secret or a token."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

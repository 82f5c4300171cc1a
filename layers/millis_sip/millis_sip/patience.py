"""How long each phone system waits for the bridge's answer to one request before it gives up on it (tries
again, goes to its fallback, or drops the call), from each one's own documentation. The call path answers
well inside it: ``InboundFunction`` by ``min(INBOUND_ANSWER_SECONDS, patience - MARGIN_SECONDS, the time the
function has left - its own margin)``, route by route; ``SipMediaAppFunction`` by ``CHIME_ANSWER_SECONDS``
(4.0 s by default, at most 4.8), which stays inside Chime's figure here.

The figures as documented in 2026-12, each with its source; where a phone system documents none, the figure
is a choice and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Between the answer being ready on the handler's clock and the phone system's own clock running out: API
# Gateway's hops to and from the function (tens of ms each), the network between the phone system and the AWS
# region (up to about 0.2 s across an ocean), and a cold start, which the handler's clock never sees because it
# starts after the init (InboundFunction's takes 0.6-0.8 s on the benchmark machine, docs/performance.md).
MARGIN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Patience:
    """How long one phone system waits for the answer to a request, and where that figure comes from."""

    seconds: float
    source: str

    @property
    def answer_within(self) -> float:
        """The most the bridge may take on its own clock: the patience less ``MARGIN_SECONDS``."""
        return self.seconds - MARGIN_SECONDS


PATIENCE: Mapping[str, Patience] = {
    "twilio": Patience(
        15.0,
        "Twilio waits 15 s in all for a webhook's TwiML (of which 10 s to connect, two 5 s attempts), then "
        "requests the fallback URL (Twilio error 11205; changelog 2019-08-22, connection overrides)",
    ),
    "vonage": Patience(
        5.0,
        "Vonage waits 3 s for the TCP connection, then 5 s for the NCCO, then retries twice and goes to the "
        "fallback answer URL (Vonage Voice API guide, Troubleshooting: Timeouts)",
    ),
    "signalwire": Patience(
        5.0,
        "SignalWire waits 2 s to connect and 5 s to read a webhook's answer (SignalWire docs, webhooks: the ct "
        "and rt URL overrides, 100-10000 ms and 100-15000 ms); its requests reach the Twilio routes, known by "
        "X-SignalWire-Signature",
    ),
    "plivo": Patience(
        40.0,
        "Plivo waits 2 s to connect (configurable 0.1-10 s), 40 s to read, 55 s in all, and retries once "
        "(Plivo callback configurations)",
    ),
    "telnyx": Patience(
        5.0,
        "A choice: Telnyx documents no default. A TeXML application has no webhook timeout setting (its "
        "first_command_timeout_secs, 30 s by default, hangs up a call that gets no instructions at all) and a "
        "connection's webhook_timeout_secs has no documented default (Telnyx API reference); 5 s is the "
        "shortest wait any phone system here documents (Vonage's NCCO, Chime's invocation)",
    ),
    "sip": Patience(
        3.0,
        "SIP servers: the Kamailio example waits HTTP_TIMEOUT, 3 s by default, for the whole GET /route "
        "(examples/kamailio/kamailio.cfg, http_client connection_timeout), then answers the caller 503",
    ),
    "chime": Patience(
        5.0,
        "Amazon Chime SDK SIP media applications wait 5 s for each invocation, retry it once, then end the "
        "call with 480 (Amazon Chime SDK developer guide, timeouts)",
    ),
}

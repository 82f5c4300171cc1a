"""The carriers the inbound function answers, each a descriptor (``webhooks.Carrier``) of its module. Adding a
carrier is one descriptor here and one module (its signature check, fields and dialect)."""

from __future__ import annotations

from millis_sip.edges.carriers.plivo import PLIVO
from millis_sip.edges.carriers.telnyx import TELNYX
from millis_sip.edges.carriers.twilio import SIGNALWIRE_CARRIER, TWILIO
from millis_sip.edges.carriers.vonage import VONAGE
from millis_sip.edges.carriers.webhooks import Carrier

CARRIERS: tuple[Carrier, ...] = (TWILIO, TELNYX, VONAGE, PLIVO, SIGNALWIRE_CARRIER)

"""`make call`: one phone call, as a carrier hands it to the stack, against `make serve` (docs/development.md).

The request is signed as that carrier signs its webhooks, with the local credentials `make serve` runs with
(dev/carrier_signing.py's LOCAL_KEYS), so a number route can be tried without writing a signer:

    make call                                  # Twilio, to the demo's number, from +14155550123
    make call CARRIER=vonage TO=+15055550199   # any number: a route's agent, the default agent, or 404 no_agent
    make call CARRIER=sip                      # a SIP server asking GET /route, with the API key

CARRIER: twilio (default), signalwire, telnyx, vonage, plivo, sip. TO, FROM: E.164 numbers. API_URL: the
stack's base URL (default http://127.0.0.1:$PORT, PORT 3000 as `make serve`). It prints the request and the
stack's answer (the carrier's TwiML, TeXML, NCCO or Plivo XML; for sip the URI line), and exits 0 when the call
reached an agent, 1 when the stack answered otherwise, 2 when the stack cannot be reached.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import uuid
from urllib.parse import unquote

import httpx

from dev.carrier_signing import LOCAL_KEYS, SignedCarrier

CARRIERS = ("twilio", "signalwire", "telnyx", "vonage", "plivo", "sip")
DEMO_NUMBER = "+15055550123"  # the number `make serve` routes to its sales agent (dev/demo.py SALES_NUMBER)
CALLER = "+14155550123"
LOCAL_API_KEY = "local-api-key"  # `make serve`'s API key (dev/demo.py)


def ring(carrier: str, signed: SignedCarrier, to: str, from_: str) -> httpx.Response:
    """The carrier's first request for a new call, as its documentation shows it (docs/carriers/)."""
    ref = uuid.uuid4()
    if carrier == "twilio":
        fields = {"CallSid": f"CA{ref.hex}", "AccountSid": "AC" + "0" * 32, "From": from_, "To": to}
        return signed.twilio("/carriers/twilio/voice", fields | {"Direction": "inbound", "CallStatus": "ringing"})
    if carrier == "signalwire":  # its LaML webhooks are Twilio's, with UUIDs for ids and its own header name
        fields = {"CallSid": str(ref), "AccountSid": str(uuid.uuid4()), "From": from_, "To": to}
        fields |= {"Direction": "inbound", "CallStatus": "ringing"}
        return signed.twilio("/carriers/twilio/voice", fields, signalwire=True)
    if carrier == "telnyx":
        fields = {"CallSid": f"v3:{ref.hex}", "From": from_, "To": to, "ConnectionId": "1568109700606592442"}
        return signed.telnyx("/carriers/telnyx/voice", fields)
    if carrier == "vonage":
        payload = {"to": to[1:], "from": from_[1:], "uuid": str(ref), "conversation_uuid": f"CON-{ref}"}
        return signed.vonage("/carriers/vonage/answer", payload)
    if carrier == "plivo":
        fields = {"CallUUID": str(ref), "From": from_[1:], "To": to[1:], "Direction": "inbound"}
        return signed.plivo("/carriers/plivo/answer", fields | {"CallStatus": "ringing"})
    params = {"to": to, "from": from_, "call": f"{ref}@pbx.example"}
    return signed.http.get("/route", params=params, headers={"x-api-key": LOCAL_API_KEY, "accept": "text/plain"})


# The Millis call id in each answer: a SIP URI header (X-Millis-Call-Id=), Plivo's sipHeaders (MillisCallId=),
# Vonage's connect headers ("Millis-Call-Id": ...).
CALL_ID = re.compile(r'(?:X-Millis-Call-Id=|MillisCallId=|"Millis-Call-Id":\s*")([A-Za-z0-9_.~%-]+)')


def millis_call_id(answer: httpx.Response) -> str | None:
    """The Millis call id the answer sends the call to, when it dials Millis."""
    if answer.status_code != 200 or "sip:" not in answer.text:
        return None
    found = CALL_ID.search(answer.text)
    return unquote(found.group(1)) if found else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--carrier", default=os.environ.get("CARRIER") or "twilio", choices=CARRIERS)
    parser.add_argument("--to", default=os.environ.get("TO") or DEMO_NUMBER)
    parser.add_argument("--from", dest="from_", default=os.environ.get("FROM") or CALLER)
    port = os.environ.get("PORT", "").strip() or "3000"
    parser.add_argument("--api-url", default=os.environ.get("API_URL") or f"http://127.0.0.1:{port}")
    args = parser.parse_args()
    for name, number in (("TO", args.to), ("FROM", args.from_)):
        if not (number.startswith("+") and number[1:].isdigit() and 2 < len(number) <= 16):
            parser.error(f"{name}={number!r} is not an E.164 number (+ and up to 15 digits)")
    base = args.api_url.rstrip("/")
    with httpx.Client(base_url=base, timeout=30) as http:
        signed = SignedCarrier(base, http, LOCAL_KEYS)
        try:
            answer = ring(args.carrier, signed, args.to, args.from_)
        except httpx.TransportError as exc:
            print(f"Cannot reach the stack at {base} ({type(exc).__name__}): start it with `make serve`.")
            return 2
    request = answer.request
    print(f"{request.method} {request.url}  ({args.carrier}, signed as {args.carrier} signs)")
    print(f"HTTP {answer.status_code}\n{answer.text}")
    call_id = millis_call_id(answer)
    if call_id is None:
        return 1
    print(f"\nThe call from {args.from_} to {args.to} reached an agent. Its record:")
    print(f"  curl -s {base}/calls/{call_id} -H 'x-api-key: {LOCAL_API_KEY}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())

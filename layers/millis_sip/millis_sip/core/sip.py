"""SIP URIs as Millis returns them. The bridge never builds one; it only checks and takes apart
what Millis sent (RFC 3261 section 19.1: ``sip:user@host:port;params?headers``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

MAX_SIP_URI_LENGTH = 255  # carriers (Twilio <Sip>) refuse longer Request-URIs

# host = hostname / IPv4 / [IPv6]; port optional.
_HOSTNAME = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
_IPV6 = r"\[[0-9A-Fa-f:.]+\]"
_URI = re.compile(
    rf"(?P<scheme>sips?):(?:(?P<user>[^@\s;?]+)@)?(?P<host>{_IPV6}|{_HOSTNAME})(?::(?P<port>[0-9]{{1,5}}))?"
    r"(?P<params>;[^\s?]*)?(?P<headers>\?\S*)?\Z",
    re.IGNORECASE | re.ASCII,  # ASCII: with IGNORECASE alone, [A-Za-z] also matches the Kelvin sign
)


class InvalidSipUri(ValueError):
    """The value is not a sip:/sips: URI with a host."""


@dataclass(frozen=True, slots=True)
class SipUri:
    uri: str
    scheme: str
    user: str | None
    host: str
    port: int | None

    def __str__(self) -> str:
        return self.uri


def parse_sip_uri(value: object) -> SipUri:
    if not isinstance(value, str):
        raise InvalidSipUri(f"expected a string, got {type(value).__name__}")
    if len(value) > MAX_SIP_URI_LENGTH:
        raise InvalidSipUri(f"longer than {MAX_SIP_URI_LENGTH} characters")
    match = _URI.match(value)
    if not match:
        raise InvalidSipUri("not a sip: or sips: URI with a host")
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 0 < port < 65536:
        raise InvalidSipUri("port out of range")
    return SipUri(uri=value, scheme=match["scheme"].lower(), user=match["user"], host=match["host"].lower(), port=port)


# --- SIP headers, both ways (docs/router.md, "SIP headers") ------------------------------------------------

MAX_CALLER_HEADERS = 10
MAX_HEADER_VALUE = 256
_HEADER_NAME = re.compile(r"X-[A-Za-z0-9][A-Za-z0-9-]{0,62}\Z", re.IGNORECASE | re.ASCII)


def bridge_headers(call_id: str, carrier: str, carrier_call_id: str) -> dict[str, str]:
    """The X- headers every edge that can set SIP headers puts on the leg to Millis, so that a SIP trace ties
    to the record (X-Millis-Call-Id) and to the phone system's own call (X-Carrier, X-Carrier-Call-Id)."""
    return {"X-Millis-Call-Id": call_id, "X-Carrier": carrier, "X-Carrier-Call-Id": carrier_call_id}


def header_variables(headers: Mapping[str, str]) -> dict[str, str]:
    """The caller's X- headers as metadata variables: ``X-Customer-Id`` -> ``sip_x_customer_id``. Whoever
    places the call writes them, so the router keeps them under a key of their own (``caller_supplied``).

    Only names ``X-`` + letters, digits and dashes (at most 64 characters); values with every character that is
    not printable (control characters, line breaks, bidirectional overrides) removed, then at most 256
    characters; at most 10 headers, in the order given. Anything else is dropped, not passed on."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        if len(found) >= MAX_CALLER_HEADERS:
            break
        if not isinstance(name, str) or not isinstance(value, str) or not _HEADER_NAME.match(name):
            continue
        clean = "".join(c for c in value if c.isprintable()).strip()[:MAX_HEADER_VALUE]
        if clean:
            found["sip_" + name.lower().replace("-", "_")] = clean
    return found


def with_uri_headers(uri: str, headers: Mapping[str, str], *, limit: int | None = None) -> str:
    """``uri?Name=value&...`` with each value percent-encoded (RFC 3261 section 19.1.1), the way Twilio's <Sip>
    and a SIP server's dialplan take headers. With ``limit``, headers are left out from the last one until the
    whole fits (the first, X-Millis-Call-Id, is the one that matters)."""
    pairs = [f"{name}={quote(value, safe='')}" for name, value in headers.items()]
    while pairs:
        joined = f"{uri}?{'&'.join(pairs)}"
        if limit is None or len(joined) <= limit:
            return joined
        pairs.pop()
    return uri

"""SIP URIs as Millis returns them. The bridge never builds one; it only checks and takes apart
what Millis sent (RFC 3261 section 19.1: ``sip:user@host:port;params?headers``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SIP_URI_LENGTH = 255  # carriers (Twilio <Sip>) refuse longer Request-URIs

# host = hostname / IPv4 / [IPv6]; port optional.
_HOSTNAME = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
_IPV6 = r"\[[0-9A-Fa-f:.]+\]"
_URI = re.compile(
    rf"^(?P<scheme>sips?):(?:(?P<user>[^@\s;?]+)@)?(?P<host>{_IPV6}|{_HOSTNAME})(?::(?P<port>\d{{1,5}}))?"
    r"(?P<params>;[^\s?]*)?(?P<headers>\?\S*)?$",
    re.IGNORECASE,
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

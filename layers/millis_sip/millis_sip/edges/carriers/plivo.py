"""Plivo's V3 webhook signature: ``X-Plivo-Signature-V3`` with ``X-Plivo-Signature-V3-Nonce``.

As the official SDK builds it (plivo-python ``plivo/utils/signature_v3.py``, ``validate_v3_signature``):

* base = ``scheme://host[:port]/path`` of the callback URL (no query, no fragment);
* query = the URL's query parameters (percent-decoded), sorted by name then value, as ``name=value``
  joined by ``&``;
* GET: Plivo's parameters are in the query already; string = base, then ``?`` + query when there is one;
* POST: string = base, then ``?`` + query when there is a query or any POST parameter, then ``.`` when
  there are both, then every POST parameter sorted by name then value as ``namevalue`` (no separators);
* signature = base64(HMAC-SHA256(key=auth token, string + ``.`` + nonce));
* the header may list several signatures separated by commas; one match is enough.
  ``X-Plivo-Signature-Ma-V3`` is the same, always signed with the main account's token.

There is no timestamp: the nonce is random per request, so replay protection would need a nonce store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlparse, urlunparse

from millis_sip.edges.carriers import InvalidSignature

SIGNATURE_HEADER = "X-Plivo-Signature-V3"
MAIN_ACCOUNT_SIGNATURE_HEADER = "X-Plivo-Signature-Ma-V3"
NONCE_HEADER = "X-Plivo-Signature-V3-Nonce"
_METHODS = ("GET", "POST")


def string_to_sign(method: str, url: str, params: Sequence[tuple[str, str]], nonce: str) -> str:
    """The text Plivo signs for a ``method`` request to ``url`` carrying these POST parameters."""
    parsed = urlparse(url)
    base = urlunparse((parsed.scheme, parsed.netloc, parsed.path, "", "", ""))
    query = _grouped(parse_qsl(parsed.query, keep_blank_values=True))
    if method.upper() == "GET":
        query = {**_grouped(params), **query}  # the SDK lets the URL's own value win
        text = _query_string(query)
        signed = f"{base}?{text}" if text else base
    else:
        text = _query_string(query)
        signed = f"{base}?{text}" if text or params else base
        if text and params:
            signed += "."
        signed += "".join(f"{name}{value}" for name, values in sorted(_grouped(params).items()) for value in values)
    return f"{signed}.{nonce}"


def signature(method: str, url: str, params: Sequence[tuple[str, str]], nonce: str, token: str) -> str:
    """The ``X-Plivo-Signature-V3`` value Plivo would send, signed with ``token``."""
    return base64.b64encode(_digest(string_to_sign(method, url, params, nonce), token)).decode("ascii")


def verify_v3(
    method: str,
    url: str,
    params: Sequence[tuple[str, str]],
    nonce: str | None,
    presented: str | None,
    tokens: Sequence[str],
) -> None:
    """Raise ``InvalidSignature`` unless one of the signatures in ``presented`` signs this request.

    ``url`` is the callback URL as configured in Plivo, including any query string; ``params`` are the
    form-decoded POST fields (none for a GET); ``nonce`` and ``presented`` are the two header values;
    ``tokens`` are auth tokens (account, sub-account, or a rotated one beside the current one).
    """
    if not tokens:
        raise InvalidSignature("no key configured")
    if not presented:
        raise InvalidSignature("missing signature")
    if not nonce:
        raise InvalidSignature("missing nonce")
    if method.upper() not in _METHODS:
        raise InvalidSignature("unsupported method")
    offered = [_decode(item) for item in presented.split(",")]
    data = string_to_sign(method, url, params, nonce)
    for token in tokens:
        expected = _digest(data, token)
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return
    raise InvalidSignature("signature mismatch")


def _digest(data: str, token: str) -> bytes:
    return hmac.new(token.encode(), data.encode(), hashlib.sha256).digest()


def _decode(item: str) -> bytes:
    """One offered signature as bytes; an undecodable one can only mismatch, so it becomes empty."""
    try:
        return base64.b64decode(item.strip(), validate=True)
    except ValueError:  # binascii.Error is a ValueError
        return b""


def _grouped(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Name -> sorted values, the SDK's view of repeated parameters (a dict of lists, each list sorted)."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return {name: sorted(values) for name, values in grouped.items()}


def _query_string(grouped: dict[str, list[str]]) -> str:
    return "&".join(f"{name}={value}" for name, values in sorted(grouped.items()) for value in values)

"""API Gateway REST (payload 1.0) proxy events, read and answered without a web framework: the call path's
edges (carriers, SIP servers) wait on their cold start, so they do without Powertools' resolver and pydantic.
Not an edge itself: the edges that speak HTTP share it."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

MAX_BODY_BYTES = 64 * 1024  # a carrier's webhook is a few hundred bytes


class BadRequest(ValueError):
    """The event cannot be read as an HTTP request (a body that is not what it says it is)."""


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    resource: str  # the template's path, e.g. /carriers/twilio/voice
    path: str  # as requested, without the stage
    headers: Mapping[str, str]  # names in lower case
    query: Mapping[str, str]  # the last value of each parameter
    query_pairs: tuple[tuple[str, str], ...]  # every parameter, in order
    body: bytes
    url: str  # the public URL of the request, query included: what a carrier signs
    request_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, event: Mapping[str, Any], *, public_base_url: str | None = None) -> Request:
        """The URL a carrier signed: ``public_base_url`` (PUBLIC_BASE_URL, the API's root as callers reach it,
        e.g. through a proxy) followed by the route's own path; without it, rebuilt from what API Gateway saw:
        ``https://<domainName><requestContext.path>``, which holds the stage on the execute-api domain and the
        base path on a custom domain."""
        context = event.get("requestContext") or {}
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items() if v is not None}
        pairs: list[tuple[str, str]] = []
        for name, values in (event.get("multiValueQueryStringParameters") or {}).items():
            pairs.extend((str(name), str(value)) for value in values or ())
        if not pairs:
            pairs = [(str(k), str(v)) for k, v in (event.get("queryStringParameters") or {}).items()]
        path = str(event.get("path") or "/")
        resource = str(event.get("resource") or path)
        if public_base_url:
            # The route's path without any base path mapping's prefix (which event.path carries on a custom
            # domain): the resource itself when it has no parameters, as every call-path route does.
            base = public_base_url.rstrip("/") + (resource if "{" not in resource else path)
        else:
            host = context.get("domainName") or headers.get("host") or "localhost"
            base = f"https://{host}{context.get('path') or path}"
        url = base + ("?" + urlencode(pairs, quote_via=quote, safe="") if pairs else "")
        return cls(
            method=str(event.get("httpMethod") or "GET").upper(),
            resource=resource,
            path=path,
            headers=headers,
            query=dict(pairs),
            query_pairs=tuple(pairs),
            body=_body(event),
            url=url,
            request_id=context.get("requestId"),
        )

    def form(self) -> list[tuple[str, str]]:
        """The body as ``application/x-www-form-urlencoded`` fields, in order (what carriers POST)."""
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the body is not UTF-8") from None
        try:
            return parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=200)
        except ValueError:
            raise BadRequest("the body is not form-encoded") from None

    def wants_text(self) -> bool:
        return "text/plain" in self.headers.get("accept", "") or self.query.get("format") == "text"


def _body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body")
    if not body:
        return b""
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(str(body), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("the body is not valid base64") from None
    else:
        raw = str(body).encode("utf-8", "surrogatepass")
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"the body is larger than {MAX_BODY_BYTES} bytes")
    return raw


def reply(
    status: int,
    body: str = "",
    *,
    content_type: str = "text/plain; charset=utf-8",
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway proxy answer."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_type, **(headers or {})},
        "multiValueHeaders": {},
        "body": body,
        "isBase64Encoded": False,
    }

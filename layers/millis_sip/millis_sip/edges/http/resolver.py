"""The management API's REST resolver: Powertools' APIGatewayRestResolver with request validation, API keys it
refuses, guards that authenticate a route before its body is read, body-size limits, and every exception mapped
to a JSON answer."""

from __future__ import annotations

import binascii
from collections.abc import Callable, Collection, Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from millis_sip.core.errors import BridgeError
from millis_sip.edges.http.errors import ApiKeyRefused, domain_error_response, error_response
from millis_sip.edges.http.models import MAX_BODY_BYTES, strict_json
from millis_sip.observability import logger

# A guard authenticates a request before anything else reads it (the body is not even parsed).
Guard = Callable[[Mapping[str, Any]], None]


class BridgeResolver(APIGatewayRestResolver):
    """APIGatewayRestResolver with validation, a body-size limit and the error mapping registered."""

    def __init__(
        self,
        *,
        guards: Mapping[str, Guard] | None = None,
        body_limits: Mapping[str, int] | None = None,
        query_names: Mapping[str, frozenset[str]] | None = None,
        refused_api_key_ids: Collection[str] = (),
    ) -> None:
        super().__init__(enable_validation=True, json_body_deserializer=strict_json)
        # The ids of API keys whose every request is answered 403 before anything else runs (the SIP servers' key:
        # API Gateway lets it through to any keyed route of the stage). Empty ids are never refused.
        self._refused_api_key_ids = frozenset(key for key in refused_api_key_ids if key)
        self._guards = dict(guards or {})
        self._body_limits = dict(body_limits or {})
        # Resources whose query parameters are checked by name: a typo (limt=5) gets a 400, not a silent default.
        self._query_names = dict(query_names or {})
        self.exception_handler(RequestValidationError)(self._invalid_request)
        self.exception_handler(RequestUnsupportedContentType)(self._unsupported_type)
        self.exception_handler(RecursionError)(self._too_deep)
        self.exception_handler(UnicodeDecodeError)(self._not_utf8)
        self.exception_handler(binascii.Error)(self._not_utf8)
        self.exception_handler(BridgeError)(self._domain_error)
        self.exception_handler(Exception)(self._unexpected)
        self.not_found()(self._no_route)

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        request_id = (event.get("requestContext") or {}).get("requestId")
        key_id = _api_key_id(event)
        if key_id is not None and key_id in self._refused_api_key_ids:
            refused = ApiKeyRefused("This API key may only be used for GET /route.")
            return _proxy(self._domain_error(refused, request_id=request_id))
        event = _without_base_path(event)
        resource = str(event.get("resource") or event.get("path") or "")
        guard = self._guards.get(resource)
        if guard is not None:
            try:
                guard(event)
            except BridgeError as exc:
                return _proxy(self._domain_error(exc, request_id=request_id))
        unknown = _unknown_query_names(event, self._query_names.get(resource))
        if unknown:
            known = ", ".join(sorted(self._query_names[resource])) or "none"
            return _proxy(
                error_response(
                    400,
                    "invalid_request",
                    f"Unknown query parameter {unknown[0][:64]!r}.",
                    hint=f"{resource} takes these query parameters: {known}.",
                    request_id=request_id,
                )
            )
        event, media_type = _with_json_media_type(event)
        if media_type is not None:
            logger.info("Request body is not JSON", extra={"content_type": media_type[:100]})
            return _proxy(self._unsupported_type(None, request_id))
        limit = self._body_limits.get(resource, MAX_BODY_BYTES)
        body = event.get("body")
        if isinstance(body, str) and _body_bytes(body, bool(event.get("isBase64Encoded")), limit) > limit:
            logger.info("Request body too large", extra={"body_chars": len(body)})
            return _proxy(
                error_response(
                    413,
                    "body_too_large",
                    f"The request body is larger than {limit} bytes.",
                    hint="Send a smaller agent_config or metadata.",
                    request_id=request_id,
                )
            )
        return super().resolve(event, context)

    # --- handlers -------------------------------------------------------------------------------

    def _request_id(self) -> str | None:
        try:
            return self.current_event.request_context.request_id
        except (AttributeError, KeyError):
            return None

    def _invalid_request(self, exc: RequestValidationError) -> Response[str]:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(
                400,
                "invalid_json",
                "The request body is not valid JSON.",
                hint="Send a JSON object with Content-Type: application/json.",
                request_id=self._request_id(),
            )
        details = [
            {
                "field": ".".join(str(part) for part in e.get("loc", ())),
                "problem": str(e.get("msg", "invalid")).removeprefix("Value error, "),
            }
            for e in errors
        ]
        hint = "See details; docs/api.md lists every field and its limits."
        if any(e.get("loc", ())[:1] == ("query",) and " " in str(e.get("input", "")) for e in errors):
            hint = "A '+' in a query string reads as a space: URL-encode it as %2B (e.g. lookup_key=%2B14155550100)."
        logger.info("Request rejected", extra={"problems": details})
        return error_response(
            400,
            "invalid_request",
            "; ".join(f"{d['field']}: {d['problem']}" for d in details) or "The request is invalid.",
            hint=hint,
            details=details,
            request_id=self._request_id(),
        )

    def _unsupported_type(
        self, exc: RequestUnsupportedContentType | None, request_id: str | None = None
    ) -> Response[str]:
        return error_response(
            415,
            "unsupported_media_type",
            "The request body must be JSON.",
            hint="Send Content-Type: application/json (curl -d sends application/x-www-form-urlencoded unless told).",
            request_id=request_id or self._request_id(),
        )

    def _too_deep(self, exc: RecursionError) -> Response[str]:
        return error_response(
            400,
            "invalid_json",
            "The request body is nested too deeply to parse.",
            hint="Flatten metadata and agent_config.",
            request_id=self._request_id(),
        )

    def _not_utf8(self, exc: Exception) -> Response[str]:
        return error_response(
            400,
            "invalid_json",
            "The request body is not UTF-8 encoded JSON.",
            hint="Send a JSON object encoded as UTF-8 with Content-Type: application/json.",
            request_id=self._request_id(),
        )

    def _domain_error(self, exc: BridgeError, request_id: str | None = None) -> Response[str]:
        return domain_error_response(exc, request_id or self._request_id())

    def _unexpected(self, exc: Exception) -> Response[str]:
        logger.exception("Unhandled error")
        return error_response(
            500,
            "internal_error",
            "The bridge failed unexpectedly; nothing was acknowledged.",
            hint="Retry; if it persists, search the function's logs for the request_id.",
            request_id=self._request_id(),
        )

    def _no_route(self, exc: Exception) -> Response[str]:
        return error_response(
            404,
            "route_not_found",
            f"No route for {self.current_event.http_method} {self.current_event.path}.",
            hint="Routes: POST /calls, GET /calls?lookup_key=..., GET /calls/{call_id}, POST /webhooks/millis.",
            request_id=self._request_id(),
        )


def _with_json_media_type(event: Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
    """The event with a JSON Content-Type spelled as the resolver matches it (media types are
    case-insensitive: ``APPLICATION/JSON`` is JSON), or the media type that is not JSON. A body without a
    Content-Type is read as JSON."""
    if not event.get("body"):
        return event, None
    headers = event.get("headers") or {}
    name = next((k for k in headers if str(k).lower() == "content-type"), None)
    if name is None:
        return event, None
    value = str(headers[name])
    media_type = value.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return event, value
    if value.startswith("application/json"):
        return event, None
    canonical = "application/json" + (";" + value.split(";", 1)[1] if ";" in value else "")
    changed = dict(event)
    changed["headers"] = {**{k: v for k, v in headers.items() if k != name}, "content-type": canonical}
    if event.get("multiValueHeaders"):
        multi = {k: v for k, v in event["multiValueHeaders"].items() if str(k).lower() != "content-type"}
        changed["multiValueHeaders"] = {**multi, "content-type": [canonical]}
    return changed, None


def _api_key_id(event: Mapping[str, Any]) -> str | None:
    """The id of the API key API Gateway checked for the request (``requestContext.identity.apiKeyId``; null on a
    route that takes no key)."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    key_id = identity.get("apiKeyId") if isinstance(identity, Mapping) else None
    return key_id if isinstance(key_id, str) and key_id else None


def _proxy(response: Response[str]) -> dict[str, Any]:
    """A Response as the API Gateway proxy answer, for answers given before the resolver runs."""
    return {
        "statusCode": response.status_code,
        "headers": {"Content-Type": content_types.APPLICATION_JSON, **(response.headers or {})},
        "multiValueHeaders": {},
        "body": response.body,
        "isBase64Encoded": False,
    }


def _body_bytes(body: str, base64_encoded: bool, limit: int) -> int:
    if base64_encoded:
        return len(body) * 3 // 4
    if len(body) * 4 <= limit:
        return len(body)  # even all 4-byte characters would fit
    return len(body.encode("utf-8", "surrogatepass"))


def _unknown_query_names(event: Mapping[str, Any], known: frozenset[str] | None) -> list[str]:
    if known is None:
        return []
    query = event.get("multiValueQueryStringParameters") or event.get("queryStringParameters") or {}
    return sorted(name for name in query if name not in known)


def _without_base_path(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The event with a custom domain's base path taken off its path (API Gateway keeps it there, so the routes
    would not match): as many leading segments as the path has more than its resource (no route is greedy)."""
    path, resource = event.get("path"), event.get("resource")
    if not isinstance(path, str) or not isinstance(resource, str) or not resource.startswith("/"):
        return event
    extra = path.rstrip("/").count("/") - resource.rstrip("/").count("/")
    if extra <= 0:
        return event
    segments = path.split("/")
    return {**event, "path": "/" + "/".join(segments[1 + extra :])}

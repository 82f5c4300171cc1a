"""The HTTP edge: a REST resolver that refuses oversized bodies before parsing them, and the one
place where exceptions become HTTP answers (JSON that says what was wrong and how to fix it)."""

from __future__ import annotations

import binascii
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from millis_sip.errors import (
    BridgeError,
    CallAlreadyExists,
    CallNotFound,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    InvalidRequest,
    MillisAuthError,
    MillisBadResponse,
    MillisKeyUnavailable,
    MillisRejectedRequest,
    MillisUnavailable,
    StoreUnavailable,
    WebhookSecretUnavailable,
    WebhookUnauthorized,
)
from millis_sip.models import MAX_BODY_BYTES, ErrorBody
from millis_sip.observability import count_error, logger

# status, hint; the message comes from the exception.
_DOMAIN_ERRORS: dict[type[BridgeError], tuple[int, str | None]] = {
    InvalidRequest: (400, None),
    CallNotFound: (404, "Check the id, or register the call first; registrations expire (see expires_at)."),
    MillisAuthError: (
        502,
        "Put the Millis private key into the secret named by the stack output MillisApiKeySecretArn.",
    ),
    MillisBadResponse: (502, "Millis answered something unusable; retry, and report it if it persists."),
    CallAlreadyExists: (502, "Millis returned a call_id that is already stored; retry the registration."),
    MillisUnavailable: (503, "Retry after the number of seconds in Retry-After."),
    MillisKeyUnavailable: (503, "Retry shortly; if it persists, check the secret and the function's access to it."),
    StoreUnavailable: (503, "Retry after the number of seconds in Retry-After; nothing was acknowledged."),
    WebhookUnauthorized: (401, "Send the stack's webhook secret in the X-Webhook-Secret header."),
    WebhookSecretUnavailable: (503, "Retry shortly; the webhook secret could not be read."),
    IdempotencyKeyReused: (422, "Use a new Idempotency-Key for a different request, or resend the same body."),
    IdempotencyInProgress: (409, "The first request with this Idempotency-Key is still running; retry shortly."),
}

# A guard authenticates a request before anything else reads it (the body is not even parsed).
Guard = Callable[[Mapping[str, Any]], None]


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    hint: str | None = None,
    details: Sequence[dict[str, Any]] | None = None,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    body = ErrorBody(
        error=code, message=message, hint=hint, details=list(details) if details else None, request_id=request_id
    )
    count_error(code)
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump_json(exclude_none=True),
        headers=headers,
    )


class BridgeResolver(APIGatewayRestResolver):
    """APIGatewayRestResolver with validation, a body-size limit and the error mapping registered."""

    def __init__(
        self, *, guards: Mapping[str, Guard] | None = None, body_limits: Mapping[str, int] | None = None
    ) -> None:
        super().__init__(enable_validation=True)
        self._guards = dict(guards or {})
        self._body_limits = dict(body_limits or {})
        self.exception_handler(RequestValidationError)(self._invalid_request)
        self.exception_handler(RequestUnsupportedContentType)(self._unsupported_type)
        self.exception_handler(RecursionError)(self._too_deep)
        self.exception_handler(UnicodeDecodeError)(self._not_utf8)
        self.exception_handler(binascii.Error)(self._not_utf8)
        self.exception_handler(BridgeError)(self._domain_error)
        self.exception_handler(Exception)(self._unexpected)
        self.not_found()(self._no_route)

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        resource = str(event.get("resource") or event.get("path") or "")
        request_id = (event.get("requestContext") or {}).get("requestId")
        guard = self._guards.get(resource)
        if guard is not None:
            try:
                guard(event)
            except BridgeError as exc:
                return _proxy(self._domain_error(exc, request_id=request_id))
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
        logger.info("Request rejected", extra={"problems": details})
        return error_response(
            400,
            "invalid_request",
            "; ".join(f"{d['field']}: {d['problem']}" for d in details) or "The request is invalid.",
            hint="See details; the API reference in the README lists every field and its limits.",
            details=details,
            request_id=self._request_id(),
        )

    def _unsupported_type(self, exc: RequestUnsupportedContentType) -> Response[str]:
        return error_response(
            415,
            "unsupported_media_type",
            "The request body must be JSON.",
            hint="Send Content-Type: application/json.",
            request_id=self._request_id(),
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
        status, hint = next((spec for cls, spec in _DOMAIN_ERRORS.items() if isinstance(exc, cls)), (500, None))
        headers: dict[str, str] = {}
        details: list[dict[str, Any]] | None = None
        code = exc.code
        if isinstance(exc, MillisRejectedRequest):
            status = 404 if exc.status == 404 else 422
            details = [{"millis_status": exc.status, "millis_detail": exc.detail}]
        elif isinstance(exc, MillisUnavailable):
            if exc.rate_limited:
                status, code = 429, "millis_rate_limited"
            headers["Retry-After"] = str(exc.retry_after)
        elif status == 503:
            headers["Retry-After"] = "2"
        elif status == 409:
            headers["Retry-After"] = "1"
        if isinstance(exc, MillisUnavailable | MillisAuthError | MillisBadResponse | MillisRejectedRequest):
            attempts = [{"region": a.region, "outcome": a.outcome, "elapsed_ms": a.elapsed_ms} for a in exc.attempts]
            if attempts:
                details = [*(details or []), {"attempts": attempts}]
        log = logger.error if status >= 500 else logger.info
        log("Request failed", extra={"error": code, "status": status, "reason": exc.message})
        return error_response(
            status,
            code,
            exc.message,
            hint=hint,
            details=details,
            request_id=request_id or self._request_id(),
            headers=headers,
        )

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

"""The HTTP edge: a REST resolver that refuses oversized bodies before parsing them, and the one
place where exceptions become HTTP answers (JSON that says what was wrong and how to fix it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    InvalidRequest,
    MillisAuthError,
    MillisBadResponse,
    MillisKeyUnavailable,
    MillisRejectedRequest,
    MillisUnavailable,
    StoreUnavailable,
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
}


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

    def __init__(self) -> None:
        super().__init__(enable_validation=True)
        self.exception_handler(RequestValidationError)(self._invalid_request)
        self.exception_handler(RequestUnsupportedContentType)(self._unsupported_type)
        self.exception_handler(RecursionError)(self._too_deep)
        self.exception_handler(BridgeError)(self._domain_error)
        self.exception_handler(Exception)(self._unexpected)
        self.not_found()(self._no_route)

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        body = event.get("body")
        if isinstance(body, str) and _body_bytes(body, bool(event.get("isBase64Encoded"))) > MAX_BODY_BYTES:
            request_id = (event.get("requestContext") or {}).get("requestId")
            logger.info("Request body too large", extra={"body_chars": len(body)})
            response = error_response(
                413,
                "body_too_large",
                f"The request body is larger than {MAX_BODY_BYTES} bytes.",
                hint="Send a smaller agent_config or metadata.",
                request_id=request_id,
            )
            return {
                "statusCode": response.status_code,
                "headers": {"Content-Type": content_types.APPLICATION_JSON},
                "multiValueHeaders": {},
                "body": response.body,
                "isBase64Encoded": False,
            }
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

    def _domain_error(self, exc: BridgeError) -> Response[str]:
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
        if isinstance(exc, MillisUnavailable | MillisAuthError | MillisBadResponse | MillisRejectedRequest):
            attempts = [{"region": a.region, "outcome": a.outcome, "elapsed_ms": a.elapsed_ms} for a in exc.attempts]
            if attempts:
                details = [*(details or []), {"attempts": attempts}]
        log = logger.error if status >= 500 else logger.info
        log("Request failed", extra={"error": code, "status": status, "reason": exc.message})
        return error_response(
            status, code, exc.message, hint=hint, details=details, request_id=self._request_id(), headers=headers
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
            hint="Routes: POST /calls, GET /calls?lookup_key=..., GET /calls/{call_id}.",
            request_id=self._request_id(),
        )


def _body_bytes(body: str, base64_encoded: bool) -> int:
    if base64_encoded:
        return len(body) * 3 // 4
    if len(body) * 4 <= MAX_BODY_BYTES:
        return len(body)  # even all 4-byte characters would fit
    return len(body.encode("utf-8", "surrogatepass"))

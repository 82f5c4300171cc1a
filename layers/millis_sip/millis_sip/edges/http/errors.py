"""The one place where exceptions become HTTP answers: JSON that says what was wrong and how to fix it.
The errors only this edge raises (an API key it refuses, a webhook without its secret, an Idempotency-Key
misused) live here too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from millis_sip.core.errors import (
    BridgeError,
    CallAlreadyExists,
    CallNotCancelable,
    CallNotFound,
    CallNotTransferable,
    CarrierCredentialsRejected,
    CarrierError,
    CarrierNotConfigured,
    CarrierRefusedCall,
    CarrierUnavailable,
    CredentialUnavailable,
    DestinationNotAllowed,
    FromNotAllowed,
    InvalidRequest,
    KeysSecretUnavailable,
    MachineDetectionUnavailable,
    MillisAuthError,
    MillisBadResponse,
    MillisKeyUnavailable,
    MillisRejectedRequest,
    MillisUnavailable,
    OutboundDisabled,
    OverOutboundCap,
    StoreUnavailable,
    TransferInProgress,
    TransferTargetNotAllowed,
    TransferUnavailable,
    WebhookSecretUnavailable,
    WebhookUnauthorized,
)
from millis_sip.core.numbers import NumberNotFound
from millis_sip.edges.http.models import ErrorBody
from millis_sip.observability import count_error, logger


class ApiKeyRefused(BridgeError):
    """The request came with an API key this API refuses: the SIP servers' key, which opens GET /route only
    (API Gateway cannot bind a key to one method)."""

    code = "forbidden"


class IdempotencyKeyReused(BridgeError):
    """The Idempotency-Key was used before with a different body."""

    code = "idempotency_key_reused"


class IdempotencyInProgress(BridgeError):
    """A request with the same Idempotency-Key is still being processed."""

    code = "idempotency_in_progress"


# status, hint; the message comes from the exception. Looked up along the exception's MRO (``spec_of``): the most
# specific class listed wins, whatever the order of this table.
DOMAIN_ERRORS: dict[type[BridgeError], tuple[int, str | None]] = {
    InvalidRequest: (400, None),
    CallNotFound: (404, "Check the id, or register the call first; registrations expire (see expires_at)."),
    NumberNotFound: (404, "PUT /numbers/{number} creates a route; GET /numbers lists them."),
    MillisAuthError: (
        502,
        "Put the Millis private key into the secret named by the stack output MillisApiKeySecretArn.",
    ),
    MillisBadResponse: (502, "Millis answered something unusable; retry, and report it if it persists."),
    CallAlreadyExists: (502, "Millis returned a call_id that is already stored; retry the registration."),
    MillisUnavailable: (503, "Retry after the number of seconds in Retry-After."),
    MillisKeyUnavailable: (503, "Retry shortly; if it persists, check the secret and the function's access to it."),
    StoreUnavailable: (503, "Retry after the number of seconds in Retry-After; nothing was acknowledged."),
    ApiKeyRefused: (
        403,
        "This is the SIP servers' key (output SipServerApiKeyId), for GET /route only: use the key of ApiKeyId here.",
    ),
    WebhookUnauthorized: (401, "Millis sends each call's own credential in X-Webhook-Secret; nothing else opens it."),
    WebhookSecretUnavailable: (503, "Retry shortly; the webhook secret could not be read."),
    KeysSecretUnavailable: (503, "Retry shortly; the keys secret could not be read."),
    CredentialUnavailable: (503, "Retry shortly; the carrier's credential could not be read."),
    IdempotencyKeyReused: (422, "Use a new Idempotency-Key for a different request, or resend the same body."),
    OutboundDisabled: (403, "Set the stack parameter OutboundAllowedPrefixes (docs/outbound.md)."),
    DestinationNotAllowed: (403, "Add the destination's prefix to OutboundAllowedPrefixes, if it should be called."),
    FromNotAllowed: (403, "PUT /numbers/{number} with outbound_carriers naming the carrier (docs/outbound.md)."),
    MachineDetectionUnavailable: (422, "Leave machine_detection off for this carrier (docs/outbound.md, 'Machines')."),
    CallNotTransferable: (409, "Only a call connected to its agent can be transferred (docs/transfers.md)."),
    TransferInProgress: (409, "Wait for the transfer under way to end."),
    TransferTargetNotAllowed: (403, "Allow the target with TransferAllowedTargets (docs/transfers.md, 'Guards')."),
    TransferUnavailable: (422, "Transfer calls of the carriers docs/transfers.md lists."),
    CarrierNotConfigured: (422, "Configure the carrier's account as the message says (docs/outbound.md, 'Set up')."),
    OverOutboundCap: (429, "Retry after the number of seconds in Retry-After, or raise the cap."),
    CarrierRefusedCall: (422, "The carrier's code and message are in details; nothing rings."),
    CarrierCredentialsRejected: (502, "Check the carrier's credentials in the stack's secret."),
    CarrierUnavailable: (503, "Retry after the number of seconds in Retry-After."),
    CallNotCancelable: (409, "Only an outbound call that is queued or ringing can be canceled."),
    IdempotencyInProgress: (409, "The first request with this Idempotency-Key is still running; retry shortly."),
}


def spec_of(
    exc: BridgeError, table: Mapping[type[BridgeError], tuple[int, str | None]] = DOMAIN_ERRORS
) -> tuple[int, str | None]:
    """The status and hint of the most specific class of ``exc`` in ``table`` (500 when none is listed)."""
    for cls in type(exc).__mro__:
        spec = table.get(cls)
        if spec is not None:
            return spec
    return 500, None


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


def domain_error_response(exc: BridgeError, request_id: str | None) -> Response[str]:
    """The answer to a domain exception: its status and hint from DOMAIN_ERRORS, Millis' detail and attempts
    where there are any, Retry-After where a retry will help."""
    status, hint = spec_of(exc)
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
    elif isinstance(exc, OverOutboundCap | CarrierUnavailable):
        headers["Retry-After"] = str(exc.retry_after)
    elif status == 503:
        headers["Retry-After"] = "2"
    elif status == 409 and not isinstance(exc, CallNotCancelable):
        headers["Retry-After"] = "1"
    if isinstance(exc, CarrierError) and (exc.carrier_status or exc.carrier_code):
        details = [{"carrier_status": exc.carrier_status, "carrier_code": exc.carrier_code}]
    if isinstance(exc, MillisUnavailable | MillisAuthError | MillisBadResponse | MillisRejectedRequest):
        attempts = [{"region": a.region, "outcome": a.outcome, "elapsed_ms": a.elapsed_ms} for a in exc.attempts]
        if attempts:
            details = [*(details or []), {"attempts": attempts}]
    log = logger.error if status >= 500 else logger.info
    log("Request failed", extra={"error": code, "status": status, "reason": exc.message})
    return error_response(status, code, exc.message, hint=hint, details=details, request_id=request_id, headers=headers)

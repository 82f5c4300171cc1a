"""The management API's OpenAPI document: what Powertools derives from the routes, plus the answers API
Gateway gives itself and the API's two credentials."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from millis_sip.core.registration import WEBHOOK_HEADER
from millis_sip.edges.http.models import ErrorBody, GatewayMessage
from millis_sip.edges.http.webhook_auth import WEBHOOK_PATH

# Answered by API Gateway itself, before the function runs.
GATEWAY_ANSWERS: dict[int, Any] = {
    403: {
        "description": "No or wrong x-api-key (API Gateway's {\"message\"}), or the SIP servers' key, which opens "
        "GET /route only (error forbidden)",
        "content": {"application/json": {"model": GatewayMessage | ErrorBody}},
    },
    429: {"description": "Throttled by the usage plan, or Millis rate-limited every region (Retry-After)"},
}


def errors(statuses: Mapping[int, str]) -> dict[int, Any]:
    """OpenAPI responses for error statuses, each answered with an ErrorBody."""
    return {
        status: {"description": text, "content": {"application/json": {"model": ErrorBody}}}
        for status, text in statuses.items()
    }


def document(app: APIGatewayRestResolver) -> dict[str, Any]:
    """The document for ``app``, with each route's credential, without the 422 Powertools declares for
    request validation (this API answers those with 400) and without a body for 204."""
    schema = app.get_openapi_schema(
        title="Millis SIP Bridge",
        version="1.0.0",
        summary="Register calls with Millis AI, look them up for carriers, receive Millis' session webhook.",
    )
    doc: dict[str, Any] = json.loads(schema.model_dump_json(by_alias=True, exclude_none=True))
    for path, operations in doc.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in json.dumps(responses.get("422", {})):
                responses.pop("422")
            responses.get("204", {}).pop("content", None)  # Powertools gives every answer a body; 204 has none
            operation["security"] = [{"webhookSecret": []}] if path == WEBHOOK_PATH else [{"apiKey": []}]
    components = doc.setdefault("components", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(unused, None)
    components["securitySchemes"] = {
        "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        "webhookSecret": {"type": "apiKey", "in": "header", "name": WEBHOOK_HEADER},
    }
    return doc

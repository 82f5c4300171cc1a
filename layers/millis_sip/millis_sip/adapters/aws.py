"""What every AWS adapter needs of botocore's errors."""

from __future__ import annotations

from botocore.exceptions import ClientError


def error_code(exc: ClientError) -> str:
    """The service's error code (``ConditionalCheckFailedException``, ``ThrottlingException``, ...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))

"""Invoke a function's handler in-process with an API Gateway event and unpack its proxy response."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

from dev.lambda_context import LocalContext


def invoke(module: ModuleType, event: dict[str, Any], **context: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
    response = module.lambda_handler(event, LocalContext(**context))
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = ",".join(values)
    return response["statusCode"], headers, json.loads(response["body"])

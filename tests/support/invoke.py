"""Run the management API in-process: ApiFunction's own wiring (``wiring.compose_management``) over in-memory
ports, or a loaded entry module's handler, with an API Gateway event; unpack its proxy response."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Protocol

from dev.lambda_context import LocalContext
from millis_sip.adapters.secrets import StaticApiKey
from millis_sip.config import Settings
from millis_sip.core.keys import StackKeys
from millis_sip.core.ports import Clock
from millis_sip.wiring import compose_management
from tests.support.fakes import FakeGateway, MemoryNumberRoutes, MemoryStore


class Handler(Protocol):
    def lambda_handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]: ...


class FakeApi:
    """The management API as ApiFunction composes it, over a fake Millis and an in-memory store."""

    def __init__(
        self,
        gateway: FakeGateway | None = None,
        store: MemoryStore | None = None,
        *,
        stack_secret: str | None = None,
        keys_secret: str | None = None,
        clock: Clock | None = None,
        **settings: Any,
    ) -> None:
        self.gateway = gateway if gateway is not None else FakeGateway()
        self.store = store if store is not None else MemoryStore()
        self.numbers = MemoryNumberRoutes()
        self.settings = dataclasses.replace(Settings.from_env(), **settings)
        self.app, self.services = compose_management(
            self.settings,
            gateway=self.gateway,
            store=self.store,
            numbers=self.numbers,
            stack_secret=StaticApiKey(stack_secret) if stack_secret else None,
            idempotency=None,
            keys=StackKeys(StaticApiKey(keys_secret) if keys_secret else None),
            clock=clock,
        )

    def lambda_handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self.app.resolve(event, context)


def unpack(response: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = ",".join(values)
    return response["statusCode"], headers, json.loads(response["body"])


def invoke(target: Handler, event: dict[str, Any], **context: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
    return unpack(target.lambda_handler(event, LocalContext(**context)))

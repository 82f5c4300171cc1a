"""``Idempotency-Key`` on ``POST /calls``: a retry with the same key and body gets the first answer without a
second registration (Powertools idempotency, persisted in DynamoDB with a TTL). Powertools' idempotency
utility (and boto3, which it imports) is loaded by the first request that carries a key, not at every cold
start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from millis_sip.core.errors import StoreUnavailable
from millis_sip.edges.http.errors import IdempotencyInProgress, IdempotencyKeyReused

IDEMPOTENCY_HEADER = "Idempotency-Key"

Body = dict[str, Any]  # the request body as JSON (what the key is checked against)
Answer = dict[str, Any]  # the answer to remember


class Idempotency:
    """Runs a function at most once per key (and body), remembering its answer for ``ttl_seconds``."""

    def __init__(self, table_name: str, *, client: Any, ttl_seconds: int) -> None:
        self._table_name = table_name
        self._client = client
        self._ttl_seconds = ttl_seconds
        self._config: Any = None
        self._persistence: Any = None
        self._context: Any = None

    def _ready(self) -> None:
        if self._config is not None:
            return
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

        config = IdempotencyConfig(
            event_key_jmespath="key",
            payload_validation_jmespath="body",
            expires_after_seconds=self._ttl_seconds,
            raise_on_no_idempotency_key=True,
        )
        if self._context is not None:
            config.register_lambda_context(self._context)
        self._persistence = DynamoDBPersistenceLayer(table_name=self._table_name, boto3_client=self._client)
        self._config = config

    def register_lambda_context(self, context: Any) -> None:
        """Lets an in-progress record expire with the invocation that wrote it."""
        self._context = context
        if self._config is not None:
            self._config.register_lambda_context(context)

    def wrap(self, function: Callable[[Body], Answer]) -> Callable[[str, Body], Answer]:
        """``function(body)``, made idempotent per key; the domain's answers to reuse and misuse."""
        once: list[Callable[..., Any]] = []

        def run(request: dict[str, Any]) -> Answer:
            return function(request["body"])

        def call(key: str, body: Body) -> Answer:
            from aws_lambda_powertools.utilities.idempotency import idempotent_function
            from aws_lambda_powertools.utilities.idempotency.exceptions import (
                IdempotencyAlreadyInProgressError,
                IdempotencyPersistenceLayerError,
                IdempotencyValidationError,
            )

            if not once:
                self._ready()
                once.append(
                    idempotent_function(
                        data_keyword_argument="request", persistence_store=self._persistence, config=self._config
                    )(run)
                )
            try:
                result: Answer = once[0](request={"key": key, "body": body})
            except IdempotencyValidationError:
                raise IdempotencyKeyReused(
                    f"This {IDEMPOTENCY_HEADER} was used before with a different body."
                ) from None
            except IdempotencyAlreadyInProgressError:
                raise IdempotencyInProgress(f"A request with this {IDEMPOTENCY_HEADER} is still in progress.") from None
            except IdempotencyPersistenceLayerError as exc:
                raise StoreUnavailable(f"The idempotency store failed ({type(exc).__name__}).") from None
            return result

        return call

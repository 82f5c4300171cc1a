"""``Idempotency-Key`` on ``POST /calls``: a retry with the same key and body gets the first answer without a
second registration (Powertools idempotency, persisted in DynamoDB with a TTL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)

from millis_sip.core.errors import StoreUnavailable
from millis_sip.edges.http.errors import IdempotencyInProgress, IdempotencyKeyReused

IDEMPOTENCY_HEADER = "Idempotency-Key"

Body = dict[str, Any]  # the request body as JSON (what the key is checked against)
Answer = dict[str, Any]  # the answer to remember


class Idempotency:
    """Runs a function at most once per key (and body), remembering its answer for ``ttl_seconds``."""

    def __init__(self, table_name: str, *, client: Any, ttl_seconds: int) -> None:
        self.config = IdempotencyConfig(
            event_key_jmespath="key",
            payload_validation_jmespath="body",
            expires_after_seconds=ttl_seconds,
            raise_on_no_idempotency_key=True,
        )
        self._persistence = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client)

    def register_lambda_context(self, context: Any) -> None:
        """Lets an in-progress record expire with the invocation that wrote it."""
        self.config.register_lambda_context(context)

    def wrap(self, function: Callable[[Body], Answer]) -> Callable[[str, Body], Answer]:
        """``function(body)``, made idempotent per key; the domain's answers to reuse and misuse."""

        def run(request: dict[str, Any]) -> Answer:
            return function(request["body"])

        once: Callable[..., Any] = idempotent_function(
            data_keyword_argument="request", persistence_store=self._persistence, config=self.config
        )(run)

        def call(key: str, body: Body) -> Answer:
            try:
                result: Answer = once(request={"key": key, "body": body})
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

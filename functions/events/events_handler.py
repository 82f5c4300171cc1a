"""EventsFunction: the calls table's DynamoDB stream to call events on EventBridge (docs/events.md). Off every
caller's path: Lambda reads the stream and invokes it with batches of records; it answers with the records whose
events could not all be put (ReportBatchItemFailures), which Lambda retries, then sends to the dead-letter queue."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from millis_sip.observability import batched_metrics, logger
from millis_sip.wiring import call_events

publisher = call_events()


@logger.inject_lambda_context(clear_state=True)
@batched_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failed = publisher.publish(event.get("Records", []))
    return {"batchItemFailures": [{"itemIdentifier": sequence} for sequence in failed]}

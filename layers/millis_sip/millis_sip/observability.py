"""Logger, Tracer and Metrics, configured through the template's Globals (POWERTOOLS_* variables).

The core logs through the standard library (``logging.getLogger("millis_sip....")``); those lines go through
the same Powertools handler and formatter as the edges' (JSON, the invocation's correlation id, phone numbers
masked). Metrics are CloudWatch embedded-metric-format lines (namespace POWERTOOLS_METRICS_NAMESPACE):

  Registrations   count, dimension MillisRegion        a call registered and stored
  Failovers       count, dimension MillisRegion        ...of which the nearest region failed first
  MillisLatency   milliseconds, dimension MillisRegion time of the successful attempt
  Errors          count, dimension ErrorKind           every error answered, by its code
  InboundCalls    count, dimension Outcome             phone calls: claimed, bridging, retried, bridged, ended
  CallFailures    count, dimension Reason              phone calls released without an agent, and why
  SignatureFailures count, dimension Carrier           carrier webhooks refused for a bad or missing signature
  CallEvents      count, dimensions Event, Carrier     call events put on the bus (EventsFunction, docs/events.md)
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from millis_sip.environment import Env

# Every number-shaped value: 6 to 15 digits (E.164's most), with or without the +, not part of a longer word or
# number, nor a group of a hyphenated id (UUIDs such as Chime's TransactionId: 13421026-5ddf-...), so ids,
# nonces and hex stay as they are.
_PHONE = re.compile(r"(?<![\w+])(?<![0-9a-fA-F]{4}-)(\+?)(\d{6,15})(?!\w|-[0-9a-fA-F]{4}-)")


def _masked(match: re.Match[str]) -> str:
    digits = match[2]
    shown = 4 if len(digits) >= 10 else 2
    return f"{match[1]}{'*' * (len(digits) - shown)}{digits[-shown:]}"


def mask_phone_numbers(text: str) -> str:
    """+14155550100 -> +*******0100 (14155550100, as Vonage writes it, too): every digit hidden but the last
    four (two for a number of fewer than ten digits), enough to tell calls apart, not enough to call anyone."""
    return _PHONE.sub(_masked, text)


class MaskingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON log lines with every E.164-looking number masked (MASK_PHONE_NUMBERS, default on)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_phone_numbers(super().format(record))


_masking = Env().flag("MASK_PHONE_NUMBERS", default=True)
logger = Logger(logger_formatter=MaskingFormatter()) if _masking else Logger()


def _route_core_logs() -> None:
    """The package's standard-library loggers write through Powertools' handler (and only there)."""
    package = logging.getLogger("millis_sip")
    package.handlers = list(logger.handlers)
    package.setLevel(logger.log_level)
    package.propagate = False


_route_core_logs()
_Handler = TypeVar("_Handler", bound=Callable[..., Any])


class _Tracing(Protocol):
    def capture_lambda_handler(self, *, capture_response: bool) -> Callable[[_Handler], _Handler]: ...


class _NoTracer:
    """Stands in for Powertools' Tracer when tracing is off, so the X-Ray SDK (about 200 ms of every cold
    start, see docs/performance.md) is never imported."""

    def capture_lambda_handler(self, *, capture_response: bool) -> Callable[[_Handler], _Handler]:
        return lambda handler: handler


def _tracer() -> _Tracing:
    if Env().flag("POWERTOOLS_TRACE_DISABLED", default=False):
        return _NoTracer()
    from aws_lambda_powertools import Tracer

    # Patch only what the functions use: patching every supported library costs cold-start time.
    return Tracer(patch_modules=["botocore", "httpx"])


tracer = _tracer()
metrics = Metrics()
_metrics_enabled = not is_metrics_disabled()
# Reads (GET) publish no metric by design; the flush warning would fire on every one of them.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


_batches = threading.local()  # the documents of the invocation running on this thread, when batched


@contextlib.contextmanager
def metrics_batch() -> Iterator[None]:
    """Inside it, the embedded-metric-format documents of one invocation are merged into as few as CloudWatch
    allows (one, unless one metric is counted under two values of one dimension) and written at the end in
    one write: an invocation pays one line, not one per metric."""
    _batches.documents = []
    try:
        yield
    finally:
        documents: list[dict[str, Any]] = _batches.documents
        _batches.documents = None
        if documents:
            merged = _merged(documents)
            sys.stdout.write("".join(json.dumps(d, separators=(",", ":")) + "\n" for d in merged))


def correlate(event: Any, *path: str) -> None:
    """The invocation's correlation id from ``event`` at ``path`` (what Powertools' correlation_id_path does,
    without a JMESPath search on every invocation); nothing when the event does not have it."""
    value: Any = event
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    logger.set_correlation_id(value if isinstance(value, str) else None)


def batched_metrics[H: Callable[..., Any]](handler: H) -> H:
    """A Lambda handler whose metrics are written once, at the end of each invocation (``metrics_batch``)."""

    @functools.wraps(handler)
    def run(*args: Any, **kwargs: Any) -> Any:
        with metrics_batch():
            return handler(*args, **kwargs)

    return cast("H", run)


def _merged(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for document in documents:
        for target in out:
            clash = any(k in target and target[k] != v for k, v in document.items() if k != "_aws")
            repeated = any(isinstance(v, list) and k in target for k, v in document.items())
            if not clash and not repeated:
                target["_aws"]["CloudWatchMetrics"] += document["_aws"]["CloudWatchMetrics"]
                target.update({k: v for k, v in document.items() if k != "_aws"})
                break
        else:
            out.append(document)
    return out


def _emit(dimension: str, dimension_value: str, *values: tuple[str, MetricUnit, float]) -> None:
    """Metrics that share one dimension, as one CloudWatch embedded-metric-format line (what Powertools'
    single_metric writes, once per metric; one line for several is a fraction of the cost on the hot path),
    without leaking that dimension onto the other metrics of the invocation."""
    _emit_with({dimension: dimension_value}, *values)


def _emit_with(named: dict[str, str], *values: tuple[str, MetricUnit, float]) -> None:
    """``_emit`` with one or more dimensions (all of them one dimension set)."""
    if not _metrics_enabled:
        return
    service = Env().text("POWERTOOLS_SERVICE_NAME")
    dimensions = [*named, "service"] if service else [*named]
    document: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": metrics.namespace,
                    "Dimensions": [dimensions],
                    "Metrics": [{"Name": name, "Unit": unit.value} for name, unit, _ in values],
                }
            ],
        },
        **named,
        **({"service": service} if service else {}),
        **{name: [float(value)] for name, _, value in values},
    }
    batch: list[dict[str, Any]] | None = getattr(_batches, "documents", None)
    if batch is not None:
        batch.append(document)
        return
    print(json.dumps(document, separators=(",", ":")))  # noqa: T201 - EMF goes to stdout, as Powertools does


class EmfMetrics:
    """The core's ``Metrics`` port as embedded-metric-format lines."""

    def registered(self, region: str, *, failed_over: bool, latency_ms: float) -> None:
        values = [("Registrations", MetricUnit.Count, 1.0), ("MillisLatency", MetricUnit.Milliseconds, latency_ms)]
        if failed_over:
            values.append(("Failovers", MetricUnit.Count, 1.0))
        _emit("MillisRegion", region, *values)

    def inbound(self, outcome: str) -> None:
        _emit("Outcome", outcome, ("InboundCalls", MetricUnit.Count, 1.0))

    def inbound_failure(self, reason: str) -> None:
        # Reasons carry Chime's ErrorType after a colon; the dimension keeps only the stable part.
        _emit("Reason", reason.split(":", 1)[0], ("CallFailures", MetricUnit.Count, 1.0))


emf_metrics = EmfMetrics()


def count_error(kind: str) -> None:
    """An error answered to a caller, by its code (Errors)."""
    _emit("ErrorKind", kind, ("Errors", MetricUnit.Count, 1.0))


def count_signature_failure(carrier: str) -> None:
    """A carrier's webhook refused for its signature (SignatureFailures)."""
    _emit("Carrier", carrier, ("SignatureFailures", MetricUnit.Count, 1.0))


def count_call_event(detail_type: str, carrier: str | None) -> None:
    """A call event put on the bus (CallEvents), by detail-type and carrier (``none`` for a registration no
    phone system has used yet)."""
    _emit_with({"Event": detail_type, "Carrier": carrier or "none"}, ("CallEvents", MetricUnit.Count, 1.0))

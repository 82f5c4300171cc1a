"""Warm hot path: POST /calls and a Chime NEW_INBOUND_CALL invoked in-process, many times, against the
Millis simulator and DynamoDB Local on loopback, against the floor of the same network calls made directly
(the same httpx client settings, the same botocore configuration). The network time inside each invocation
is measured too, so the overhead splits into stages: the edge (Powertools handler, validation, logging,
metrics, serialisation) and the domain (everything else the code does around the network calls)."""

from __future__ import annotations

import contextlib
import io
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3
import httpx

from dev.bench import load_event
from dev.lambda_context import LocalContext
from dev.millis_simulator import MillisSimulator
from millis_sip.adapters.dynamodb.clients import API_CONFIG, PHONE_CONFIG
from millis_sip.adapters.dynamodb.store import LOOKUP_INDEX
from millis_sip.adapters.millis_http import HttpMillisGateway
from millis_sip.observability import logger


@dataclass
class Timings:
    totals: list[float] = field(default_factory=list)  # seconds per invocation
    stages: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.totals)
        return {
            "p50_us": statistics.median(ordered) * 1e6,
            "p99_us": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e6,
            "n": len(ordered),
        }


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Logs and metrics are written as in Lambda (their cost is measured), just not shown."""
    sink = io.StringIO()
    handler: Any = logger.registered_handler
    previous = handler.stream
    handler.stream = sink
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        handler.stream = previous


def _timed(stages: dict[str, float], name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            stages[name] += time.perf_counter() - started

    return wrapper


def _run(invoke: Callable[[int], None], stages: dict[str, float], n: int, warmup: int) -> Timings:
    timings = Timings()
    for i in range(warmup + n):
        stages.clear()
        started = time.perf_counter()
        invoke(i)
        elapsed = time.perf_counter() - started
        if i >= warmup:
            timings.totals.append(elapsed)
            for name, seconds in stages.items():
                timings.stages[name].append(seconds)
    return timings


def api_path(module: ModuleType, n: int, warmup: int = 30) -> Timings:
    stages: dict[str, float] = defaultdict(float)
    api = module.api
    registrar = api.services.registrar
    registrar.register = _timed(stages, "domain", registrar.register)
    api.gateway.register = _timed(stages, "millis", api.gateway.register)
    api.store.put_new = _timed(stages, "dynamodb", api.store.put_new)
    event = load_event("api-create-call.json")
    event["body"] = '{"agent_id": "bench-agent", "metadata": {"crm_ticket": "T-1"}, "lookup_key": "+14155550100"}'

    def invoke(_: int) -> None:
        response = module.lambda_handler(event, LocalContext())
        if response["statusCode"] != 201:
            raise RuntimeError(response["body"])

    with quiet():
        return _run(invoke, stages, n, warmup)


def sma_path(module: ModuleType, n: int, warmup: int = 30) -> Timings:
    stages: dict[str, float] = defaultdict(float)
    sma = module.sma
    sma.app.handle = _timed(stages, "domain", sma.app.handle)
    sma.gateway.register = _timed(stages, "millis", sma.gateway.register)
    for name in ("begin_transaction", "pending_for", "commit_inbound"):
        setattr(sma.store, name, _timed(stages, "dynamodb", getattr(sma.store, name)))
    template = load_event("sma-new-inbound-call.json")

    def invoke(i: int) -> None:
        event = {**template, "CallDetails": {**template["CallDetails"], "TransactionId": str(uuid.uuid4())}}
        caller = dict(template["CallDetails"]["Participants"][0], From=f"+1206555{i:04d}")
        event["CallDetails"]["Participants"] = [caller]
        answer = module.lambda_handler(event, LocalContext(function_name="SipMediaAppFunction"))
        if answer["Actions"][0]["Type"] != "CallAndBridge":
            raise RuntimeError(str(answer))

    with quiet():
        return _run(invoke, stages, n, warmup)


def floor(sim: MillisSimulator, endpoint: str, table: str, n: int, *, chime: bool, warmup: int = 30) -> Timings:
    """The network calls the path cannot avoid, made directly: one POST to Millis and the DynamoDB calls
    (API: one conditional put; phone call: the transaction put, two index queries, one transaction)."""
    http = HttpMillisGateway.new_client()
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, config=PHONE_CONFIG if chime else API_CONFIG)
    url = sim.base_url("us-west") + "/register_sip_call"
    payload = {"agent_id": "bench-agent", "metadata": {"crm_ticket": "T-1"}}
    stages: dict[str, float] = defaultdict(float)

    def item(call_id: str) -> dict[str, Any]:
        return {
            "call_id": {"S": call_id},
            "sip_uri": {"S": f"sip:call-{call_id}@sip-us-west.millis-simulator.test"},
            "millis_region": {"S": "us-west"},
            "status": {"S": "registered"},
            "created_at": {"S": "2026-11-26T00:00:00.000Z"},
            "expires_at": {"N": "4102444800"},
            "source": {"S": "http"},
        }

    def invoke(i: int) -> None:
        body = http.post(url, json=payload, headers={"Authorization": sim.api_key}, timeout=httpx.Timeout(5.0))
        call_id = body.json()["call_id"]
        if not chime:
            ddb.put_item(TableName=table, Item=item(call_id), ConditionExpression="attribute_not_exists(call_id)")
            return
        marker = f"floor#{uuid.uuid4()}"
        ddb.put_item(
            TableName=table, Item={"call_id": {"S": marker}}, ConditionExpression="attribute_not_exists(call_id)"
        )
        for key in (f"+1206555{i:04d}", "+15055550123"):
            ddb.query(
                TableName=table,
                IndexName=LOOKUP_INDEX,
                KeyConditionExpression="lookup_key = :k",
                ExpressionAttributeValues={":k": {"S": key}},
                Limit=20,
            )
        ddb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": table,
                        "Item": item(call_id),
                        "ConditionExpression": "attribute_not_exists(call_id)",
                    }
                },
                {
                    "Update": {
                        "TableName": table,
                        "Key": {"call_id": {"S": marker}},
                        "UpdateExpression": "SET millis_call_id = :id",
                        "ExpressionAttributeValues": {":id": {"S": call_id}},
                    }
                },
            ]
        )

    return _run(invoke, stages, n, warmup)


def report(path: Timings, base: Timings) -> dict[str, Any]:
    """The floor comparison, and the overhead measured pairwise: each invocation's time minus the network
    calls made inside that same invocation (on loopback DynamoDB Local answers in milliseconds and its
    jitter alone exceeds the overhead, so two separate samples cannot resolve it)."""
    mine, floor_ = path.summary(), base.summary()
    zero = [0.0] * len(path.totals)
    millis, dynamo = path.stages.get("millis", zero), path.stages.get("dynamodb", zero)
    domain_total = path.stages.get("domain", zero)
    network = [(m + d) * 1e6 for m, d in zip(millis, dynamo, strict=True)]
    domain = [dt * 1e6 - n for dt, n in zip(domain_total, network, strict=True)]
    edge = [(t - dt) * 1e6 for t, dt in zip(path.totals, domain_total, strict=True)]
    paired = sorted(t * 1e6 - n for t, n in zip(path.totals, network, strict=True))
    return {
        **{f"path_{k}": v for k, v in mine.items()},
        **{f"floor_{k}": v for k, v in floor_.items()},
        "overhead_p50_us": statistics.median(paired),
        "overhead_p99_us": paired[min(len(paired) - 1, int(0.99 * len(paired)))],
        "vs_floor_p50_us": mine["p50_us"] - floor_["p50_us"],
        "ratio_p50": mine["p50_us"] / floor_["p50_us"],
        # Each stage measured within each invocation, then its median.
        "stages_p50_us": {
            "network (Millis + DynamoDB, inside the function)": statistics.median(network),
            "domain (around the network calls)": statistics.median(domain),
            "edge (handler, parsing, validation, logs, metrics, answer)": statistics.median(edge),
        },
    }

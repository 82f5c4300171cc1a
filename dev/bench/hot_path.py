"""Warm hot path: each function's main invocation in-process, many times, against the Millis simulator and
DynamoDB Local on loopback, against a floor of the network calls that cannot be avoided made directly (the
same httpx client settings, the same botocore configuration).

The network time inside each invocation is measured too (every DynamoDB call from botocore's before-call to
its after-call, and every Millis registration, as intervals whose union is counted: concurrent requests
overlap), so the overhead of an invocation is its time minus its own network time, and splits into the edge
(handler, parsing, logging, metrics, the answer) and the domain (what the code does around the network)."""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlencode

import boto3
import httpx

from dev.bench import BENCH_TWILIO_TOKEN, load_event
from dev.lambda_context import LocalContext
from dev.millis_simulator import MillisSimulator
from millis_sip.adapters.dynamodb.clients import API_CONFIG, PHONE_CONFIG
from millis_sip.adapters.dynamodb.store import LOOKUP_ATTRIBUTE, LOOKUP_INDEX
from millis_sip.adapters.millis_http import HttpMillisGateway
from millis_sip.edges.carriers.twilio import signature
from millis_sip.observability import logger


@dataclass
class Timings:
    totals: list[float] = field(default_factory=list)  # seconds per invocation
    network: list[float] = field(default_factory=list)  # seconds of it spent in network calls (their union)
    domain: list[float] = field(default_factory=list)  # seconds inside the core/edge's own call

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.totals)
        return {"p50_us": statistics.median(ordered) * 1e6, "p99_us": _p99(ordered) * 1e6, "n": len(ordered)}

    def extend(self, other: Timings) -> None:
        self.totals += other.totals
        self.network += other.network
        self.domain += other.domain


def _p99(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


class Recorder:
    """The network intervals of one invocation: DynamoDB calls (botocore's whole call, from its first event to
    after-call: the floor makes the same calls through botocore) and Millis registrations."""

    def __init__(self) -> None:
        self.intervals: list[tuple[float, float]] = []
        self.domain = 0.0

    def reset(self) -> None:
        self.intervals.clear()
        self.domain = 0.0

    def watch_dynamodb(self, client: Any) -> None:
        """Every DynamoDB call the stores make, whole (botocore included: the floor makes its calls through
        botocore too), whichever thread makes it."""
        from millis_sip.adapters.dynamodb import store

        for name in ("send", "request"):
            original = getattr(store, f"_bench_original_{name}", None) or getattr(store, name)
            setattr(store, f"_bench_original_{name}", original)
            setattr(store, name, self.timed(original, network=True))

    def timed(self, method: Callable[..., Any], *, network: bool) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                ended = time.perf_counter()
                if network:
                    self.intervals.append((started, ended))
                else:
                    self.domain += ended - started

        return wrapper

    def network_seconds(self) -> float:
        total, current_start, current_end = 0.0, None, None
        for start, end in sorted(self.intervals):
            if current_end is None or start > current_end:
                if current_end is not None and current_start is not None:
                    total += current_end - current_start
                current_start, current_end = start, end
            else:
                current_end = max(current_end, end)
        if current_end is not None and current_start is not None:
            total += current_end - current_start
        return total


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


def _run(invoke: Callable[[int], None], recorder: Recorder | None, n: int, warmup: int) -> Timings:
    timings = Timings()
    for i in range(warmup + n):
        if recorder is not None:
            recorder.reset()
        started = time.perf_counter()
        invoke(i)
        elapsed = time.perf_counter() - started
        if i >= warmup:
            timings.totals.append(elapsed)
            if recorder is not None:
                timings.network.append(recorder.network_seconds())
                timings.domain.append(recorder.domain)
    return timings


# --- the functions' paths ---------------------------------------------------------------------------------


def api_path(module: ModuleType, n: int, warmup: int = 30) -> Timings:
    """POST /calls."""
    recorder = Recorder()
    api = module.api
    recorder.watch_dynamodb(api.dynamodb)
    registrar = api.services.registrar
    registrar.register = recorder.timed(registrar.register, network=False)
    api.gateway.register = recorder.timed(api.gateway.register, network=True)
    event = load_event("api-create-call.json")
    event["body"] = '{"agent_id": "bench-agent", "metadata": {"crm_ticket": "T-1"}, "lookup_key": "+14155550100"}'

    def invoke(_: int) -> None:
        response = module.lambda_handler(event, LocalContext())
        if response["statusCode"] != 201:
            raise RuntimeError(response["body"])

    with quiet():
        return _run(invoke, recorder, n, warmup)


def sma_path(module: ModuleType, n: int, warmup: int = 30) -> Timings:
    """A Chime NEW_INBOUND_CALL from a caller with no registration: the router's whole path."""
    recorder = Recorder()
    sma = module.sma
    recorder.watch_dynamodb(sma.dynamodb)
    sma.app.handle = recorder.timed(sma.app.handle, network=False)
    sma.gateway.register = recorder.timed(sma.gateway.register, network=True)
    template = load_event("sma-new-inbound-call.json")

    def invoke(i: int) -> None:
        event = {**template, "CallDetails": {**template["CallDetails"], "TransactionId": str(uuid.uuid4())}}
        caller = dict(template["CallDetails"]["Participants"][0], From=f"+1206{uuid.uuid4().int % 10**7:07d}")
        event["CallDetails"]["Participants"] = [caller]
        answer = module.lambda_handler(event, LocalContext(function_name="SipMediaAppFunction"))
        if answer["Actions"][0]["Type"] != "CallAndBridge":
            raise RuntimeError(str(answer))

    with quiet():
        return _run(invoke, recorder, n, warmup)


def twilio_event(token: str = BENCH_TWILIO_TOKEN) -> Callable[[], dict[str, Any]]:
    """A new Twilio voice webhook each time, signed as Twilio signs it (events/inbound-twilio-voice.json)."""
    template = load_event("inbound-twilio-voice.json")
    url = f"https://{template['requestContext']['domainName']}{template['requestContext']['path']}"
    params = dict(parse_qsl(template["body"]))

    def make() -> dict[str, Any]:
        fresh = {**params, "CallSid": f"CA{uuid.uuid4().hex}", "From": f"+1206{uuid.uuid4().int % 10**7:07d}"}
        event: dict[str, Any] = json.loads(json.dumps(template))
        event["body"] = urlencode(fresh)
        event["headers"]["X-Twilio-Signature"] = signature(url, list(fresh.items()), token)
        return event

    return make


def route_event() -> Callable[[], dict[str, Any]]:
    """A SIP server asking GET /route for a new call each time (events/inbound-route.json)."""
    template = load_event("inbound-route.json")

    def make() -> dict[str, Any]:
        event: dict[str, Any] = json.loads(json.dumps(template))
        for name, value in (
            ("call", f"{uuid.uuid4().hex}@pbx.example"),
            ("from", f"+1206{uuid.uuid4().int % 10**7:07d}"),
        ):
            event["queryStringParameters"][name] = value
            event["multiValueQueryStringParameters"][name] = [value]
        return event

    return make


def inbound_path(module: ModuleType, make_event: Callable[[], dict[str, Any]], n: int, warmup: int = 30) -> Timings:
    """A carrier's webhook or a SIP server's GET /route through InboundFunction."""
    recorder = Recorder()
    inbound = module.inbound
    recorder.watch_dynamodb(inbound.dynamodb)
    inbound.gateway.register = recorder.timed(inbound.gateway.register, network=True)
    for key, route in list(inbound.routes.items()):
        inbound.routes[key] = replace(route, handle=recorder.timed(route.handle, network=False))
    events = [make_event() for _ in range(warmup + n)]

    def invoke(i: int) -> None:
        answer = module.lambda_handler(events[i], LocalContext(function_name="InboundFunction"))
        if answer["statusCode"] != 200 or "sip:" not in answer["body"]:
            raise RuntimeError(str(answer))

    with quiet():
        return _run(invoke, recorder, n, warmup)


# --- floors -----------------------------------------------------------------------------------------------


def _item(call_id: str) -> dict[str, Any]:
    return {
        "call_id": {"S": call_id},
        "sip_uri": {"S": f"sip:call-{call_id}@sip-us-west.millis-simulator.test"},
        "millis_region": {"S": "us-west"},
        "status": {"S": "claimed"},
        "created_at": {"S": "2026-11-26T00:00:00.000Z"},
        "expires_at": {"N": "4102444800"},
        "source": {"S": "chime"},
    }


class Floor:
    """The network calls themselves, made directly with clients configured as the functions' are."""

    def __init__(
        self, sim: MillisSimulator, endpoint: str, table: str, *, phone: bool, millis_base: str | None = None
    ) -> None:
        self.http = HttpMillisGateway.new_client()
        self.ddb = boto3.client("dynamodb", endpoint_url=endpoint, config=PHONE_CONFIG if phone else API_CONFIG)
        self.url = (millis_base or sim.base_url("us-west")) + "/register_sip_call"
        self.key = sim.api_key
        self.table = table

    def millis(self) -> str:
        payload = {"agent_id": "bench-agent", "metadata": {"crm_ticket": "T-1"}}
        body = self.http.post(self.url, json=payload, headers={"Authorization": self.key}, timeout=httpx.Timeout(5.0))
        call_id: str = body.json()["call_id"]
        return call_id

    def put(self, item: dict[str, Any]) -> None:
        self.ddb.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(call_id)")

    def commit(self, item: dict[str, Any], marker: str, owner: str) -> None:
        """The record and the marker in one two-item transaction, as the stack commits a phone call."""
        self.ddb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": item,
                        "ConditionExpression": "attribute_not_exists(call_id)",
                    }
                },
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": {"call_id": {"S": marker}},
                        "UpdateExpression": "SET #state = :done, millis_call_id = :id",
                        "ConditionExpression": "#owner = :owner",
                        "ExpressionAttributeNames": {"#state": "state", "#owner": "owner"},
                        "ExpressionAttributeValues": {
                            ":done": {"S": "done"},
                            ":id": item["call_id"],
                            ":owner": {"S": owner},
                        },
                    }
                },
            ]
        )

    def query(self) -> None:
        self.ddb.query(
            TableName=self.table,
            IndexName=LOOKUP_INDEX,
            KeyConditionExpression=f"{LOOKUP_ATTRIBUTE} = :k",
            ExpressionAttributeValues={":k": {"S": uuid.uuid4().hex}},
            Limit=20,
        )


def api_floor(sim: MillisSimulator, endpoint: str, table: str, n: int, warmup: int = 30) -> Timings:
    """POST /calls cannot do less than one Millis registration and one conditional put."""
    floor = Floor(sim, endpoint, table, phone=False)
    return _run(lambda _: floor.put(_item(floor.millis())), None, n, warmup)


def phone_floor(
    sim: MillisSimulator, endpoint: str, table: str, n: int, warmup: int = 30, millis_base: str | None = None
) -> Timings:
    """An exactly-once phone call that looks for a registration first: one query, a conditional put that owns
    the call, Millis, one write of the record, one after the other."""
    floor = Floor(sim, endpoint, table, phone=True, millis_base=millis_base)

    def invoke(_: int) -> None:
        floor.query()
        floor.put({"call_id": {"S": f"floor#{uuid.uuid4()}"}, "kind": {"S": "transaction"}})
        floor.put(_item(floor.millis()))

    return _run(invoke, None, n, warmup)


def transactional_floor(
    sim: MillisSimulator, endpoint: str, table: str, n: int, warmup: int = 30, millis_base: str | None = None
) -> Timings:
    """The same calls with the last write as the stack makes it: the record and the call's marker in one
    two-item transaction (what makes a phone call exactly once): one query, a conditional put that owns the
    call, Millis, the transaction, one after the other."""
    floor = Floor(sim, endpoint, table, phone=True, millis_base=millis_base)

    def invoke(_: int) -> None:
        marker, owner = f"floor#{uuid.uuid4()}", uuid.uuid4().hex
        floor.query()
        floor.put({"call_id": {"S": marker}, "kind": {"S": "transaction"}, "owner": {"S": owner}})
        floor.commit(_item(floor.millis()), marker, owner)

    return _run(invoke, None, n, warmup)


def answer_floor(sim: MillisSimulator, endpoint: str, table: str, n: int, warmup: int = 30) -> Timings:
    """Time to answer a carrier can never be below two network calls: Millis and DynamoDB."""
    floor = Floor(sim, endpoint, table, phone=True)
    return _run(lambda _: floor.put(_item(floor.millis())), None, n, warmup)


def interleaved(path: Callable[[], Timings], base: Callable[[], Timings], rounds: int = 3) -> tuple[Timings, Timings]:
    """Path and floor in alternating blocks, so that noise on the machine hits both."""
    mine, floor = Timings(), Timings()
    for _ in range(rounds):
        floor.extend(base())
        mine.extend(path())
    return mine, floor


def report(path: Timings, base: Timings) -> dict[str, Any]:
    """The floor comparison, and the overhead measured pairwise: each invocation's time minus the network
    time inside that same invocation (on loopback DynamoDB Local answers in milliseconds and its jitter alone
    exceeds the overhead, so two separate samples cannot resolve it)."""
    mine, floor_ = path.summary(), base.summary()
    paired = sorted(t - n for t, n in zip(path.totals, path.network, strict=True))
    domain = [d - n for d, n in zip(path.domain, path.network, strict=True)]
    edge = [t - d for t, d in zip(path.totals, path.domain, strict=True)]
    return {
        **{f"path_{k}": v for k, v in mine.items()},
        **{f"floor_{k}": v for k, v in floor_.items()},
        "overhead_p50_us": statistics.median(paired) * 1e6,
        "overhead_p99_us": _p99(paired) * 1e6,
        "vs_floor_p50_us": mine["p50_us"] - floor_["p50_us"],
        "ratio_p50": mine["p50_us"] / floor_["p50_us"],
        # Each stage measured within each invocation, then its median.
        "stages_p50_us": {
            "network (Millis + DynamoDB, inside the function)": statistics.median(path.network) * 1e6,
            "domain (around the network calls)": statistics.median(domain) * 1e6,
            "edge (handler, parsing, validation, logs, metrics, answer)": statistics.median(edge) * 1e6,
        },
    }

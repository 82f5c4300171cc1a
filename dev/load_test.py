"""A bounded load test on loopback: a few hundred concurrent registrations and carrier lookups through the
local API server (a pool of execution environments) against DynamoDB Local and the Millis simulator, with
faults switched on midway. Reports acknowledged vs stored vs lost (must be 0) and duplicates (must be 0).

    python -m dev.load_test --requests 400 --concurrency 32      (make load)

Clients behave as docs/api.md tells them to: every registration carries an Idempotency-Key, and a 503, 429
or 409 is retried with the same key after Retry-After (shortened here).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from dev.dynamodb_local import DynamoDBLocal
from dev.environments import start_environments
from dev.function_env import Tables, function_env
from dev.local_api import LocalApi
from dev.millis_simulator import Fault, MillisSimulator
from dev.template import create_tables

API_KEY = "load-api-key"
TABLES = Tables.named("load")
RETRYABLE = {409, 429, 502, 503}
MAX_TRIES = 6


@dataclass
class Report:
    requests: int
    acknowledged: dict[str, str] = field(default_factory=dict)  # idempotency key -> call_id
    answers: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    mismatched_keys: list[str] = field(default_factory=list)  # one key answered with two call ids
    given_up: int = 0
    surprises: list[str] = field(default_factory=list)  # answers a well-behaved client should never get
    lookups_ok: int = 0
    lookups: int = 0
    stored: int = 0
    lost: list[str] = field(default_factory=list)
    duplicates: int = 0
    elapsed_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ok(self) -> bool:
        return not self.lost and self.duplicates == 0 and not self.mismatched_keys and self.given_up == 0

    def table(self) -> str:
        lat = sorted(self.latencies_ms) or [0.0]

        def p(q: float) -> float:
            return lat[min(len(lat) - 1, int(q * len(lat)))]

        rows = [
            ("registrations requested", self.requests),
            ("acknowledged (201)", len(self.acknowledged)),
            ("stored in DynamoDB", self.stored),
            ("lost (acknowledged, not stored)", len(self.lost)),
            ("duplicates (two stored calls for one request)", self.duplicates),
            ("keys answered with two call ids", len(self.mismatched_keys)),
            ("given up after retries", self.given_up),
            ("carrier lookups found", f"{self.lookups_ok}/{self.lookups}"),
            ("HTTP answers", dict(sorted(self.answers.items()))),
            ("unexpected answers", self.surprises[:3] or "none"),
            ("latency p50 / p95 / p99 (ms)", f"{p(0.5):.1f} / {p(0.95):.1f} / {p(0.99):.1f}"),
            ("elapsed (s)", f"{self.elapsed_s:.1f}"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


@contextlib.contextmanager
def stack(concurrency: int) -> Iterator[tuple[LocalApi, MillisSimulator, Any]]:
    with contextlib.ExitStack() as stack:
        ddb = stack.enter_context(DynamoDBLocal())
        client = create_tables(ddb.endpoint, TABLES)
        sim = stack.enter_context(MillisSimulator())
        env = {
            **os.environ,
            **function_env(
                tables=TABLES,
                dynamodb_endpoint=ddb.endpoint,
                millis=sim.env(),
                log_level="CRITICAL",
                metrics=False,
                extra={"MILLIS_READ_TIMEOUT": "0.5"},
            ),
        }
        environments = start_environments("api_handler", max(1, concurrency // 4), env)
        for environment in environments:
            stack.callback(environment.close)
        api = stack.enter_context(LocalApi(environments, api_key=API_KEY, port=0))
        yield api, sim, client


def run(requests: int = 400, concurrency: int = 32) -> Report:
    report = Report(requests)
    with stack(concurrency) as (api, sim, dynamodb):
        keys = [f"load-{uuid.uuid4().hex}" for _ in range(requests)]
        numbers = {key: f"+1555{n:07d}" for n, key in enumerate(keys)}
        done = {"n": 0}

        def faults() -> None:  # switched on midway, as the requests flow
            with report._lock:
                done["n"] += 1
                n = done["n"]
            if n == requests // 3:
                sim.set_fault("us-west", Fault(status=503))  # the nearest region goes down: failover
            elif n == requests // 2:
                sim.set_fault("eu-west", Fault(drop=True, times=max(3, requests // 20)))  # both failing for a while
            elif n == (2 * requests) // 3:
                sim.set_fault("us-west", Fault(delay=0.8, times=max(3, requests // 20)))  # black-holed, then back
            elif n == (3 * requests) // 4:
                sim.clear()

        def register(key: str) -> None:
            with httpx.Client(base_url=api.url, headers={"x-api-key": API_KEY}, timeout=30) as http:
                body = {"agent_id": "load-agent", "lookup_key": numbers[key], "metadata": {"key": key}}
                for _ in range(MAX_TRIES):
                    started = time.perf_counter()
                    answer = http.post("/calls", json=body, headers={"Idempotency-Key": key})
                    with report._lock:
                        report.latencies_ms.append((time.perf_counter() - started) * 1000)
                        report.answers[answer.status_code] += 1
                    if answer.status_code == 201:
                        call_id = answer.json()["call_id"]
                        with report._lock:
                            previous = report.acknowledged.setdefault(key, call_id)
                            if previous != call_id:
                                report.mismatched_keys.append(key)
                        faults()
                        found = http.get("/calls", params={"lookup_key": numbers[key]})
                        with report._lock:
                            report.lookups += 1
                            report.lookups_ok += found.status_code == 200 and found.json()["call_id"] == call_id
                        return
                    if answer.status_code not in RETRYABLE:
                        with report._lock:
                            report.surprises.append(f"{answer.status_code} {answer.text[:300]}")
                        break
                    time.sleep(0.05)
                with report._lock:
                    report.given_up += 1
                faults()

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(register, keys))
        report.elapsed_s = time.perf_counter() - started

        stored: dict[str, list[str]] = {}
        pages = dynamodb.get_paginator("scan").paginate(TableName=TABLES.calls, ConsistentRead=True)
        for page in pages:
            for item in page["Items"]:
                stored.setdefault(item["lookup_key"]["S"], []).append(item["call_id"]["S"])
        stored_ids = {call_id for ids in stored.values() for call_id in ids}
        report.stored = sum(1 for call_id in report.acknowledged.values() if call_id in stored_ids)
        report.lost = [c for c in report.acknowledged.values() if c not in stored_ids]
        report.duplicates = sum(len(ids) - 1 for ids in stored.values() if len(ids) > 1)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", help="also write the report as JSON to this file")
    args = parser.parse_args()
    report = run(args.requests, args.concurrency)
    print(report.table())
    if args.json:
        data = {k: v for k, v in report.__dict__.items() if not k.startswith("_") and k != "latencies_ms"}
        data["answers"] = dict(report.answers)
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
    print("\nLOAD OK" if report.ok else "\nLOAD FAILED: acknowledged registrations were lost or duplicated")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

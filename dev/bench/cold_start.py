"""Cold start: a fresh interpreter that imports a function's entry module (configuration read, clients
built), against the floor measured in the same run: a fresh interpreter that imports boto3 and httpx and
builds one DynamoDB client and one httpx.Client, from the same build (so compiled the same way: the layer
ships bytecode). Timed inside the process (interpreter boot excluded, it is the same for both), repeated,
median reported; ``-X importtime`` gives the breakdown by top-level package. Also: the CPU a cold start costs
with the shipped bytecode against the same artifact without it, and a carrier's first call answered by a
fresh process against a fresh process making the two network calls itself."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from dev.bench import function_config
from dev.template import ROOT


def artifact_paths(build: Path) -> list[Path]:
    """What Lambda puts on sys.path: the layer's python/ and the functions' code, as `sam build` made them."""
    return [
        build / "MillisSipLayer" / "python",
        build / "ApiFunction",
        build / "SipMediaAppFunction",
        build / "InboundFunction",
    ]


FLOOR = """
import boto3, httpx
client = boto3.client("dynamodb")
http = httpx.Client()
"""
TARGETS = {
    "floor": FLOOR,
    "ApiFunction": "import api_handler\n",
    "SipMediaAppFunction": "import sma_handler\n",
    "InboundFunction": "import inbound_handler\n",
}
_TIMED = """
import time
_t0 = time.perf_counter()
{body}
print("ELAPSED", time.perf_counter() - _t0)
"""


# As in AWS, the secrets come from Secrets Manager: a cold start builds the client (nothing is read at import).
AWS_SECRETS = {
    "MILLIS_API_KEY": "",
    "MILLIS_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:us-west-2:123456789012:secret:millis-key-AbCdEf",
    "WEBHOOK_SECRET": "",
    "WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:us-west-2:123456789012:secret:stack-secret-AbCdEf",
    "TWILIO_AUTH_TOKEN": "",
    "TWILIO_AUTH_TOKEN_SECRET_ARN": "arn:aws:secretsmanager:us-west-2:123456789012:secret:twilio-AbCdEf",
    "IDEMPOTENCY_TABLE_NAME": "bench-idempotency",
}


def artifact_env(build: Path, extra: Mapping[str, str] | None = None, *, aws_secrets: bool = False) -> dict[str, str]:
    """The functions' configuration pointed nowhere (nothing is called at import), the build on the path;
    ``aws_secrets``: secret ARNs as the template sets them, instead of the local values."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(str(p) for p in artifact_paths(build)),
        **function_config(),
        **(AWS_SECRETS if aws_secrets else {}),
        **(extra or {}),
    }


def snippet(code: str, env: Mapping[str, str], marker: str, timeout: float = 120) -> float:
    """Run ``code`` in a fresh interpreter on the build alone (``-S``, ``-B``: only the build on the path, no
    bytecode of its own written) and return the number it prints after ``marker``."""
    result = subprocess.run(
        [sys.executable, "-S", "-B", "-c", code],
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return float(result.stdout.split(marker)[-1])


def _once(code: str, env: Mapping[str, str]) -> float:
    return snippet(_TIMED.format(body=code), env, "ELAPSED")


def measure(build: Path, repeats: int = 11, env_extra: Mapping[str, str] | None = None) -> dict[str, dict[str, float]]:
    """Median and spread of each target's init time, interleaved so that machine noise hits all alike."""
    env = artifact_env(build, env_extra, aws_secrets=True)
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeats):
        for name, code in TARGETS.items():
            samples[name].append(_once(code, env) * 1000)
    floor = statistics.median(samples["floor"])
    return {
        name: {
            "median_ms": statistics.median(values),
            "min_ms": min(values),
            "max_ms": max(values),
            "ratio": statistics.median(values) / floor,
        }
        for name, values in samples.items()
    }


_STDLIB = set(sys.stdlib_module_names) | {"_frozen_importlib_external", "encodings", "site"}
_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def breakdown(build: Path, target: str, env_extra: Mapping[str, str] | None = None, top: int = 8) -> dict[str, float]:
    """Milliseconds of import time per top-level package: every module's own time (``-X importtime``)."""
    env = artifact_env(build, env_extra, aws_secrets=True)
    result = subprocess.run(
        [sys.executable, "-S", "-B", "-X", "importtime", "-c", TARGETS[target]],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    totals: dict[str, float] = defaultdict(float)
    for line in result.stderr.splitlines():
        match = _LINE.match(line)
        if match:  # each module's own time, charged to its top-level package
            package = match[4].split(".")[0]
            package = "stdlib" if package in _STDLIB else package
            totals[package] += int(match[1]) / 1000
    ranked = sorted(totals.items(), key=lambda item: item[1], reverse=True)
    shown = dict(ranked[:top])
    rest = sum(value for _, value in ranked[top:])
    if rest:
        shown["other"] = rest
    return shown


_CPU = """
import time
_t0 = time.process_time()
import {module}
print("CPU", time.process_time() - _t0)
"""


def _cpu(module: str, env: Mapping[str, str]) -> float:
    return snippet(_CPU.format(module=module), env, "CPU")


def bytecode_cpu(build: Path, repeats: int = 7) -> dict[str, dict[str, float]]:
    """CPU seconds of each entry module's import with the shipped bytecode, and with the same artifact copied
    without any .pyc (what every cold start paid before the layer carried bytecode), medians."""
    entries = {"ApiFunction": "api_handler", "SipMediaAppFunction": "sma_handler", "InboundFunction": "inbound_handler"}
    with tempfile.TemporaryDirectory() as scratch:
        bare = Path(scratch) / "build"
        shutil.copytree(build, bare, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shipped_env, bare_env = artifact_env(build, aws_secrets=True), artifact_env(bare, aws_secrets=True)
        samples: dict[str, dict[str, list[float]]] = {name: {"shipped": [], "bare": []} for name in entries}
        for _ in range(repeats):
            for name, module in entries.items():
                samples[name]["shipped"].append(_cpu(module, shipped_env) * 1000)
                samples[name]["bare"].append(_cpu(module, bare_env) * 1000)
    results = {}
    for name, got in samples.items():
        shipped, without = statistics.median(got["shipped"]), statistics.median(got["bare"])
        results[name] = {"shipped_cpu_ms": shipped, "without_bytecode_cpu_ms": without, "ratio": shipped / without}
    return results


_FIRST_ANSWER = """
import json, time
from types import SimpleNamespace
_t0 = time.perf_counter()
{body}
print("ELAPSED", time.perf_counter() - _t0)
"""
_ANSWER_FLOOR = """
import boto3, httpx
ddb = boto3.client("dynamodb")
http = httpx.Client()
call_id = http.post({url!r}, json={{"agent_id": "bench-agent"}}, headers={{"Authorization": {key!r}}}).json()["call_id"]
ddb.put_item(TableName={table!r}, Item={{"call_id": {{"S": call_id}}, "kind": {{"S": "floor"}}}})
"""
_ANSWER_INBOUND = """
import inbound_handler
ctx = SimpleNamespace(function_name="InboundFunction", memory_limit_in_mb=512, aws_request_id="bench",
    invoked_function_arn="arn:aws:lambda:us-west-2:123456789012:function:InboundFunction",
    get_remaining_time_in_millis=lambda: 12000)
answer = inbound_handler.lambda_handler(json.loads({event!r}), ctx)
assert answer["statusCode"] == 200 and "<Dial" in answer["body"], answer
"""


def first_answer(
    build: Path, env: Mapping[str, str], events: list[str], floor: Mapping[str, str], repeats: int = 7
) -> dict[str, float]:
    """A carrier's first call to a cold InboundFunction: import, then one signed Twilio webhook answered
    (Millis and DynamoDB called), against a fresh process that imports boto3 and httpx and makes the same two
    network calls. ``events`` holds one fresh signed event per repeat; ``floor`` the Millis URL and key, table."""
    paths = artifact_env(build, env)
    inbound, base = [], []
    for i in range(repeats):
        base.append(_once_code(_FIRST_ANSWER.format(body=_ANSWER_FLOOR.format(**floor)), paths))
        inbound.append(_once_code(_FIRST_ANSWER.format(body=_ANSWER_INBOUND.format(event=events[i])), paths))
    floor_ms, inbound_ms = statistics.median(base) * 1000, statistics.median(inbound) * 1000
    return {"floor_ms": floor_ms, "inbound_ms": inbound_ms, "ratio": inbound_ms / floor_ms}


def _once_code(code: str, env: Mapping[str, str]) -> float:
    return snippet(code, env, "ELAPSED")

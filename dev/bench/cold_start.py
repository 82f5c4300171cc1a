"""Cold start: a fresh interpreter that imports a function's entry module (configuration read, clients
built), against the floor measured in the same run: a fresh interpreter that imports boto3 and httpx and
builds one DynamoDB client and one httpx.Client. Timed inside the process (interpreter boot excluded, it is
the same for both), repeated, median reported; ``-X importtime`` gives the breakdown by top-level package."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from dev.bench import function_config
from dev.template import ROOT


def artifact_paths(build: Path) -> list[Path]:
    """What Lambda puts on sys.path: the layer's python/ and the functions' code, as `sam build` made them."""
    return [build / "MillisSipLayer" / "python", build / "ApiFunction", build / "SipMediaAppFunction"]


FLOOR = """
import boto3, httpx
client = boto3.client("dynamodb")
http = httpx.Client()
"""
TARGETS = {
    "floor": FLOOR,
    "ApiFunction": "import api_handler\n",
    "SipMediaAppFunction": "import sma_handler\n",
}
_TIMED = """
import time
_t0 = time.perf_counter()
{body}
print("ELAPSED", time.perf_counter() - _t0)
"""


def artifact_env(build: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The functions' configuration pointed nowhere (nothing is called at import), the build on the path."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(str(p) for p in artifact_paths(build)),
        **function_config(),
        **(extra or {}),
    }


def _once(code: str, env: Mapping[str, str]) -> float:
    result = subprocess.run(
        [sys.executable, "-S", "-B", "-c", _TIMED.format(body=code)],  # -S: only the build on the path
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return float(result.stdout.split("ELAPSED")[-1])


def measure(build: Path, repeats: int = 11, env_extra: Mapping[str, str] | None = None) -> dict[str, dict[str, float]]:
    """Median and spread of each target's init time, interleaved so that machine noise hits all alike."""
    env = artifact_env(build, env_extra)
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
    env = artifact_env(build, env_extra)
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

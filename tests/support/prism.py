"""Prism (npm @stoplight/prism-cli, installed by ``make install`` into ``.cache/prism``) serving a carrier's own
OpenAPI description on loopback: a request the stack sends that the description does not allow is answered
422 with Prism's ``validation`` list, so a test fails naming the field. Prism also answers the description's
own example for a valid request, which is what the stack then reads."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from dev.dynamodb_local import free_port

ROOT = Path(__file__).resolve().parents[2]
PRISM = ROOT / ".cache" / "prism" / "node_modules" / ".bin" / "prism"
SPECS = ROOT / "tests" / "fixtures" / "openapi"


@contextmanager
def prism_mock(spec: Path, *, startup_seconds: float = 60.0) -> Iterator[str]:
    """Serve ``spec`` with ``prism mock --errors`` on a free loopback port; yields its base URL."""
    if not PRISM.exists():
        raise RuntimeError(f"Prism is not installed at {PRISM}: run make install")
    port = free_port()
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(PRISM), "mock", str(spec), "--host", "127.0.0.1", "--port", str(port), "--errors"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Prism exited ({process.returncode}) serving {spec.name}")
            try:
                httpx.get(base + "/", timeout=0.5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Prism did not start serving {spec.name} in {startup_seconds:.0f} s") from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()

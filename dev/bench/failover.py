"""Failover cost: time to a usable registration (POST /calls, in-process) when the nearest Millis region
refuses connections or black-holes requests, against the nearest-region case measured in the same run."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType

from dev.bench import load_event
from dev.bench.hot_path import quiet
from dev.lambda_context import LocalContext


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port nobody listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    yield port


@contextmanager
def black_hole() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        yield int(hole.getsockname()[1])


def time_registrations(module: ModuleType, n: int) -> list[float]:
    event = load_event("api-create-call.json")
    event["body"] = '{"agent_id": "bench-agent"}'
    samples = []
    with quiet():
        for _ in range(n):
            started = time.perf_counter()
            response = module.lambda_handler(event, LocalContext())
            samples.append(time.perf_counter() - started)
            if response["statusCode"] != 201:
                raise RuntimeError(response["body"])
    return samples


def measure(load: Callable[..., ModuleType], read_timeout: float, n: int = 30) -> dict[str, float]:
    """``load(**env)`` returns a fresh ApiFunction module with that environment."""
    nearest = statistics.median(time_registrations(load(), n)) * 1000
    with refusing_port() as port:
        refused = (
            statistics.median(time_registrations(load(MILLIS_US_WEST_URL=f"http://127.0.0.1:{port}/us-west"), n)) * 1000
        )
    with black_hole() as port:
        module = load(MILLIS_US_WEST_URL=f"http://127.0.0.1:{port}/us-west", MILLIS_READ_TIMEOUT=str(read_timeout))
        holed = statistics.median(time_registrations(module, max(3, n // 6))) * 1000
    return {
        "nearest_ms": nearest,
        "refused_ms": refused,
        "refused_extra_ms": refused - nearest,
        "black_hole_ms": holed,
        "black_hole_extra_ms": holed - nearest,
        "read_timeout_ms": read_timeout * 1000,
    }

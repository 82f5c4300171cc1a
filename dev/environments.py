"""Lambda execution environments for the local API server's pool and the load test: one process per
environment, which imports the function once and runs one invocation at a time, as Lambda does.

Threads in one process would not do: Powertools' event handler keeps the current event on the router
class (``BaseRouter.current_event``), which Lambda never shares between concurrent invocations but threads
in one interpreter would.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any


def _serve(module: str, env: Mapping[str, str], conn: Connection) -> None:
    os.environ.update(env)
    from dev.functions import load_function

    function = load_function(module)
    conn.send("ready")
    while True:
        message = conn.recv()
        if message is None:
            return
        event, context = message
        try:
            conn.send(function.lambda_handler(event, context))
        except Exception as exc:  # noqa: BLE001 - reported to the caller, as Lambda reports a function error
            conn.send(RuntimeError(f"{type(exc).__name__}: {exc}"))


class ExecutionEnvironment:
    def __init__(self, module: str, env: Mapping[str, str]) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter, like a cold start
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(module, dict(env), child), daemon=True)
        self._process.start()

    def wait_ready(self, timeout: float = 60.0) -> None:
        if not self._conn.poll(timeout) or self._conn.recv() != "ready":
            raise RuntimeError("the execution environment did not start")

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self._conn.send((event, context))
        result = self._conn.recv()
        if isinstance(result, Exception):
            raise result
        answer: dict[str, Any] = result
        return answer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()


def start_environments(module: str, count: int, env: Mapping[str, str]) -> list[ExecutionEnvironment]:
    environments = [ExecutionEnvironment(module, env) for _ in range(count)]
    for environment in environments:
        environment.wait_ready()
    return environments

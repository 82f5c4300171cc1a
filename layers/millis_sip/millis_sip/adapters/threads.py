"""``Parallel`` on threads: independent requests of one invocation (the phone path's ownership write and its
reads) go out together, so the caller waits one round trip instead of several. botocore clients are safe to
share between threads."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from millis_sip.core.ports import in_sequence


class ThreadedParallel:
    """The first call runs on the calling thread, the others on a small pool made once per execution
    environment (its threads start on first use, not at import)."""

    def __init__(self, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="parallel")

    def __call__(self, *calls: Callable[[], Any]) -> list[Any]:
        if len(calls) < 2:
            return in_sequence(*calls)
        futures: list[Future[Any]] = [self._pool.submit(call) for call in calls[1:]]
        results = in_sequence(calls[0])
        for future in futures:
            error = future.exception()
            results.append(error if error is not None else future.result())
        return results


parallel = ThreadedParallel()

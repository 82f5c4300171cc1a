"""``Parallel`` on threads: independent requests of one invocation (the phone path's ownership write and its
reads) go out together, so the caller waits one round trip instead of several, and each request can be given a
budget the caller does not wait beyond (botocore's own timeouts count per attempt, not per call). botocore
clients are safe to share between threads."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Any

from millis_sip.core.ports import in_sequence


class ThreadedParallel:
    """Without a timeout the first call runs on the calling thread and the others on a small pool made once
    per execution environment (its threads start on first use, not at import); with one, every call runs on
    the pool and the caller waits at most that long. Calls that outlive their budget keep a worker until they
    end (botocore's timeouts end them), so the pool has room for a few."""

    def __init__(self, workers: int = 8) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="parallel")

    def __call__(self, *calls: Callable[[], Any], timeout: float | None = None) -> list[Any]:
        if timeout is None:
            if len(calls) < 2:
                return in_sequence(*calls)
            futures: list[Future[Any]] = [self._pool.submit(call) for call in calls[1:]]
            results = in_sequence(calls[0])
            for future in futures:
                error = future.exception()
                results.append(error if error is not None else future.result())
            return results
        futures = [self._pool.submit(call) for call in calls]
        wait_for(futures, timeout=max(timeout, 0.0))
        return [_outcome(future) for future in futures]


def _outcome(future: Future[Any]) -> Any:
    if not future.done():
        future.cancel()  # not started yet: it never will be; running: it ends on its own
        return TimeoutError("no answer within the budget")
    error = future.exception()
    return error if error is not None else future.result()


parallel = ThreadedParallel()

"""``Parallel`` on threads: independent requests of one invocation (the phone path's ownership write and its
reads) go out together, so the caller waits one round trip instead of several, and each request can be given a
budget the caller does not wait beyond (botocore's own timeouts count per attempt, not per call). botocore
clients are safe to share between threads.

The workers take their jobs from a ``queue.SimpleQueue`` and hand each result back through another: a
hand-off costs about a third of what ``concurrent.futures`` spends on it (its futures wait on Python-level
conditions), and a phone call makes up to four of them."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from millis_sip.core.ports import in_sequence


class _Job:
    __slots__ = ("call", "cancelled", "index", "out")

    def __init__(self, call: Callable[[], Any], index: int, out: queue.SimpleQueue[tuple[int, Any]]) -> None:
        self.call = call
        self.index = index
        self.out = out
        self.cancelled = False  # set when the caller stopped waiting before a worker took the job


class ThreadedParallel:
    """Without a timeout the first call runs on the calling thread and the others on a small pool made once
    per execution environment (its threads start on first use, not at import); with one, every call runs on
    the pool and the caller waits at most that long. Calls that outlive their budget keep a worker until they
    end (botocore's timeouts end them), so the pool has room for a few."""

    def __init__(self, workers: int = 8) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._max = workers
        self._threads = 0
        self._idle = 0  # workers waiting for a job and not yet promised to one
        self._lock = threading.Lock()

    def __call__(self, *calls: Callable[[], Any], timeout: float | None = None) -> list[Any]:
        if timeout is None and len(calls) < 2:
            return in_sequence(*calls)
        out: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        inline = calls[0] if timeout is None else None
        jobs = [_Job(call, i, out) for i, call in enumerate(calls) if not (inline is not None and i == 0)]
        for job in jobs:
            self._submit(job)
        results: list[Any] = [None] * len(calls)
        if inline is not None:
            results[0] = in_sequence(inline)[0]
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        waiting = {job.index: job for job in jobs}
        while waiting:
            try:
                if deadline is None:
                    index, value = out.get()
                else:
                    index, value = out.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                for job in waiting.values():
                    job.cancelled = True  # not started yet: it never will be; running: it ends on its own
                    results[job.index] = TimeoutError("no answer within the budget")
                break
            waiting.pop(index, None)
            results[index] = value
        return results

    def _submit(self, job: _Job) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                start = False
            else:
                start = self._threads < self._max  # else the job waits for the first worker to come free
                self._threads += start
        if start:
            threading.Thread(target=self._work, name=f"parallel-{self._threads}", daemon=True).start()
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if not job.cancelled:
                try:
                    value: Any = job.call()
                except BaseException as exc:  # noqa: BLE001 - handed back to the caller as the call's result
                    value = exc
                job.out.put((job.index, value))
            with self._lock:
                self._idle += 1


parallel = ThreadedParallel()

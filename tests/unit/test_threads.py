"""``Parallel`` on threads: results in order, exceptions handed back, and with a timeout the caller waits no
longer than the budget for a call that hangs (the budget the phone path gives each DynamoDB round trip)."""

from __future__ import annotations

import threading
import time

from millis_sip.adapters.threads import ThreadedParallel


def test_results_come_back_in_order_with_exceptions_as_values() -> None:
    parallel = ThreadedParallel()

    def boom() -> int:
        raise ValueError("boom")

    for timeout in (None, 5.0):
        first, second, third = parallel(lambda: 1, boom, lambda: "three", timeout=timeout)
        assert (first, third) == (1, "three")
        assert isinstance(second, ValueError)


def test_a_call_that_hangs_is_a_timeout_error_and_the_others_still_answer() -> None:
    parallel = ThreadedParallel()
    release = threading.Event()
    started = time.monotonic()
    hung, fine = parallel(lambda: release.wait(30), lambda: "fine", timeout=0.2)
    waited = time.monotonic() - started
    release.set()
    assert isinstance(hung, TimeoutError) and fine == "fine"
    assert waited < 5  # the budget, not the hung call's 30 s (a generous bound: this is not a benchmark)


def test_calls_that_outlive_their_budget_do_not_starve_the_next_ones() -> None:
    parallel = ThreadedParallel(workers=8)
    release = threading.Event()
    for _ in range(3):  # three hung batches of two calls each keep six workers busy
        parallel(lambda: release.wait(30), lambda: release.wait(30), timeout=0.05)
    assert parallel(lambda: "still served", timeout=5.0) == ["still served"]
    release.set()


def test_idle_workers_are_reused_and_the_pool_never_grows_past_its_size() -> None:
    parallel = ThreadedParallel(workers=3)
    for _ in range(50):
        assert parallel(lambda: 1, lambda: 2, timeout=5.0) == [1, 2]
    assert parallel._threads == 2  # two at a time never needed a third
    release = threading.Event()
    hung = parallel(*(lambda: release.wait(30) for _ in range(5)), timeout=0.05)
    assert all(isinstance(r, TimeoutError) for r in hung) and parallel._threads == 3
    release.set()
    assert parallel(lambda: "served", timeout=5.0) == ["served"]  # the jobs never started are skipped

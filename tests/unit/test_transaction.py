"""The call transaction on its own: owned once, waited for, replayed, taken over when its lease lapses, refused
for a conflicting call, committed only while owned, each round trip within the store's budget, and a store that
is down (or does not answer in time) lets the call go on."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest

from millis_sip.core.calls import CallRecord, CallStatus
from millis_sip.core.errors import LeaseLost, StoreUnavailable
from millis_sip.core.ports import STORE_BUDGET_SECONDS, TransactionState, in_sequence
from millis_sip.core.sip import parse_sip_uri
from millis_sip.core.transaction import POLL_SECONDS, CallTransaction, Opened, PinPrompt, Transactions
from tests.support.clock import FakeClock
from tests.support.fakes import MemoryStore

CALLER, DIALED = "+14155550100", "+15055550123"


def record(call_id: str = "m-1") -> CallRecord:
    now = FakeClock().now()
    return CallRecord(
        call_id=call_id,
        sip_uri=parse_sip_uri(f"sip:{call_id}@sip.example"),
        millis_region="us-west",
        status=CallStatus.CLAIMED,
        created_at=now,
        expires_at=now + timedelta(hours=1),
        source="twilio",
        transaction_id="CA1",
    )


def opened(
    transactions: Transactions, clock: FakeClock, *, seconds: float = 5, caller: str = CALLER, resume: bool = False
) -> CallTransaction:
    tx, _ = transactions.open(
        "twilio", "CA1", 1, caller=caller, dialed=DIALED, deadline=clock.monotonic() + seconds, resume=resume
    )
    return tx


@dataclass
class CountedFailures:
    """Metrics that keep the CallFailures reasons (the transaction counts only those)."""

    failures: list[str] = field(default_factory=list)

    def registered(self, region: str, *, failed_over: bool, latency_ms: float) -> None: ...

    def inbound(self, outcome: str) -> None: ...

    def inbound_failure(self, reason: str) -> None:
        self.failures.append(reason)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def transactions(store: MemoryStore, clock: FakeClock) -> Transactions:
    return Transactions(store, clock, timedelta(hours=1))


def test_the_first_asker_owns_the_call_and_its_reads_run_beside_it(
    transactions: Transactions, clock: FakeClock
) -> None:
    tx, reads = transactions.open(
        "twilio", "CA1", 1, caller=CALLER, dialed=DIALED, deadline=clock.monotonic() + 5, reads=(lambda: "route",)
    )
    assert tx.opened is Opened.OWNED and tx.lock is not None
    assert reads == ["route"]


def test_a_second_asker_waits_for_the_owner_then_replays_its_answer(
    transactions: Transactions, store: MemoryStore, clock: FakeClock
) -> None:
    first = opened(transactions, clock)
    real_sleep = clock.sleep

    def owner_finishes(seconds: float) -> None:  # while the second waits, the owner commits
        real_sleep(seconds)
        if store.marks[first.key].state is TransactionState.PENDING:
            first.commit(record(), claim=False)

    clock.sleep = owner_finishes  # type: ignore[method-assign]
    second = opened(transactions, clock)
    assert second.opened is Opened.ANSWERED
    assert clock.slept == pytest.approx(POLL_SECONDS)
    answered = second.answered_record()
    assert answered is not None and answered.call_id == "m-1"


def test_a_second_asker_whose_deadline_is_near_finds_the_call_in_progress(
    transactions: Transactions, clock: FakeClock
) -> None:
    opened(transactions, clock, seconds=5)
    assert opened(transactions, clock, seconds=0.55).opened is Opened.IN_PROGRESS


def test_a_lapsed_lease_is_taken_over_and_the_old_owner_cannot_commit(
    transactions: Transactions, clock: FakeClock
) -> None:
    stale = opened(transactions, clock, seconds=1)
    clock.advance(2)
    fresh = opened(transactions, clock, seconds=5)
    assert fresh.opened is Opened.OWNED
    with pytest.raises(LeaseLost):
        stale.commit(record("m-stale"), claim=False)
    fresh.commit(record("m-fresh"), claim=False)
    assert opened(transactions, clock).answered_record() is not None


def test_the_same_call_id_for_other_numbers_is_a_conflict(transactions: Transactions, clock: FakeClock) -> None:
    opened(transactions, clock)
    assert opened(transactions, clock, caller="+14155550199").opened is Opened.CONFLICT


def test_a_failed_call_is_refused_again_with_its_reason_and_a_released_one_starts_afresh(
    transactions: Transactions, clock: FakeClock, store: MemoryStore
) -> None:
    tx = opened(transactions, clock)
    tx.fail("no_agent")
    again = opened(transactions, clock)
    assert (again.opened, again.reason) == (Opened.REFUSED, "no_agent")
    other, _ = transactions.open("twilio", "CA2", 1, caller=CALLER, dialed=DIALED, deadline=clock.monotonic() + 5)
    other.release()
    afresh, _ = transactions.open("twilio", "CA2", 1, caller=CALLER, dialed=DIALED, deadline=clock.monotonic() + 5)
    assert afresh.opened is Opened.OWNED


def test_a_pin_prompt_is_resumed_only_when_the_caller_answers(transactions: Transactions, clock: FakeClock) -> None:
    tx = opened(transactions, clock)
    assert tx.ask_pin("m-7", tries=1)
    assert opened(transactions, clock).opened is Opened.CHALLENGED
    resumed = opened(transactions, clock, resume=True)
    assert resumed.opened is Opened.OWNED and resumed.challenge == PinPrompt("m-7", 1)


def test_a_store_that_is_down_lets_the_call_go_on_without_a_transaction(
    transactions: Transactions, store: MemoryStore, clock: FakeClock
) -> None:
    store.fail_with = StoreUnavailable("down")
    tx = opened(transactions, clock)
    assert (tx.opened, tx.lock, tx.challenge) == (Opened.STORE_DOWN, None, None)
    tx.fail("no_agent")  # nothing to record, nothing raised
    tx.release()
    assert not tx.ask_pin("m-1", tries=0)
    tx.commit_new(record())  # logged, not raised: the record rides with the phone system


def test_commit_new_with_the_store_down_writes_nothing(
    transactions: Transactions, store: MemoryStore, clock: FakeClock
) -> None:
    store.fail_with = StoreUnavailable("down")
    tx = opened(transactions, clock)
    store.fail_with = None  # back, but this call already went on without its transaction
    before = store.operations
    tx.commit_new(record())
    assert store.operations == before and store.items == {}


def test_a_store_that_fails_while_a_second_asker_waits_counts_as_down(
    transactions: Transactions, store: MemoryStore, clock: FakeClock
) -> None:
    opened(transactions, clock)
    real_sleep = clock.sleep

    def store_goes_down(seconds: float) -> None:
        real_sleep(seconds)
        store.fail_with = StoreUnavailable("down")

    clock.sleep = store_goes_down  # type: ignore[method-assign]
    waiting = opened(transactions, clock)
    assert (waiting.opened, waiting.lock) == (Opened.STORE_DOWN, None)


def test_an_ownership_write_that_does_not_answer_in_time_counts_as_down_and_the_reads_still_count(
    store: MemoryStore, clock: FakeClock
) -> None:
    budgets: list[float | None] = []

    def begin_hangs(*calls: Any, timeout: float | None = None) -> list[Any]:
        budgets.append(timeout)
        return [TimeoutError(), *in_sequence(*calls[1:])]

    transactions = Transactions(store, clock, timedelta(hours=1), parallel=begin_hangs)
    tx, reads = transactions.open(
        "twilio", "CA1", 1, caller=CALLER, dialed=DIALED, deadline=clock.monotonic() + 5, reads=(lambda: "route",)
    )
    assert (tx.opened, reads, budgets) == (Opened.STORE_DOWN, ["route"], [STORE_BUDGET_SECONDS])


def test_a_read_that_fails_comes_back_as_its_exception_beside_an_owned_call(
    transactions: Transactions, clock: FakeClock
) -> None:
    def failing() -> None:
        raise StoreUnavailable("no read")

    tx, [read] = transactions.open(
        "twilio", "CA1", 1, caller=CALLER, dialed=DIALED, deadline=clock.monotonic() + 5, reads=(failing,)
    )
    assert tx.opened is Opened.OWNED and isinstance(read, StoreUnavailable)


def test_a_bug_in_the_ownership_write_is_raised_not_taken_for_the_store_down(
    transactions: Transactions, store: MemoryStore, clock: FakeClock
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("bug")

    store.begin_transaction = broken  # type: ignore[method-assign]
    with pytest.raises(KeyError):
        opened(transactions, clock)


def test_a_lost_lease_on_commit_new_counts_lease_lost_and_the_retrys_record_stands(
    store: MemoryStore, clock: FakeClock
) -> None:
    metrics = CountedFailures()
    transactions = Transactions(store, clock, timedelta(hours=1), metrics)
    stale = opened(transactions, clock, seconds=1)
    clock.advance(2)
    opened(transactions, clock).commit_new(record("m-fresh"))
    stale.commit_new(record("m-stale"))  # logged and counted, not raised
    assert metrics.failures == ["lease_lost"]
    assert set(store.items) == {"m-fresh"} and store.marks[stale.key].millis_call_id == "m-fresh"


def test_a_claim_another_call_won_commits_nothing(
    transactions: Transactions, store: MemoryStore, clock: FakeClock
) -> None:
    pending = replace(record("crm-1"), status=CallStatus.REGISTERED, transaction_id=None, lookup_key=CALLER)
    store.items["crm-1"] = pending
    other, _ = transactions.open("twilio", "CA2", 1, caller=CALLER, dialed=DIALED, deadline=clock.monotonic() + 5)
    assert other.commit(replace(pending, status=CallStatus.CLAIMED, transaction_id="CA2"), claim=True)
    tx = opened(transactions, clock)
    assert not tx.commit(replace(pending, status=CallStatus.CLAIMED, transaction_id="CA1"), claim=True)
    assert store.items["crm-1"].transaction_id == "CA2"
    assert store.marks[tx.key].state is TransactionState.PENDING  # still this invocation's to finish


def test_failing_with_an_unused_call_stores_it_and_a_retry_gets_the_same_refusal(
    transactions: Transactions, store: MemoryStore, clock: FakeClock
) -> None:
    unused = replace(record(), status=CallStatus.FAILED, reason="sip_host_mismatch")
    opened(transactions, clock).fail("sip_host_mismatch", record=unused)
    assert store.items["m-1"].status is CallStatus.FAILED
    again = opened(transactions, clock)
    assert (again.opened, again.reason) == (Opened.REFUSED, "sip_host_mismatch")


def test_every_round_trip_after_opening_goes_within_the_store_budget(store: MemoryStore, clock: FakeClock) -> None:
    budgets: list[float | None] = []

    def recording(*calls: Any, timeout: float | None = None) -> list[Any]:
        budgets.append(timeout)
        return in_sequence(*calls)

    transactions = Transactions(store, clock, timedelta(hours=1), parallel=recording)
    tx = opened(transactions, clock, seconds=0.4)  # the deadline nearer than the budget: the budget shrinks
    assert tx.ask_pin("m-7", tries=0)
    tx.fail("no_agent")
    assert budgets == [pytest.approx(0.4)] * 3

"""The call transaction on its own: owned once, waited for, replayed, taken over when its lease lapses, refused
for a conflicting call, committed only while owned, and a store that is down lets the call go on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from millis_sip.core.calls import CallRecord, CallStatus
from millis_sip.core.errors import LeaseLost, StoreUnavailable
from millis_sip.core.sip import parse_sip_uri
from millis_sip.core.transaction import POLL_SECONDS, CallTransaction, Opened, Transactions
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
        if first.lock is not None and store.markers[first.key].mark.state.value == "pending":
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
    assert resumed.opened is Opened.OWNED and resumed.challenge == ("m-7", 1)


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

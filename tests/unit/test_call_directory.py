"""CallDirectory's listing (GET /calls) and cancel of a registration (DELETE /calls/{call_id}), over the fake."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from millis_sip.core.calls import MOVES, CallRecord, CallStatus, Direction
from millis_sip.core.errors import CallNotCancelable, CallNotFound, InvalidRequest
from millis_sip.core.lookup import LIST_DEFAULT_WINDOW, LIST_MAX_WINDOW, CallDirectory, ListCalls
from millis_sip.core.ports import CallQuery
from millis_sip.core.sip import parse_sip_uri
from tests.support.clock import FakeClock
from tests.support.fakes import MemoryStore

T0 = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


def call(call_id: str, *, minutes_ago: float = 1, **fields: Any) -> CallRecord:
    created = T0 - timedelta(minutes=minutes_ago)
    values: dict[str, Any] = {
        "call_id": call_id,
        "sip_uri": parse_sip_uri(f"sip:{call_id}@sip.example"),
        "millis_region": "us-west",
        "status": CallStatus.REGISTERED,
        "created_at": created,
        "expires_at": T0 + timedelta(hours=1),
        "lookup_key": "+14155550100",
    }
    values.update(fields)
    return CallRecord(**values)


class RecordingStore(MemoryStore):
    """The fake, keeping the queries it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[CallQuery] = []

    def list_calls(self, query: CallQuery) -> Any:
        self.queries.append(query)
        return super().list_calls(query)


def directory(*records: CallRecord, store: MemoryStore | None = None) -> tuple[CallDirectory, MemoryStore]:
    store = store if store is not None else MemoryStore()
    for record in records:
        store.put_new(record)
    return CallDirectory(store, clock=FakeClock(T0), ttl_seconds=3600), store


# --- listing ----------------------------------------------------------------------------------------------------


def test_the_default_window_is_the_last_day_and_the_answer_newest_first() -> None:
    store = RecordingStore()
    calls, _ = directory(
        call("a", minutes_ago=30), call("b", minutes_ago=10), call("old", minutes_ago=25 * 60), store=store
    )
    page = calls.list(ListCalls(), max_limit=100)
    assert [r.call_id for r in page.calls] == ["b", "a"]
    assert page.next is None
    [query] = store.queries
    assert (query.until, query.since, query.now) == (T0, T0 - LIST_DEFAULT_WINDOW, T0)


def test_an_expired_registration_lists_as_expired_and_filters_by_it() -> None:
    lapsed = call("lapsed", minutes_ago=90, expires_at=T0 - timedelta(minutes=1))
    calls, _ = directory(lapsed, call("waiting"))
    assert [(r.call_id, r.status) for r in calls.list(ListCalls(), max_limit=100).calls] == [
        ("waiting", CallStatus.REGISTERED),
        ("lapsed", CallStatus.EXPIRED),
    ]
    assert [r.call_id for r in calls.list(ListCalls(status=CallStatus.EXPIRED), max_limit=100).calls] == ["lapsed"]
    assert [r.call_id for r in calls.list(ListCalls(status=CallStatus.REGISTERED), max_limit=100).calls] == ["waiting"]


def test_filters_combine() -> None:
    out = call(
        "out",
        minutes_ago=3,
        direction=Direction.OUTBOUND,
        status=CallStatus.RINGING,
        carrier="twilio",
        agent_id="sales",
        caller_number="+15055550100",
        dialed_number="+14155550123",
        lookup_key=None,
    )
    inbound = call(
        "in", minutes_ago=2, status=CallStatus.CLAIMED, carrier="telnyx", agent_id="sales", transaction_id="t"
    )
    chime = call("chime", minutes_ago=1, source="chime", agent_id="support", lookup_key="+14155550199")
    calls, _ = directory(out, inbound, chime)

    def ids(**filters: Any) -> list[str]:
        return [r.call_id for r in calls.list(ListCalls(**filters), max_limit=100).calls]

    assert ids(direction=Direction.OUTBOUND) == ["out"]
    assert ids(direction=Direction.INBOUND) == ["chime", "in"]
    assert ids(carrier="twilio") == ["out"]
    assert ids(carrier="chime") == ["chime"]  # the phone system that carried an inbound call
    assert ids(agent_id="sales") == ["in", "out"]
    assert ids(agent_id="sales", status=CallStatus.CLAIMED) == ["in"]
    assert ids(number="+14155550123") == ["out"]  # dialed
    assert ids(number="+15055550100") == ["out"]  # caller
    assert ids(number="+14155550199") == ["chime"]  # a registration's lookup_key
    assert ids(number="+14155550100") == ["in"]


def test_pages_follow_the_cursor_and_keep_the_window() -> None:
    calls, store = directory(*(call(f"c{i}", minutes_ago=i + 1) for i in range(5)))
    first = calls.list(ListCalls(limit=2), max_limit=100)
    assert [r.call_id for r in first.calls] == ["c0", "c1"]
    # Stored after the first page, newer than its position: the later pages (which go on backwards) do not show it.
    store.put_new(call("newer", minutes_ago=0.5))
    second = calls.list(ListCalls(limit=2, after=first.next), max_limit=100)
    third = calls.list(ListCalls(limit=2, after=second.next), max_limit=100)
    assert [r.call_id for r in second.calls] == ["c2", "c3"]
    assert ([r.call_id for r in third.calls], third.next) == (["c4"], None)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (ListCalls(limit=0), "limit"),
        (ListCalls(limit=101), "limit"),
        (ListCalls(since=T0, until=T0), "before until"),
        (ListCalls(since=T0 - LIST_MAX_WINDOW - timedelta(seconds=1), until=T0), "7 days"),
        (ListCalls(after="not-a-cursor"), "cursor"),
    ],
)
def test_a_bad_listing_is_refused(request_: ListCalls, message: str) -> None:
    calls, _ = directory()
    with pytest.raises(InvalidRequest, match=message):
        calls.list(request_, max_limit=100)


# --- cancel -----------------------------------------------------------------------------------------------------


def test_registered_may_move_to_canceled() -> None:
    assert CallStatus.REGISTERED in MOVES[CallStatus.CANCELED]


def test_a_waiting_registration_is_canceled_and_no_lookup_finds_it() -> None:
    calls, store = directory(call("r"))
    canceled = calls.cancel("r")
    assert (canceled.status, canceled.reason, canceled.ended_at) == (CallStatus.CANCELED, "canceled_by_api", T0)
    assert canceled.expires_at == T0 + timedelta(hours=1)  # kept CallTtlSeconds from the cancel
    assert store.get("r") == canceled
    with pytest.raises(CallNotFound):
        calls.lookup("+14155550100")
    assert store.pending_for("+14155550100", T0) == []
    assert calls.cancel("r") == canceled  # again: the same answer, nothing written


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"status": CallStatus.CLAIMED, "transaction_id": "t"}, "claimed"),
        ({"status": CallStatus.BRIDGED, "transaction_id": "t"}, "bridged"),
        ({"status": CallStatus.ENDED, "transaction_id": "t"}, "ended"),
        ({"expires_at": T0 - timedelta(seconds=1)}, "expired"),
        ({"status": CallStatus.CANCELED, "direction": Direction.OUTBOUND}, "canceled"),
    ],
)
def test_anything_but_a_waiting_registration_is_not_cancelable(fields: dict[str, Any], status: str) -> None:
    calls, store = directory(call("r", **fields))
    before = store.get("r")
    with pytest.raises(CallNotCancelable, match=f"is {status}"):
        calls.cancel("r")
    assert store.get("r") == before


def test_a_claim_that_wins_the_race_makes_the_cancel_a_409_naming_it() -> None:
    class ClaimedFirst(MemoryStore):
        def cancel_registration(self, snapshot: CallRecord, *, now: datetime) -> bool:
            stored = self.items[snapshot.call_id]
            self.items[snapshot.call_id] = replace(stored, status=CallStatus.CLAIMED, transaction_id="t")
            return super().cancel_registration(snapshot, now=now)

    calls, store = directory(call("r"), store=ClaimedFirst())
    with pytest.raises(CallNotCancelable, match="is claimed now"):
        calls.cancel("r")
    assert store.get("r").status is CallStatus.CLAIMED  # type: ignore[union-attr]


def test_an_unknown_call_is_not_found() -> None:
    calls, _ = directory()
    with pytest.raises(CallNotFound):
        calls.cancel("nobody")

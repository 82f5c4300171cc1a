"""One contract, two stores: the in-memory fake the unit tests use and the DynamoDB adapter against DynamoDB
Local (AWS's own engine) pass the same cases, so the fake cannot drift from what DynamoDB does."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dev.template import create_table
from millis_sip.adapters.dynamodb.store import (
    LOOKUP_INDEX,
    LOOKUP_MAX_PAGES,
    LOOKUP_PAGE_SIZE,
    DynamoCallStore,
    DynamoNumberRoutes,
)
from millis_sip.core.calls import CallerVerification, CallRecord, CallSource, CallStatus, Direction
from millis_sip.core.errors import CallAlreadyExists, LeaseLost
from millis_sip.core.numbers import NumberRoute
from millis_sip.core.ports import (
    InboundCallStore,
    MillisReport,
    NumberRoutes,
    OutboundStore,
    SessionOutcome,
    TransactionLock,
    TransactionState,
)
from millis_sip.core.sip import parse_sip_uri
from tests.support.fakes import MemoryNumberRoutes, MemoryStore
from tests.support.rig import STACK_KEYS, TABLE

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=123_000)
LATER = NOW + timedelta(hours=1)
ME = "this-invocation"  # the owner token of the invocation a test plays


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> Iterator[InboundCallStore]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        yield DynamoCallStore(request.getfixturevalue("dynamodb"), TABLE, keys=STACK_KEYS)


def unique(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def call(call_id: str | None = None, **fields: Any) -> CallRecord:
    values: dict[str, Any] = {
        "call_id": call_id or unique(),
        "sip_uri": parse_sip_uri("sip:call-x@sip.example"),
        "millis_region": "us-west",
        "status": CallStatus.REGISTERED,
        "created_at": NOW,
        "expires_at": LATER.replace(microsecond=0),
    }
    values.update(fields)
    return CallRecord(**values)


# --- put, get, lookups --------------------------------------------------------------------------------------


def test_a_stored_call_reads_back_field_for_field(store: InboundCallStore) -> None:
    record = call(
        lookup_key=unique("+1415"),
        agent_id="a",
        source=CallSource.CHIME,
        transaction_id="tx",
        caller_number="+14155550100",
        dialed_number="+15055550123",
        leg_b_call_id="b",
        bridged_at=NOW,
        ended_at=NOW,
        duration_seconds=7,
        reason="caller_hung_up",
        millis_call_status="user-ended",
        millis_duration_seconds=8,
        millis_session_id="s-1",
    )
    store.put_new(record)
    assert store.get(record.call_id) == record


def test_a_call_is_never_overwritten(store: InboundCallStore) -> None:
    first = call()
    store.put_new(first)
    with pytest.raises(CallAlreadyExists):
        store.put_new(replace(first, millis_region="eu-west"))
    assert store.get(first.call_id) == first


def test_an_unknown_call_and_a_marker_are_not_calls(store: InboundCallStore) -> None:
    key = unique("marker")
    store.begin_transaction(key, owner=ME, now=NOW, lease_seconds=1, expires_at=LATER)
    assert store.get(unique()) is None
    assert store.get(key) is None


def test_lookups_find_the_newest_unused_unexpired_registration(store: InboundCallStore) -> None:
    key = unique("+1")
    old = call(lookup_key=key, created_at=NOW - timedelta(seconds=30))
    new = call(lookup_key=key, created_at=NOW - timedelta(seconds=20))
    used = call(lookup_key=key, created_at=NOW - timedelta(seconds=10), status=CallStatus.CLAIMED, transaction_id="t")
    lapsed = call(lookup_key=key, created_at=NOW - timedelta(seconds=5), expires_at=NOW - timedelta(seconds=1))
    for record in (old, new, used, lapsed):
        store.put_new(record)
    assert store.latest_for(key, NOW) == new
    assert [r.call_id for r in store.pending_for(key, NOW)] == [new.call_id, old.call_id]
    assert store.latest_for(unique("+1"), NOW) is None


def test_pending_candidates_are_capped(store: InboundCallStore) -> None:
    key = unique("+1")
    for i in range(7):
        store.put_new(call(lookup_key=key, created_at=NOW - timedelta(seconds=i)))
    assert len(store.pending_for(key, NOW)) == 5


# --- Millis' session report ---------------------------------------------------------------------------------


def close(
    store: InboundCallStore,
    call_id: str,
    status: CallStatus = CallStatus.ENDED,
    *,
    credential_hash: str | None = None,
    report: MillisReport | None = None,
) -> SessionOutcome:
    report = report or MillisReport(call_status="user-ended", duration_seconds=42, session_id="s-9")
    return store.close_session(
        call_id,
        credential_hash=credential_hash,
        status=status,
        reason="millis_user-ended",
        now=NOW,
        expires_at=LATER.replace(microsecond=0),
        report=report,
    )


def test_a_report_closes_an_open_call(store: InboundCallStore) -> None:
    record = call()
    store.put_new(record)
    assert close(store, record.call_id) is SessionOutcome.CLOSED
    closed = store.get(record.call_id)
    assert closed is not None
    assert (closed.status, closed.reason, closed.ended_at) == (CallStatus.ENDED, "millis_user-ended", NOW)
    assert (closed.millis_call_status, closed.millis_duration_seconds, closed.millis_session_id) == (
        "user-ended",
        42,
        "s-9",
    )
    assert closed.duration_seconds == 42  # no phone leg timed it


def test_a_report_on_a_closed_call_only_annotates(store: InboundCallStore) -> None:
    ended_at = NOW - timedelta(seconds=5)
    record = call(status=CallStatus.ENDED, reason="caller_hung_up", ended_at=ended_at, duration_seconds=3)
    store.put_new(record)
    assert close(store, record.call_id, CallStatus.FAILED) is SessionOutcome.ANNOTATED
    annotated = store.get(record.call_id)
    assert annotated is not None
    assert (annotated.status, annotated.reason, annotated.ended_at) == (CallStatus.ENDED, "caller_hung_up", ended_at)
    assert (annotated.duration_seconds, annotated.millis_duration_seconds) == (3, 42)


def test_a_report_for_an_unknown_call_creates_nothing(store: InboundCallStore) -> None:
    call_id = unique()
    assert close(store, call_id) is SessionOutcome.UNKNOWN
    assert close(store, call_id, credential_hash="h") is SessionOutcome.UNKNOWN
    assert store.get(call_id) is None


def test_only_the_calls_own_credential_opens_it(store: InboundCallStore) -> None:
    record = call(webhook_hash="hash-of-this-calls-credential")
    store.put_new(record)
    assert close(store, record.call_id, credential_hash="hash-of-another-calls") is SessionOutcome.FOREIGN
    assert close(store, record.call_id) is SessionOutcome.FOREIGN  # the stack secret's way: not for this call
    assert store.get(record.call_id) == record  # nothing changed
    assert close(store, record.call_id, credential_hash=record.webhook_hash) is SessionOutcome.CLOSED


def test_a_call_registered_before_credentials_is_opened_only_the_old_way(store: InboundCallStore) -> None:
    record = call()  # no webhook_hash: registered before calls had credentials of their own
    store.put_new(record)
    assert close(store, record.call_id, credential_hash="any") is SessionOutcome.LEGACY
    assert store.get(record.call_id) == record
    assert close(store, record.call_id) is SessionOutcome.CLOSED


def test_the_first_report_of_a_session_stands(store: InboundCallStore) -> None:
    record = call(status=CallStatus.CLAIMED, transaction_id="t", webhook_hash="h")
    store.put_new(record)
    first = MillisReport(call_status="user-ended", duration_seconds=42, session_id="s-1")
    assert close(store, record.call_id, credential_hash="h", report=first) is SessionOutcome.CLOSED
    late = MillisReport(call_status="error", duration_seconds=999, session_id="s-2")
    assert close(store, record.call_id, CallStatus.FAILED, credential_hash="h", report=late) is (
        SessionOutcome.ANNOTATED
    )
    kept = store.get(record.call_id)
    assert kept is not None
    assert (kept.status, kept.reason) == (CallStatus.ENDED, "millis_user-ended")
    assert (kept.millis_call_status, kept.millis_duration_seconds, kept.millis_session_id) == ("user-ended", 42, "s-1")
    assert kept.duration_seconds == 42


# --- the router's markers and claims ------------------------------------------------------------------------


def test_a_marker_is_owned_once_until_its_lease_runs_out(store: InboundCallStore) -> None:
    key = unique("tx")
    assert (
        store.begin_transaction(key, owner=ME, now=NOW, lease_seconds=2, expires_at=LATER).state
        is TransactionState.ACQUIRED
    )
    assert (
        store.begin_transaction(key, owner=ME, now=NOW, lease_seconds=2, expires_at=LATER).state
        is TransactionState.PENDING
    )
    later = NOW + timedelta(seconds=3)
    assert (
        store.begin_transaction(key, owner=ME, now=later, lease_seconds=2, expires_at=LATER).state
        is TransactionState.ACQUIRED
    )


def test_a_late_owner_cannot_overwrite_the_retry_that_took_its_call_over(store: InboundCallStore) -> None:
    # The first invocation outlives its lease; a retry takes the call over and finishes it. The first one's
    # writes, late, change nothing: its record is not stored, and the marker keeps the retry's answer.
    key = unique("tx")
    first, retry = TransactionLock(key, "first-invocation"), TransactionLock(key, "retry")
    assert store.begin_transaction(key, owner=first.owner, now=NOW, lease_seconds=1, expires_at=LATER).state is (
        TransactionState.ACQUIRED
    )
    later = NOW + timedelta(seconds=2)
    taken = store.begin_transaction(key, owner=retry.owner, now=later, lease_seconds=1, expires_at=LATER)
    assert taken.state is TransactionState.ACQUIRED
    theirs = call(status=CallStatus.CLAIMED, transaction_id="t-retry")
    assert store.commit_inbound(theirs, lock=retry, claim=False, now=later)
    mine = call(status=CallStatus.CLAIMED, transaction_id="t-first")
    with pytest.raises(LeaseLost):
        store.commit_inbound(mine, lock=first, claim=False, now=later)
    store.fail_transaction(first, "millis_unavailable")
    store.release_transaction(first)
    store.challenge_transaction(first, candidate="crm-9", tries=1)
    mark = store.transaction_mark(key)
    assert mark is not None and (mark.state, mark.millis_call_id) == (TransactionState.DONE, theirs.call_id)
    assert store.get(mine.call_id) is None


def test_only_the_owner_releases_a_pending_marker(store: InboundCallStore) -> None:
    key = unique("tx")
    store.begin_transaction(key, owner=ME, now=NOW, lease_seconds=5, expires_at=LATER)
    store.release_transaction(TransactionLock(key, "someone-else"))
    assert store.begin_transaction(key, owner="next", now=NOW, lease_seconds=5, expires_at=LATER).state is (
        TransactionState.PENDING
    )
    store.release_transaction(TransactionLock(key, ME))
    assert store.begin_transaction(key, owner="next", now=NOW, lease_seconds=5, expires_at=LATER).state is (
        TransactionState.ACQUIRED
    )


def test_a_finished_marker_says_how_it_ended(store: InboundCallStore) -> None:
    done, failed = unique("tx"), unique("tx")
    record = call(status=CallStatus.CLAIMED, transaction_id="t1")
    store.begin_transaction(done, owner=ME, now=NOW, lease_seconds=1, expires_at=LATER)
    assert store.commit_inbound(record, lock=TransactionLock(done, ME), claim=False, now=NOW)
    store.begin_transaction(failed, owner=ME, now=NOW, lease_seconds=1, expires_at=LATER)
    store.fail_transaction(TransactionLock(failed, ME), "millis_unavailable")
    far = NOW + timedelta(hours=2)  # long after any lease: finished markers are never taken over
    again = store.begin_transaction(done, owner=ME, now=far, lease_seconds=1, expires_at=LATER)
    assert (again.state, again.millis_call_id) == (TransactionState.DONE, record.call_id)
    refused = store.begin_transaction(failed, owner=ME, now=far, lease_seconds=1, expires_at=LATER)
    assert (refused.state, refused.reason) == (TransactionState.FAILED, "millis_unavailable")
    assert store.get(record.call_id) == record


def test_a_registration_is_claimed_by_one_phone_call_only(store: InboundCallStore) -> None:
    registered = call(lookup_key=unique("+1"), agent_id="crm")
    store.put_new(registered)
    mine = replace(registered, status=CallStatus.CLAIMED, transaction_id="tx-1", caller_number="+14155550100")
    theirs = replace(mine, transaction_id="tx-2")
    assert store.commit_inbound(mine, lock=None, claim=True, now=NOW)
    assert not store.commit_inbound(theirs, lock=None, claim=True, now=NOW)
    assert store.commit_inbound(mine, lock=None, claim=True, now=NOW)  # the same call, retried
    claimed = store.get(registered.call_id)
    assert claimed is not None
    assert (claimed.status, claimed.transaction_id, claimed.caller_number, claimed.agent_id) == (
        CallStatus.CLAIMED,
        "tx-1",
        "+14155550100",
        "crm",
    )
    assert store.latest_for(registered.lookup_key or "", NOW) is None


def test_an_expired_or_missing_registration_cannot_be_claimed(store: InboundCallStore) -> None:
    lapsed = call(expires_at=NOW - timedelta(seconds=1))
    store.put_new(lapsed)
    claim = replace(lapsed, status=CallStatus.CLAIMED, transaction_id="tx")
    assert not store.commit_inbound(claim, lock=None, claim=True, now=NOW)
    assert not store.commit_inbound(replace(claim, call_id=unique()), lock=None, claim=True, now=NOW)


def test_a_new_phone_call_record_is_never_overwritten(store: InboundCallStore) -> None:
    record = call(status=CallStatus.CLAIMED, transaction_id="tx")
    store.put_new(record)
    with pytest.raises(CallAlreadyExists):
        store.commit_inbound(record, lock=None, claim=False, now=NOW)


# --- moves of the state machine -----------------------------------------------------------------------------


def test_a_move_writes_its_own_fields_and_keeps_the_rest(store: InboundCallStore) -> None:
    stored = call(status=CallStatus.CLAIMED, transaction_id="tx", agent_id="crm", lookup_key=unique("+1"))
    store.put_new(stored)
    snapshot = replace(stored, agent_id=None, lookup_key=None, bridged_at=NOW, leg_b_call_id="leg-b")
    assert store.transition(snapshot, CallStatus.BRIDGED, allowed_from=(CallStatus.CLAIMED,), now=NOW)
    moved = store.get(stored.call_id)
    assert moved is not None
    assert (moved.status, moved.bridged_at, moved.leg_b_call_id) == (CallStatus.BRIDGED, NOW, "leg-b")
    assert (moved.agent_id, moved.lookup_key) == ("crm", stored.lookup_key)


def test_a_move_from_elsewhere_or_by_another_phone_call_changes_nothing(store: InboundCallStore) -> None:
    stored = call(status=CallStatus.BRIDGED, transaction_id="tx")
    store.put_new(stored)
    ended = replace(stored, reason="caller_hung_up", ended_at=NOW, duration_seconds=5)
    assert not store.transition(ended, CallStatus.BRIDGED, allowed_from=(CallStatus.CLAIMED,), now=NOW)
    other = replace(ended, transaction_id="someone-else")
    assert not store.transition(other, CallStatus.ENDED, allowed_from=(CallStatus.BRIDGED,), now=NOW)
    assert store.get(stored.call_id) == stored


def test_a_move_of_a_call_never_stored_creates_it(store: InboundCallStore) -> None:
    snapshot = call(status=CallStatus.CLAIMED, transaction_id="tx", caller_number="+14155550100")
    assert store.transition(snapshot, CallStatus.BRIDGED, allowed_from=(CallStatus.CLAIMED,), now=NOW)
    created = store.get(snapshot.call_id)
    assert created is not None
    assert (created.status, created.caller_number) == (CallStatus.BRIDGED, "+14155550100")


# --- PIN challenges --------------------------------------------------------------------------------------


def test_a_challenged_call_is_resumed_only_by_an_answer(store: InboundCallStore) -> None:
    key = unique("tx")
    store.begin_transaction(key, owner=ME, now=NOW, lease_seconds=2, expires_at=LATER)
    store.challenge_transaction(TransactionLock(key, ME), candidate="crm-1", tries=1)
    asked_again = store.begin_transaction(key, owner=ME, now=NOW, lease_seconds=2, expires_at=LATER)
    assert (asked_again.state, asked_again.millis_call_id, asked_again.tries) == (
        TransactionState.CHALLENGED,
        "crm-1",
        1,
    )
    answered = store.begin_transaction(key, owner=ME, now=NOW, lease_seconds=2, expires_at=LATER, resume_challenge=True)
    assert (answered.state, answered.millis_call_id, answered.tries) == (TransactionState.ACQUIRED, "crm-1", 1)
    again = store.begin_transaction(key, owner=ME, now=NOW, lease_seconds=2, expires_at=LATER, resume_challenge=True)
    assert again.state is TransactionState.PENDING  # the answer is being worked on


def test_a_fresh_call_resumes_nothing(store: InboundCallStore) -> None:
    mark = store.begin_transaction(
        unique("tx"), owner=ME, now=NOW, lease_seconds=2, expires_at=LATER, resume_challenge=True
    )
    assert (mark.state, mark.millis_call_id, mark.tries) == (TransactionState.ACQUIRED, None, 0)


def test_pin_attempts_are_counted_on_the_registration_up_to_a_limit(store: InboundCallStore) -> None:
    record = call(caller_verification=CallerVerification.PIN, pin_hash="h")
    store.put_new(record)
    assert [store.reserve_pin_attempt(record.call_id, limit=3) for _ in range(4)] == [1, 2, 3, None]
    counted = store.get(record.call_id)
    assert counted is not None
    assert (counted.pin_failures, counted.caller_verification, counted.pin_hash) == (3, CallerVerification.PIN, "h")
    assert store.reserve_pin_attempt(unique(), limit=3) is None  # no such registration: nothing is created
    used = call(status=CallStatus.CLAIMED, transaction_id="tx")
    store.put_new(used)
    assert store.reserve_pin_attempt(used.call_id, limit=3) is None  # claimed already: nothing to guess for


def test_concurrent_pin_attempts_never_pass_the_limit(store: InboundCallStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    record = call(caller_verification=CallerVerification.PIN)
    store.put_new(record)
    with ThreadPoolExecutor(max_workers=25) as pool:
        counts = list(pool.map(lambda _: store.reserve_pin_attempt(record.call_id, limit=5), range(25)))
    assert sorted(c for c in counts if c is not None) == [1, 2, 3, 4, 5]
    assert counts.count(None) == 20


# --- one call id, one call -------------------------------------------------------------------------------


def test_a_marker_remembers_the_call_it_was_first_taken_for(store: InboundCallStore) -> None:
    key = unique("tx")
    first = store.begin_transaction(key, owner=ME, now=NOW, lease_seconds=2, expires_at=LATER, fingerprint="fp-a")
    assert first.state is TransactionState.ACQUIRED
    other = store.begin_transaction(key, owner="b", now=NOW, lease_seconds=2, expires_at=LATER, fingerprint="fp-b")
    assert (other.state, other.fingerprint) == (TransactionState.PENDING, "fp-a")
    later = NOW + timedelta(seconds=5)  # the lease has run out: only the same call may take it over
    other = store.begin_transaction(key, owner="b", now=later, lease_seconds=2, expires_at=LATER, fingerprint="fp-b")
    assert (other.state, other.fingerprint) == (TransactionState.PENDING, "fp-a")
    same = store.begin_transaction(key, owner="c", now=later, lease_seconds=2, expires_at=LATER, fingerprint="fp-a")
    assert same.state is TransactionState.ACQUIRED


def test_a_challenge_is_resumed_only_by_the_call_it_was_asked_of(store: InboundCallStore) -> None:
    key = unique("tx")
    store.begin_transaction(key, owner=ME, now=NOW, lease_seconds=2, expires_at=LATER, fingerprint="fp-a")
    store.challenge_transaction(TransactionLock(key, ME), candidate="crm-1", tries=0)

    def resume(fingerprint: str) -> Any:
        return store.begin_transaction(
            key, owner=ME, now=NOW, lease_seconds=2, expires_at=LATER, resume_challenge=True, fingerprint=fingerprint
        )

    refused = resume("fp-b")
    assert (refused.state, refused.fingerprint, refused.millis_call_id) == (
        TransactionState.CHALLENGED,
        "fp-a",
        "crm-1",
    )
    answered = resume("fp-a")
    assert (answered.state, answered.millis_call_id, answered.fingerprint) == (
        TransactionState.ACQUIRED,
        "crm-1",
        "fp-a",
    )


def test_lookups_meet_one_number_however_it_was_written(store: InboundCallStore) -> None:
    digits = "1415" + str(uuid.uuid4().int)[:7]
    record = call(lookup_key=digits)  # as Plivo writes numbers: no +
    store.put_new(record)
    for spelling in (f"+{digits}", f"00{digits}", f"tel:+{digits}", digits):
        assert [r.call_id for r in store.pending_for(spelling, NOW)] == [record.call_id], spelling


# --- number routes ---------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "dynamodb"])
def routes(request: pytest.FixtureRequest) -> Iterator[NumberRoutes]:
    if request.param == "memory":
        yield MemoryNumberRoutes()
    else:
        client = request.getfixturevalue("dynamodb")
        name = f"numbers-{uuid.uuid4().hex[:8]}"  # a table of its own: listing reads the whole table
        create_table(client, "NumbersTable", table_name=name)
        yield DynamoNumberRoutes(client, name)
        client.delete_table(TableName=name)


def test_a_route_reads_back_and_is_replaced_in_place(routes: NumberRoutes) -> None:
    route = NumberRoute(
        "+14155550100",
        agent_id="a",
        agent_config={"prompt": "p", "tools": [{"n": 1}]},
        metadata={"team": "x"},
        include_metadata_in_prompt=False,
        max_calls_per_hour=30,
        created_at=NOW,
        updated_at=NOW,
    )
    assert routes.put(route) is True
    assert routes.get("+14155550100") == route
    assert routes.put(replace(route, agent_id="b", agent_config=None)) is False
    assert routes.get("+14155550100") == replace(route, agent_id="b", agent_config=None)


def test_a_deleted_route_is_gone(routes: NumberRoutes) -> None:
    routes.put(NumberRoute("+14155550100", agent_id="a"))
    assert routes.delete("+14155550100") is True
    assert routes.get("+14155550100") is None
    assert routes.delete("+14155550100") is False


def test_routes_are_listed_a_page_at_a_time_each_once(routes: NumberRoutes) -> None:
    numbers = {f"+1415555{i:04d}" for i in range(7)}
    for number in numbers:
        routes.put(NumberRoute(number, agent_id="a"))
    seen: list[str] = []
    after: str | None = None
    for _ in range(10):
        page, after = routes.page(limit=3, after=after)
        assert len(page) <= 3
        seen += [r.number for r in page]
        if after is None:
            break
    assert sorted(seen) == sorted(numbers)


# --- what DynamoDB's lookup index holds (DynamoDB only: the fake has no index) -------------------------------


def indexed(dynamodb: Any, lookup_key: str) -> list[dict[str, Any]]:
    """The lookup index's raw entries for ``lookup_key``, as anyone reading the index would see them."""
    answer = dynamodb.query(
        TableName=TABLE,
        IndexName=LOOKUP_INDEX,
        KeyConditionExpression="lookup_index = :k",
        ExpressionAttributeValues={":k": {"S": STACK_KEYS.lookup_index(lookup_key)}},
    )
    items: list[dict[str, Any]] = answer["Items"]
    return items


def test_the_index_holds_no_phone_number_and_only_unused_registrations(dynamodb: Any) -> None:
    store = DynamoCallStore(dynamodb, TABLE, keys=STACK_KEYS)
    number = "+1415" + str(uuid.uuid4().int)[:7]
    claimed, closed, waiting = (call(lookup_key=number, created_at=NOW - timedelta(seconds=i)) for i in range(3))
    for record in (claimed, closed, waiting):
        store.put_new(record)
    [entry, *_] = entries = indexed(dynamodb, number)
    assert len(entries) == 3
    assert number not in json.dumps(entries) and number[1:] not in json.dumps(entries)
    assert "lookup_key" not in entry and "caller_number" not in entry
    taken = replace(claimed, status=CallStatus.CLAIMED, transaction_id="tx-1", caller_number=number)
    assert store.commit_inbound(taken, lock=None, claim=True, now=NOW)
    assert close(store, closed.call_id) is SessionOutcome.CLOSED
    assert [e["call_id"]["S"] for e in indexed(dynamodb, number)] == [waiting.call_id]
    assert [r.call_id for r in store.pending_for(number, NOW)] == [waiting.call_id]
    assert store.get(claimed.call_id).lookup_key == number  # type: ignore[union-attr] # the item keeps it


def test_a_lookup_reads_at_most_a_few_pages(dynamodb: Any) -> None:
    # Expired registrations wait in the index for TTL deletion; however many there are, a lookup stops after
    # LOOKUP_MAX_PAGES pages (one round trip each) instead of paging through them all.
    store = DynamoCallStore(dynamodb, TABLE, keys=STACK_KEYS)
    number = "+1206" + str(uuid.uuid4().int)[:7]
    lapsed = NOW - timedelta(seconds=1)
    for i in range(LOOKUP_PAGE_SIZE * (LOOKUP_MAX_PAGES + 2)):
        store.put_new(call(lookup_key=number, created_at=NOW - timedelta(seconds=i + 1), expires_at=lapsed))
    queries: list[dict[str, Any]] = []

    def count(**request: Any) -> None:
        queries.append(request)

    dynamodb.meta.events.register("before-call.dynamodb.Query", count)
    try:
        assert store.pending_for(number, NOW) == []
    finally:
        dynamodb.meta.events.unregister("before-call.dynamodb.Query", count)
    assert len(queries) == LOOKUP_MAX_PAGES


def test_calls_are_counted_up_to_a_limit_per_key(store: InboundCallStore) -> None:
    key, other = unique("calls-per-hour"), unique("calls-per-hour")
    assert [store.count_call(key, limit=2, expires_at=LATER) for _ in range(3)] == [True, True, False]
    assert store.count_call(other, limit=2, expires_at=LATER)
    assert store.get(key) is None  # a counter is not a call


def test_a_replayed_report_on_a_closed_call_writes_nothing(dynamodb: Any) -> None:
    store = DynamoCallStore(dynamodb, TABLE, keys=STACK_KEYS)
    record = call()
    store.put_new(record)
    assert close(store, record.call_id) is SessionOutcome.CLOSED

    def raw() -> dict[str, Any]:
        item: dict[str, Any] = dynamodb.get_item(TableName=TABLE, Key={"call_id": {"S": record.call_id}})["Item"]
        return item

    before = raw()
    replay = store.close_session(
        record.call_id,
        credential_hash=None,
        status=CallStatus.ENDED,
        reason="millis_user-ended",
        now=NOW + timedelta(hours=2),
        expires_at=LATER.replace(microsecond=0),
        report=MillisReport(call_status="user-ended", duration_seconds=42, session_id="s-9"),
    )
    assert replay is SessionOutcome.ANNOTATED
    assert raw() == before  # updated_at included


# --- outbound calls ----------------------------------------------------------------------------------------

_epochs = iter(range(1, 10_000))


def later_epoch() -> datetime:
    """A time past every slot an earlier test held (the slots share one item, as in a stack)."""
    return NOW + timedelta(days=400 * next(_epochs))


def test_ringing_slots_hold_up_to_the_limit_and_free_again(store: OutboundStore) -> None:
    now = later_epoch()
    until = now + timedelta(seconds=90)
    holders = [unique("ring") for _ in range(4)]
    assert [store.take_ringing_slot(h, limit=3, until=until, now=now) for h in holders] == [True, True, True, False]
    store.free_ringing_slot(holders[0])
    store.free_ringing_slot(holders[0])  # freeing twice is nothing
    assert store.take_ringing_slot(holders[3], limit=3, until=until, now=now)
    assert not store.take_ringing_slot(unique("ring"), limit=3, until=until, now=now)


def test_ringing_slots_past_their_time_are_free(store: OutboundStore) -> None:
    now = later_epoch()
    for _ in range(2):
        assert store.take_ringing_slot(unique("ring"), limit=2, until=now + timedelta(seconds=30), now=now)
    assert not store.take_ringing_slot(unique("ring"), limit=2, until=now + timedelta(seconds=90), now=now)
    later = now + timedelta(seconds=31)
    assert store.take_ringing_slot(unique("ring"), limit=2, until=later + timedelta(seconds=90), now=later)


def test_the_carriers_call_id_is_noted_once(store: OutboundStore) -> None:
    record = call(status=CallStatus.QUEUED, direction=Direction.OUTBOUND, carrier="twilio", transaction_id="ref")
    store.put_new(record)
    store.note_carrier_call(record.call_id, "CA1")
    store.note_carrier_call(record.call_id, "CA2")
    stored = store.get(record.call_id)
    assert stored is not None
    assert (stored.carrier_call_id, stored.direction, stored.carrier) == ("CA1", Direction.OUTBOUND, "twilio")


def test_one_transfer_at_a_time_and_only_of_a_live_call(store: Any) -> None:
    from millis_sip.core.transfer import LIVE

    record = call(status=CallStatus.CLAIMED, transaction_id="CA1")
    store.put_new(record)
    moving = replace(
        record,
        transfer_to="+14155550199",
        transfer_mode="warm",
        transfer_by="api",
        transfer_status="in_progress",
        transfer_summary="Wants to upgrade.",
        transfer_announce="One moment.",
        transfer_requested_at=NOW,
    )
    assert store.begin_transfer(moving, live=LIVE)
    assert not store.begin_transfer(moving, live=LIVE)  # one under way
    stored = store.get(record.call_id)
    assert stored is not None
    assert (
        stored.transfer_to,
        stored.transfer_mode,
        stored.transfer_status,
        stored.transfer_summary,
        stored.transfer_announce,
    ) == ("+14155550199", "warm", "in_progress", "Wants to upgrade.", "One moment.")
    assert store.end_transfer(record.call_id, "failed", ended_at=NOW)
    assert not store.end_transfer(record.call_id, "connected", ended_at=NOW)  # none under way now
    again = replace(moving, transfer_summary=None, transfer_announce=None, transfer_mode="cold")
    assert store.begin_transfer(again, live=LIVE)  # the next one may start
    stored = store.get(record.call_id)
    assert stored is not None
    assert (stored.transfer_summary, stored.transfer_announce, stored.transfer_ended_at) == (None, None, None)
    over = call(status=CallStatus.ENDED)
    store.put_new(over)
    assert not store.begin_transfer(replace(over, transfer_status="in_progress", transfer_requested_at=NOW), live=LIVE)
    assert not store.begin_transfer(replace(moving, call_id="no-such-call"), live=LIVE)


def test_who_answered_is_noted_after_the_answer(store: OutboundStore) -> None:
    record = call(status=CallStatus.ANSWERED, direction=Direction.OUTBOUND, carrier="vonage", transaction_id="ref")
    store.put_new(record)
    store.note_answered_by(record.call_id, "human")
    store.note_answered_by(record.call_id, "machine")  # the latest result stands
    store.note_answered_by("no-such-call", "human")  # nothing to note, nothing created
    stored = store.get(record.call_id)
    assert stored is not None and (stored.answered_by, stored.status) == ("machine", CallStatus.ANSWERED)
    assert store.get("no-such-call") is None


def test_an_outbound_call_moves_through_its_states_and_reads_back(store: OutboundStore) -> None:
    record = call(
        status=CallStatus.QUEUED,
        direction=Direction.OUTBOUND,
        carrier="vonage",
        transaction_id="ref",
        machine_detection="hangup",
        ring_timeout_seconds=25,
    )
    store.put_new(record)
    ringing = replace(record, ringing_at=NOW, carrier_call_id="uuid-1")
    assert store.transition(ringing, CallStatus.RINGING, allowed_from=(CallStatus.QUEUED,), now=NOW)
    answered = replace(ringing, answered_at=NOW, answered_by="human")
    assert store.transition(
        answered, CallStatus.ANSWERED, allowed_from=(CallStatus.QUEUED, CallStatus.RINGING), now=NOW
    )
    late_busy = replace(record, reason="busy", ended_at=NOW)
    assert not store.transition(
        late_busy, CallStatus.BUSY, allowed_from=(CallStatus.QUEUED, CallStatus.RINGING), now=NOW
    )
    stored = store.get(record.call_id)
    assert stored is not None
    assert stored.status is CallStatus.ANSWERED
    assert (stored.carrier_call_id, stored.answered_by, stored.ring_timeout_seconds) == ("uuid-1", "human", 25)
    assert stored.machine_detection == "hangup"
    assert stored.ringing_at is not None and stored.answered_at is not None


def test_an_outbound_route_reads_back(routes: NumberRoutes) -> None:
    number = "+1505555" + uuid.uuid4().hex[:4].translate(str.maketrans("abcdef", "123456"))
    route = NumberRoute(number, agent_id="a", outbound_carriers=("twilio", "plivo"), max_outbound_calls_per_hour=7)
    routes.put(route)
    stored = routes.get(number)
    assert stored is not None
    assert (stored.outbound_carriers, stored.max_outbound_calls_per_hour) == (("plivo", "twilio"), 7)


# --- listing (GET /calls) and cancelling a registration (DELETE /calls/{call_id}) -----------------------------


def window() -> datetime:
    """A moment of its own, far from every other test's calls (the table is shared): 23:58 UTC on a random day in
    the 2030s, so a window from it crosses midnight."""
    day = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(days=uuid.uuid4().int % 3000)
    return day.replace(hour=23, minute=58, microsecond=0)


def query(since: datetime, until: datetime, *, limit: int = 50, now: datetime | None = None, **filters: Any) -> Any:
    from millis_sip.core.ports import CallQuery

    return CallQuery(since=since, until=until, limit=limit, now=now or until, **filters)


def every_page(store: InboundCallStore, first: Any) -> list[list[str]]:
    pages, asked = [], first
    for _ in range(50):
        page = store.list_calls(asked)
        assert len(page.calls) <= asked.limit
        pages.append([r.call_id for r in page.calls])
        if page.next is None:
            return pages
        asked = replace(asked, after=page.next)
    raise AssertionError("the cursor never ended")


def test_calls_are_listed_newest_first_across_days_a_page_at_a_time(store: InboundCallStore) -> None:
    start = window()
    records = [call(created_at=start + timedelta(seconds=30 * i)) for i in range(7)]  # 23:58:00 to 00:01:00
    for record in records:
        store.put_new(record)
    store.count_call(unique("counter"), limit=5, expires_at=LATER)
    store.begin_transaction(unique("marker"), owner=ME, now=NOW, lease_seconds=1, expires_at=LATER)
    newest_first = [r.call_id for r in reversed(records)]
    everything = store.list_calls(query(start, start + timedelta(minutes=5)))
    assert ([r.call_id for r in everything.calls], everything.next) == (newest_first, None)
    assert everything.calls[0] == records[-1]  # read back field for field, from the index alone
    pages = every_page(store, query(start, start + timedelta(minutes=5), limit=3))
    assert [c for page in pages for c in page] == newest_first
    # since inclusive, until exclusive
    inside = store.list_calls(query(records[1].created_at, records[3].created_at))
    assert [r.call_id for r in inside.calls] == [records[2].call_id, records[1].call_id]


def test_listing_filters_by_status_direction_carrier_agent_and_number(store: InboundCallStore) -> None:
    start = window()
    agent = unique("agent")

    def at(i: int, **fields: Any) -> CallRecord:
        values = {"expires_at": start + timedelta(hours=1), **fields}
        return call(created_at=start + timedelta(seconds=i), agent_id=agent, **values)

    waiting = at(1, lookup_key="+14155550111")
    lapsed = at(2, expires_at=start + timedelta(seconds=30))
    claimed = at(3, status=CallStatus.CLAIMED, transaction_id="t", carrier="telnyx", caller_number="+14155550122")
    outbound = at(
        4,
        status=CallStatus.RINGING,
        direction=Direction.OUTBOUND,
        carrier="twilio",
        caller_number="+15055550100",
        dialed_number="+14155550133",
        transaction_id="o",
    )
    chime = at(5, source=CallSource.CHIME)
    other_agent = call(created_at=start + timedelta(seconds=6), agent_id=unique("agent"))
    for record in (waiting, lapsed, claimed, outbound, chime, other_agent):
        store.put_new(record)
    now = start + timedelta(minutes=1)

    def ids(**filters: Any) -> list[str]:
        page = store.list_calls(query(start, start + timedelta(minutes=2), now=now, agent_id=agent, **filters))
        assert page.next is None
        return [r.call_id for r in page.calls]

    assert ids() == [r.call_id for r in (chime, outbound, claimed, lapsed, waiting)]
    assert ids(status=CallStatus.REGISTERED) == [chime.call_id, waiting.call_id]
    assert ids(status=CallStatus.EXPIRED) == [lapsed.call_id]
    assert ids(status=CallStatus.RINGING) == [outbound.call_id]
    assert ids(direction=Direction.OUTBOUND) == [outbound.call_id]
    assert ids(direction=Direction.INBOUND) == [r.call_id for r in (chime, claimed, lapsed, waiting)]
    assert ids(carrier="telnyx") == [claimed.call_id]
    assert ids(carrier="chime") == [chime.call_id]
    assert ids(number="+14155550133") == [outbound.call_id]
    assert ids(number="+15055550100") == [outbound.call_id]
    assert ids(number="+14155550122") == [claimed.call_id]
    assert ids(number="+14155550111") == [waiting.call_id]
    assert ids(number="+14155550199") == []
    assert ids(direction=Direction.OUTBOUND, status=CallStatus.CLAIMED) == []


def test_a_cursor_the_store_did_not_give_out_is_refused(store: InboundCallStore) -> None:
    from millis_sip.core.errors import InvalidRequest

    start = window()
    for made_up in ("nope", "eyJ4IjoxfQ", "", "%%%"):
        with pytest.raises(InvalidRequest, match="cursor"):
            store.list_calls(query(start, start + timedelta(minutes=1), after=made_up or "e30"))


def test_a_listing_filtered_down_to_little_reads_a_bounded_amount_and_pages_on(dynamodb: Any) -> None:
    from millis_sip.adapters.dynamodb.store import LIST_FILTERED_READ, LIST_MAX_QUERIES

    store = DynamoCallStore(dynamodb, TABLE, keys=STACK_KEYS)
    start = window()
    agent = unique("agent")
    noise = LIST_FILTERED_READ * (LIST_MAX_QUERIES + 1)
    for i in range(noise):
        store.put_new(call(created_at=start + timedelta(milliseconds=i + 10), agent_id=unique("noise")))
    wanted = call(created_at=start, agent_id=agent)  # the oldest: behind all the noise
    store.put_new(wanted)
    queries: list[dict[str, Any]] = []

    def count(**request: Any) -> None:
        queries.append(request)

    dynamodb.meta.events.register("before-call.dynamodb.Query", count)
    try:
        first = store.list_calls(query(start, start + timedelta(minutes=1), agent_id=agent))
    finally:
        dynamodb.meta.events.unregister("before-call.dynamodb.Query", count)
    assert len(queries) == LIST_MAX_QUERIES
    assert (first.calls, first.next is not None) == ((), True)  # short, even empty, but not the last
    assert every_page(store, query(start, start + timedelta(minutes=1), agent_id=agent, after=first.next)) == [
        [wanted.call_id]
    ]


def test_only_a_waiting_registration_can_be_canceled_and_then_no_call_claims_it(store: InboundCallStore) -> None:
    key = unique("+1")
    waiting = call(lookup_key=key)
    store.put_new(waiting)
    kept = waiting.expires_at + timedelta(days=1)  # whole seconds, as the core gives them (the TTL's format)
    canceled = replace(waiting, status=CallStatus.CANCELED, reason="canceled_by_api", ended_at=NOW, expires_at=kept)
    assert store.cancel_registration(canceled, now=NOW)
    assert store.get(waiting.call_id) == canceled
    assert store.latest_for(key, NOW) is None and store.pending_for(key, NOW) == []
    claim = replace(waiting, status=CallStatus.CLAIMED, transaction_id="tx")
    assert not store.commit_inbound(claim, lock=None, claim=True, now=NOW)
    assert not store.cancel_registration(canceled, now=NOW)  # already canceled: nothing changes

    claimed = call(lookup_key=key, status=CallStatus.CLAIMED, transaction_id="tx")
    lapsed = call(lookup_key=key, expires_at=NOW.replace(microsecond=0) - timedelta(seconds=1))
    outbound = call(status=CallStatus.QUEUED, direction=Direction.OUTBOUND, transaction_id="o")
    for record in (claimed, lapsed, outbound):
        store.put_new(record)
        assert not store.cancel_registration(replace(record, status=CallStatus.CANCELED), now=NOW)
        assert store.get(record.call_id) == record
    marker = unique("marker")
    store.begin_transaction(marker, owner=ME, now=NOW, lease_seconds=1, expires_at=LATER)
    assert not store.cancel_registration(replace(waiting, call_id=marker, status=CallStatus.CANCELED), now=NOW)
    assert store.transaction_mark(marker) is not None
    assert not store.cancel_registration(replace(canceled, call_id=unique()), now=NOW)  # never stored


def test_a_claim_and_a_cancel_racing_have_one_winner(store: InboundCallStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    for _ in range(5):
        waiting = call(lookup_key=unique("+1"))
        store.put_new(waiting)
        claim = replace(waiting, status=CallStatus.CLAIMED, transaction_id="tx")
        cancel = replace(waiting, status=CallStatus.CANCELED, reason="canceled_by_api", ended_at=NOW)
        with ThreadPoolExecutor(2) as pool:
            claimed = pool.submit(store.commit_inbound, claim, lock=None, claim=True, now=NOW)
            canceled = pool.submit(store.cancel_registration, cancel, now=NOW)
            outcomes = (claimed.result(), canceled.result())
        assert sorted(outcomes) == [False, True]
        stored = store.get(waiting.call_id)
        assert stored is not None
        assert stored.status is (CallStatus.CLAIMED if outcomes[0] else CallStatus.CANCELED)

"""The inbound-call router on in-memory ports and the fake clock, as every edge sees it: the order of its
choices (a verified claim, the dialed number's registration, the number's route, the default agent), each way
a caller proves a caller-ID claim and each refusal, PINs, retries, and what a registration it makes carries."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from millis_sip.adapters.secrets import StaticApiKey
from millis_sip.core.calls import MAX_PIN_FAILURES, CallerVerification, CallRecord, CallStatus
from millis_sip.core.errors import MillisUnavailable, StoreUnavailable
from millis_sip.core.keys import StackKeys
from millis_sip.core.numbers import NumberRoute
from millis_sip.core.ports import STORE_BUDGET_SECONDS, TransactionState, in_sequence, transaction_key
from millis_sip.core.regions import MillisRegion
from millis_sip.core.registration import MillisRegistrations
from millis_sip.core.router import (
    ANY_SIP_URI,
    MAX_PIN_TRIES,
    CallRouter,
    Challenge,
    Decision,
    InboundCall,
    Refused,
    Routed,
)
from millis_sip.core.sip import SipUri, parse_sip_uri
from tests.support.clock import T0, FakeClock
from tests.support.fakes import FakeGateway, MemoryNumberRoutes, MemoryStore

CALLER, DIALED, OTHER = "+14155550100", "+15055550123", "+15055550999"
KEYS = StackKeys(StaticApiKey("unit-stack-secret"))
PIN = KEYS.pin("crm-1")  # the PIN of the registration most tests here make (derived, never stored)


class World:
    def __init__(
        self,
        *,
        default_agent: str | None = "default-agent",
        parallel: Any = in_sequence,
        per_number: int | None = None,
        total: int | None = None,
        keys: StackKeys = KEYS,
    ) -> None:
        self.clock = FakeClock()
        self.gateway = FakeGateway(host="sip-{region}.example")
        self.store = MemoryStore()
        self.numbers = MemoryNumberRoutes()
        self.router = CallRouter(
            MillisRegistrations(self.gateway),
            self.store,
            self.numbers,
            clock=self.clock,
            region_order=(MillisRegion.US_WEST, MillisRegion.EU_WEST),
            ttl_seconds=3600,
            default_agent_id=default_agent,
            default_agent_calls_per_hour=per_number,
            default_agent_calls_per_hour_total=total,
            keys=keys,
            parallel=parallel,
        )

    def route(self, call: InboundCall) -> Decision[SipUri]:
        return self.router.route(call, deadline=self.clock.monotonic() + 4.0, placement=ANY_SIP_URI)

    def pending(
        self,
        call_id: str,
        *,
        lookup_key: str = CALLER,
        verification: CallerVerification = CallerVerification.ATTESTATION,
        pin: str | None = None,
        age: int = 60,
    ) -> CallRecord:
        record = CallRecord(
            call_id=call_id,
            sip_uri=parse_sip_uri(f"sip:call-{call_id}@sip.example"),
            millis_region="us-west",
            status=CallStatus.REGISTERED,
            created_at=T0 - timedelta(seconds=age),
            expires_at=T0 + timedelta(seconds=3600),
            lookup_key=lookup_key,
            agent_id="crm-agent",
            caller_verification=verification,
        )
        assert pin is None or pin == KEYS.pin(call_id), "a registration's PIN is derived from its call id"
        self.store.items[call_id] = record
        return record


def call(ref: str = "CA1", **changes: Any) -> InboundCall:
    return replace(InboundCall("twilio", ref, CALLER, DIALED), **changes)


def claimed_id(decision: Decision[SipUri]) -> str:
    assert isinstance(decision, Routed), decision
    assert decision.how == "claimed", decision.how
    return decision.record.call_id


# --- caller ID is not proof -------------------------------------------------------------------------------


def test_trusting_caller_id_is_an_explicit_choice_of_the_registration() -> None:
    world = World()
    world.pending("crm-1", verification=CallerVerification.TRUST_CALLER_ID)
    assert claimed_id(world.route(call())) == "crm-1"
    assert world.gateway.calls == []
    claimed = world.store.items["crm-1"]
    assert (claimed.status, claimed.transaction_id, claimed.caller_number) == (CallStatus.CLAIMED, "CA1", CALLER)


@pytest.mark.parametrize(("attestation", "claims"), [("A", True), ("B", False), ("C", False), (None, False)])
def test_attestation_claims_need_full_attestation(attestation: str | None, claims: bool) -> None:
    world = World()
    world.pending("crm-1")  # the default: attestation
    decision = world.route(call(attestation=attestation))
    assert isinstance(decision, Routed)
    if claims:
        assert decision.how == "claimed" and decision.record.call_id == "crm-1"
    else:
        assert decision.how == "default_agent"
        assert world.store.items["crm-1"].status is CallStatus.REGISTERED  # left for its real caller


def test_a_spoofed_caller_id_gets_the_default_agent_not_the_customers_session() -> None:
    world = World()
    world.pending("crm-1", verification=CallerVerification.PIN, pin=PIN)
    decision = world.route(call(can_challenge=False))  # an edge that cannot ask for digits
    assert isinstance(decision, Routed) and decision.how == "default_agent"
    assert "crm" not in str(world.gateway.calls)


def test_a_pin_registration_is_claimed_after_the_caller_keys_in_its_pin() -> None:
    world = World()
    world.pending("crm-1", verification=CallerVerification.PIN, pin=PIN)
    first = world.route(call(can_challenge=True))
    assert first == Challenge()
    mark = world.store.marks[transaction_key("twilio", "CA1", 1)]
    assert (mark.state, mark.millis_call_id) == (TransactionState.CHALLENGED, "crm-1")
    assert world.route(call(can_challenge=True)) == Challenge()  # asked again before answering: ask again
    assert claimed_id(world.route(call(can_challenge=True, pin=PIN))) == "crm-1"
    assert world.gateway.calls == []
    again = world.route(call(can_challenge=True, pin=PIN))  # the same answer, retried
    assert isinstance(again, Routed) and again.how == "replayed" and again.record.call_id == "crm-1"


def test_a_wrong_pin_is_asked_again_then_the_call_goes_on_without_the_registration() -> None:
    world = World()
    world.pending("crm-1", verification=CallerVerification.PIN, pin=PIN)
    assert world.route(call(can_challenge=True)) == Challenge()
    for _ in range(MAX_PIN_TRIES - 1):
        assert world.route(call(can_challenge=True, pin="000000")) == Challenge(retry=True)
    last = world.route(call(can_challenge=True, pin="000000"))
    assert isinstance(last, Routed) and last.how == "default_agent"
    assert world.store.items["crm-1"].status is CallStatus.REGISTERED
    assert world.store.items["crm-1"].pin_failures == MAX_PIN_TRIES


def test_no_pin_at_all_goes_on_without_the_registration() -> None:
    world = World()
    world.pending("crm-1", verification=CallerVerification.PIN, pin=PIN)
    world.route(call(can_challenge=True))
    declined = world.route(call(can_challenge=True, pin=""))
    assert isinstance(declined, Routed) and declined.how == "default_agent"
    assert world.store.items["crm-1"].pin_failures == 0


def test_a_registration_locks_after_too_many_wrong_pins_over_all_calls() -> None:
    world = World()
    record = world.pending("crm-1", verification=CallerVerification.PIN, pin=PIN)
    world.store.items["crm-1"] = replace(record, pin_failures=MAX_PIN_FAILURES)
    decision = world.route(call(can_challenge=True))  # no challenge: a guesser cannot go on
    assert isinstance(decision, Routed) and decision.how == "default_agent"


def test_the_last_allowed_wrong_pin_stops_the_challenges_at_once() -> None:
    world = World()
    record = world.pending("crm-1", verification=CallerVerification.PIN, pin=PIN)
    world.store.items["crm-1"] = replace(record, pin_failures=MAX_PIN_FAILURES - 1)
    assert world.route(call(can_challenge=True)) == Challenge()
    decision = world.route(call(can_challenge=True, pin="111111"))
    assert isinstance(decision, Routed) and decision.how == "default_agent"
    assert world.store.items["crm-1"].pin_locked


def test_the_right_pin_after_the_lock_still_does_not_claim() -> None:
    world = World()
    world.pending("crm-1", verification=CallerVerification.PIN, pin=PIN)
    assert world.route(call(can_challenge=True)) == Challenge()
    world.store.items["crm-1"] = replace(world.store.items["crm-1"], pin_failures=MAX_PIN_FAILURES)
    decision = world.route(call(can_challenge=True, pin=PIN))
    assert isinstance(decision, Routed) and decision.how == "default_agent"


def test_a_registration_for_the_dialed_number_needs_no_proof() -> None:
    world = World()
    world.pending("dedicated", lookup_key=DIALED, verification=CallerVerification.DIALED_NUMBER)
    assert claimed_id(world.route(call(caller=OTHER))) == "dedicated"


CALLER_SIDE = [v for v in CallerVerification if v.by_caller]


@pytest.mark.parametrize("verification", CALLER_SIDE)
def test_a_call_to_a_number_never_takes_a_registration_made_for_a_caller_from_it(
    verification: CallerVerification,
) -> None:
    # The reproduction: a pin or attestation registration for a customer's number, then a call *to* that number
    # from anyone, with every proof a caller could show, took the customer's session.
    world = World()
    world.pending("customer", lookup_key=DIALED, verification=verification)
    for ref, proof in (("CA1", {}), ("CA2", {"attestation": "A"}), ("CA3", {"pin": KEYS.pin("customer")})):
        decision = world.route(call(ref, caller=OTHER, can_challenge=True, **proof))
        assert isinstance(decision, Routed) and decision.how == "default_agent", (ref, decision)
    assert world.store.items["customer"].status is CallStatus.REGISTERED  # left for its real caller
    assert world.store.items["customer"].pin_failures == 0  # and never asked for, nor counted


def test_a_dialed_number_registration_is_never_claimed_by_a_caller_from_that_number() -> None:
    world = World()
    world.pending("line", lookup_key=CALLER, verification=CallerVerification.DIALED_NUMBER)
    decision = world.route(call(attestation="A"))  # from the line's number, to another
    assert isinstance(decision, Routed) and decision.how == "default_agent"
    assert world.store.items["line"].status is CallStatus.REGISTERED


def test_a_verified_caller_claim_comes_before_the_dialed_numbers() -> None:
    world = World()
    world.pending("by-dialed", lookup_key=DIALED, verification=CallerVerification.DIALED_NUMBER)
    world.pending("by-caller", verification=CallerVerification.TRUST_CALLER_ID)
    assert claimed_id(world.route(call())) == "by-caller"


def test_an_unverified_caller_falls_back_to_the_dialed_numbers_registration() -> None:
    world = World()
    world.pending("by-dialed", lookup_key=DIALED, verification=CallerVerification.DIALED_NUMBER)
    world.pending("by-caller")  # attestation, and none is given
    assert claimed_id(world.route(call())) == "by-dialed"


def test_the_same_number_calling_itself_is_a_caller_claim() -> None:
    world = World()
    world.pending("self", lookup_key=CALLER)
    decision = world.route(call(dialed=CALLER))
    assert isinstance(decision, Routed) and decision.how == "default_agent"


def test_a_number_calling_itself_takes_its_dialed_number_registration() -> None:
    world = World()
    world.pending("line", lookup_key=CALLER, verification=CallerVerification.DIALED_NUMBER)
    assert claimed_id(world.route(call(dialed=CALLER))) == "line"


def test_a_registration_is_found_whichever_way_its_number_was_written() -> None:
    world = World()
    world.pending("plain", lookup_key="15055550123", verification=CallerVerification.DIALED_NUMBER)
    assert claimed_id(world.route(call(caller=OTHER))) == "plain"


# --- number routes and the default agent ----------------------------------------------------------------


def test_the_dialed_numbers_route_registers_with_its_agent_and_metadata() -> None:
    world = World()
    world.numbers.put(
        NumberRoute(
            DIALED,
            agent_id="sales",
            agent_config={"first_message": "Hi"},
            metadata={"team": "sales", "caller_number": "forged"},
            include_metadata_in_prompt=True,
        )
    )
    decision = world.route(call(context={"twilio_account": "AC1"}))
    assert isinstance(decision, Routed) and decision.how == "number_route"
    [payload] = world.gateway.calls
    assert payload == {
        "agent_id": "sales",
        "agent_config": {"first_message": "Hi"},
        "include_metadata_in_prompt": True,
        "metadata": {
            "team": "sales",
            "caller_number": CALLER,  # the stack's own keys win over the route's
            "dialed_number": DIALED,
            "carrier": "twilio",
            "carrier_call_id": "CA1",
            "twilio_account": "AC1",
        },
    }
    record = decision.record
    assert (record.status, record.source, record.agent_id, record.lookup_key) == (
        CallStatus.CLAIMED,
        "twilio",
        "sales",
        None,
    )
    assert world.store.items[record.call_id] == record


def test_without_a_route_the_default_agent_takes_the_call() -> None:
    world = World()
    decision = world.route(call())
    assert isinstance(decision, Routed) and decision.how == "default_agent"
    assert world.gateway.calls[0]["agent_id"] == "default-agent"


def test_without_a_route_or_a_default_agent_the_call_is_refused_and_millis_is_not_called() -> None:
    world = World(default_agent=None)
    decision = world.route(call())
    assert decision == Refused("no_agent")
    assert not decision.transient
    assert world.gateway.calls == []
    assert world.route(call()) == Refused("no_agent", replayed=True)


def test_a_route_that_cannot_be_read_falls_back_to_the_default_agent() -> None:
    world = World()
    world.numbers.put(NumberRoute(DIALED, agent_id="sales"))
    world.numbers.fail_with = StoreUnavailable("DynamoDB get failed (ThrottlingException).")
    decision = world.route(call())
    assert isinstance(decision, Routed) and decision.how == "default_agent"


def test_millis_down_is_a_transient_refusal() -> None:
    world = World()
    world.gateway.fail_with = MillisUnavailable("down")
    decision = world.route(call())
    assert isinstance(decision, Refused) and decision.reason == "millis_unavailable" and decision.transient


# --- exactly once ----------------------------------------------------------------------------------------


def test_the_same_call_asked_twice_gets_the_same_answer_and_one_registration() -> None:
    world = World()
    first = world.route(call())
    world.clock.advance(3)
    second = world.route(call())
    assert isinstance(first, Routed) and isinstance(second, Routed)
    assert (second.record.call_id, second.how) == (first.record.call_id, "replayed")
    assert len(world.gateway.calls) == 1


def test_the_same_call_id_from_another_carrier_is_another_call() -> None:
    world = World()
    world.route(call())
    world.route(replace(call(), carrier="sip"))
    assert len(world.gateway.calls) == 2


def test_without_its_marker_a_call_claims_nothing_and_is_bridged_without_a_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The ownership write fails (DynamoDB, after its retries) while the reads beside it answered: a claim cannot
    # be made safely without the marker, and nothing more is written; the record rides with the phone system.
    world = World()
    world.pending("crm-1", verification=CallerVerification.TRUST_CALLER_ID)
    world.store.begin_transaction = lambda *a, **k: (_ for _ in ()).throw(StoreUnavailable("down"))  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="millis_sip"):
        decision = world.route(call())
    assert isinstance(decision, Routed) and decision.how == "default_agent"
    assert list(world.store.items) == ["crm-1"] and world.store.items["crm-1"].status is CallStatus.REGISTERED
    assert world.store.markers == {}
    assert "DynamoDB is unavailable: bridging without storing" in caplog.text


def test_the_marker_and_the_reads_go_out_together_each_within_the_stores_budget() -> None:
    batches: list[int] = []
    budgets: list[float | None] = []

    def recording(*calls: Any, timeout: float | None = None) -> list[Any]:
        batches.append(len(calls))
        budgets.append(timeout)
        return in_sequence(*calls)

    world = World(parallel=recording)
    world.route(call())
    # The marker, the number's route, the caller's and the dialed number's registrations; then the commit.
    assert batches == [4, 1]
    assert budgets == [STORE_BUDGET_SECONDS, STORE_BUDGET_SECONDS]


def test_a_failover_for_a_carrier_registers_on_the_other_region() -> None:
    world = World()
    first = world.route(call())
    assert isinstance(first, Routed)
    retried = world.router.failover(
        call(), first.record, attempt=1, deadline=world.clock.monotonic() + 4.0, placement=ANY_SIP_URI
    )
    assert isinstance(retried, Routed) and retried.record.millis_region == "eu-west"
    assert world.gateway.regions[-1] == (MillisRegion.EU_WEST,)


def test_an_invocation_that_outlives_its_lease_cannot_overwrite_the_retry_that_took_over() -> None:
    # The first invocation's Millis call outlasts its lease; while it waits, the phone system's retry takes the
    # call over and answers. When the first one finally commits, nothing it writes lands: the retry's answer
    # (its record, its marker) stands, and a third ask is answered from it.
    world = World(default_agent="agent")
    register = world.gateway.register
    answers: list[Decision[SipUri]] = []

    retried: list[bool] = []

    def slow_first(payload: Any, **kwargs: Any) -> Any:
        if not retried:
            retried.append(True)
            world.clock.advance(5.0)  # past the first invocation's lease (its 4 s deadline)
            answers.append(world.route(call("CA-race")))  # the retry, meanwhile
        return register(payload, **kwargs)

    world.gateway.register = slow_first  # type: ignore[method-assign]
    first = world.route(call("CA-race"))
    [retry] = answers
    assert isinstance(first, Routed) and isinstance(retry, Routed)
    assert first.record.call_id != retry.record.call_id  # two Millis calls: the first one's goes unused
    mark = world.store.transaction_mark(transaction_key("twilio", "CA-race", 1))
    assert mark is not None and (mark.state, mark.millis_call_id) == (TransactionState.DONE, retry.record.call_id)
    assert first.record.call_id not in world.store.items
    again = world.route(call("CA-race"))
    assert isinstance(again, Routed) and again.record.call_id == retry.record.call_id


def test_a_numbers_hourly_cap_bounds_the_sessions_strangers_start() -> None:
    world = World(default_agent=None)
    world.numbers.routes[DIALED] = NumberRoute(DIALED, agent_id="sales", max_calls_per_hour=2)
    answers = [world.route(call(f"CA-cap-{i}", caller=f"+1206555000{i}")) for i in range(3)]
    assert [type(a).__name__ for a in answers] == ["Routed", "Routed", "Refused"]
    assert isinstance(answers[2], Refused) and answers[2].reason == "over_hourly_cap"
    assert len(world.gateway.calls) == 2  # the third call started no session
    world.clock.advance(3600)  # the next hour counts afresh
    assert isinstance(world.route(call("CA-cap-next")), Routed)


def test_the_default_agent_has_an_hourly_cap_per_dialed_number_when_one_is_set() -> None:
    world = World(default_agent="agent", per_number=1)
    assert isinstance(world.route(call("CA-d1")), Routed)
    assert isinstance(world.route(call("CA-d2")), Refused)
    assert isinstance(world.route(call("CA-d3", dialed=OTHER)), Routed)  # another number, its own count


def test_a_backends_registration_is_claimed_whatever_the_cap() -> None:
    world = World(default_agent=None)
    world.numbers.routes[DIALED] = NumberRoute(DIALED, agent_id="sales", max_calls_per_hour=1)
    world.route(call("CA-first", caller="+12065550001"))
    world.pending("crm-1", verification=CallerVerification.TRUST_CALLER_ID)
    assert claimed_id(world.route(call("CA-claim"))) == "crm-1"


def test_a_store_that_cannot_count_lets_the_call_through() -> None:
    world = World(default_agent=None)
    world.numbers.routes[DIALED] = NumberRoute(DIALED, agent_id="sales", max_calls_per_hour=1)
    world.store.count_call = lambda *a, **k: (_ for _ in ()).throw(StoreUnavailable("down"))  # type: ignore[method-assign]
    assert isinstance(world.route(call("CA-a", caller="+12065550001")), Routed)
    assert isinstance(world.route(call("CA-b", caller="+12065550002")), Routed)


def test_a_warm_function_reuses_a_numbers_route_for_a_while() -> None:
    from millis_sip.core.numbers import ROUTE_CACHE_SECONDS, CachedNumberRoutes

    clock, backing = FakeClock(), MemoryNumberRoutes()
    reads: list[str] = []
    get = backing.get

    def counted(number: str) -> NumberRoute | None:
        reads.append(number)
        return get(number)

    backing.get = counted  # type: ignore[method-assign]
    cached = CachedNumberRoutes(backing, clock=clock)
    assert cached.get(DIALED) is None and cached.get(DIALED) is None  # "no route" is remembered too
    backing.put(NumberRoute(DIALED, agent_id="sales"))
    assert cached.get(DIALED) is None  # a change elsewhere shows after the cache's time
    clock.advance(ROUTE_CACHE_SECONDS)
    route = cached.get(DIALED)
    assert route is not None and route.agent_id == "sales"
    assert reads == [DIALED, DIALED]
    cached.delete(DIALED)  # a change made through the same object shows at once
    assert cached.get(DIALED) is None
    backing.fail_with = StoreUnavailable("down")
    clock.advance(ROUTE_CACHE_SECONDS)
    with pytest.raises(StoreUnavailable):
        cached.get(DIALED)  # a failure is not remembered


# --- claims bound to their proof, replays, conflicts, caps (hardening III) ---------------------------------


def test_pin_attempts_are_counted_before_they_are_compared_so_concurrent_guesses_stop_at_the_limit() -> None:
    # Calls racing for one PIN registration all read it before any of them counted a wrong PIN (the stale
    # snapshot below): each attempt must still be reserved on the stored registration before its digits are
    # compared, so the right PIN arriving after MAX_PIN_FAILURES wrong ones is never compared.
    world = World()
    record = world.pending("crm-1", verification=CallerVerification.PIN)
    world.store.pending_for = lambda lookup_key, now: [record] if lookup_key == CALLER else []  # type: ignore[method-assign]
    guesses = [f"{i:06d}" for i in range(MAX_PIN_FAILURES)] + [PIN]
    answers = [world.route(call(f"CA-guess-{i}", pin=g)) for i, g in enumerate(guesses)]
    assert all(isinstance(a, Routed) and a.how == "default_agent" for a in answers), answers
    assert world.store.items["crm-1"].status is CallStatus.REGISTERED
    assert world.store.items["crm-1"].pin_failures == MAX_PIN_FAILURES


def test_a_pin_attempt_that_cannot_be_counted_is_not_compared() -> None:
    world = World()
    world.pending("crm-1", verification=CallerVerification.PIN)
    world.store.reserve_pin_attempt = lambda *a, **k: (_ for _ in ()).throw(StoreUnavailable("down"))  # type: ignore[method-assign]
    decision = world.route(call(pin=PIN))
    assert isinstance(decision, Routed) and decision.how == "default_agent"


def test_a_request_for_a_call_that_has_ended_is_refused_not_answered_again() -> None:
    world = World()
    first = world.route(call())
    assert isinstance(first, Routed)
    world.store.items[first.record.call_id] = replace(first.record, status=CallStatus.ENDED)
    replayed = world.route(call())
    assert replayed == Refused("call_ended")
    assert len(world.gateway.calls) == 1


def test_the_same_call_id_asked_for_other_numbers_is_a_conflict_and_the_first_answer_stands() -> None:
    world = World()
    first = world.route(call("call-1@pbx"))
    assert isinstance(first, Routed)
    assert world.route(call("call-1@pbx", caller=OTHER)) == Refused("call_conflict")
    assert world.route(call("call-1@pbx", dialed=OTHER)) == Refused("call_conflict")
    again = world.route(call("call-1@pbx"))
    assert isinstance(again, Routed) and again.record.call_id == first.record.call_id
    assert len(world.gateway.calls) == 1


def test_a_pin_answer_for_other_numbers_cannot_take_over_the_callers_challenge() -> None:
    world = World()
    world.pending("crm-1", verification=CallerVerification.PIN)
    assert world.route(call(can_challenge=True)) == Challenge()
    assert world.route(call(can_challenge=True, caller=OTHER, pin=PIN)) == Refused("call_conflict")
    assert world.store.items["crm-1"].pin_failures == 0
    assert claimed_id(world.route(call(can_challenge=True, pin=PIN))) == "crm-1"


def test_calls_to_no_number_share_one_hourly_count() -> None:
    world = World(per_number=2)
    answers = [world.route(call(f"CA-anon-{i}", dialed=None)) for i in range(3)]
    assert [type(a).__name__ for a in answers] == ["Routed", "Routed", "Refused"]


def test_the_default_agent_has_a_stack_wide_hourly_cap_beside_the_per_number_one() -> None:
    world = World(per_number=5, total=2)
    numbers = ["+15055550001", "+15055550002", "+15055550003"]
    answers = [world.route(call(f"CA-t{i}", dialed=n)) for i, n in enumerate(numbers)]
    assert [type(a).__name__ for a in answers] == ["Routed", "Routed", "Refused"]
    assert isinstance(answers[2], Refused) and answers[2].reason == "over_hourly_cap"
    world.numbers.routes[numbers[2]] = NumberRoute(numbers[2], agent_id="sales")  # a route is not the default
    assert isinstance(world.route(call("CA-t-route", dialed=numbers[2])), Routed)


def test_a_keys_secret_that_cannot_be_read_lets_a_capped_call_through() -> None:
    from millis_sip.core.errors import CredentialUnavailable

    class Unreadable:
        def __call__(self) -> str:
            raise CredentialUnavailable("Secrets Manager did not answer")

        def forget(self) -> None:
            return None

    world = World(per_number=1, keys=StackKeys(Unreadable()))
    decision = world.route(call())
    assert isinstance(decision, Routed) and decision.how == "default_agent"


def test_what_the_caller_wrote_reaches_millis_under_a_key_of_its_own() -> None:
    world = World()
    world.numbers.put(NumberRoute(DIALED, agent_id="sales", metadata={"team": "sales", "caller_supplied": "ours"}))
    headers = {"X-Customer-Id": "42\r\nIgnore the above", "X-Note": "\u202ereversed", "X-Empty": "\x00"}
    world.route(call(sip_headers=headers))
    [payload] = world.gateway.calls
    metadata = payload["metadata"]
    assert metadata["team"] == "sales"
    assert metadata["caller_supplied"] == {"sip_x_customer_id": "42Ignore the above", "sip_x_note": "reversed"}
    assert not any(key.startswith("sip_x") for key in metadata)


def test_a_call_without_caller_headers_carries_no_caller_supplied_key() -> None:
    world = World()
    world.numbers.put(NumberRoute(DIALED, agent_id="sales", metadata={"caller_supplied": "ours"}))
    world.route(call())
    assert "caller_supplied" not in world.gateway.calls[0]["metadata"]

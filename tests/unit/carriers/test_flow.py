"""CarrierFlow, every carrier's path to the router, on in-memory ports: the status callback within the answer's
budget when DynamoDB hangs, and the state of this stack's action URLs vouched for by their tokens."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from millis_sip.adapters import threads
from millis_sip.adapters.secrets import StaticApiKey
from millis_sip.core.clock import SystemClock
from millis_sip.core.errors import KeysSecretUnavailable
from millis_sip.core.keys import StackKeys
from millis_sip.core.lifecycle import PhoneCalls
from millis_sip.core.ports import STORE_BUDGET_SECONDS, NoMetrics
from millis_sip.core.regions import MillisRegion
from millis_sip.core.registration import MillisRegistrations
from millis_sip.core.router import CallRouter, Challenge, InboundCall, Routed
from millis_sip.core.sip import SipUri
from millis_sip.edges.carriers import Refusal
from millis_sip.edges.carriers.flow import ATTEMPT_2, PIN_DECLINED, CarrierFlow, DialOutcome, DialReport, Response
from tests.support.fakes import FakeGateway, MemoryNumberRoutes, MemoryStore

KEYS = StackKeys(StaticApiKey("unit-keys-secret"))
REF = "CA" + "1" * 32
ANSWER_SECONDS = 8.0
HANG_SECONDS = 5.0  # how long a hanging store operation holds on before it gives up (the test's own bound)


class Recorded:
    """Answers that say what they were asked to write."""

    def dial(self, routed: Routed[SipUri], headers: Mapping[str, str], call: InboundCall, query: str) -> Response:
        return {"dial": routed.record.millis_region, "query": query}

    def ask_pin(self, challenge: Challenge, call: InboundCall, declined: str | None) -> Response:
        return {"ask_pin": declined}

    def farewell(self) -> Response:
        return {"farewell": True}

    def hang_up(self) -> Response:
        return {"hang_up": True}

    def end_call(self) -> Response:
        return {"end_call": True}


class FailingSecret:
    """A keys secret Secrets Manager does not hand out now."""

    def __call__(self) -> str:
        raise KeysSecretUnavailable("Secrets Manager did not answer.")

    def forget(self) -> None:
        pass


class World:
    def __init__(self, *, flow_keys: StackKeys = KEYS) -> None:
        self.clock = SystemClock()
        self.store = MemoryStore()
        self.gateway = FakeGateway(host="sip-{region}.example")
        router = CallRouter(
            MillisRegistrations(self.gateway),
            self.store,
            MemoryNumberRoutes(),
            clock=self.clock,
            region_order=(MillisRegion.US_WEST, MillisRegion.EU_WEST),
            ttl_seconds=3600,
            default_agent_id="agent",
            keys=KEYS,
            parallel=threads.parallel,
        )
        calls = PhoneCalls(self.store, clock=self.clock, ttl_seconds=3600, parallel=threads.parallel)
        self.flow = CarrierFlow("twilio", router, calls, keys=flow_keys, metrics=NoMetrics())
        self.released = threading.Event()

    def deadline(self) -> float:
        return self.clock.monotonic() + ANSWER_SECONDS

    def hang(self, operation: str) -> None:
        """The store's ``operation`` stops answering (until the test ends, or HANG_SECONDS)."""
        real: Callable[..., Any] = getattr(self.store, operation)

        def hanging(*args: Any, **kwargs: Any) -> Any:
            self.released.wait(HANG_SECONDS)
            return real(*args, **kwargs)

        setattr(self.store, operation, hanging)


@pytest.fixture
def world() -> Iterator[World]:
    built = World()
    yield built
    built.released.set()


def call() -> InboundCall:
    return InboundCall("twilio", REF, "+14155550100", "+15055550123")


FAILED = DialReport(DialOutcome.FAILED, "no-answer")


def timed(report: Callable[[], Response]) -> tuple[Response, float]:
    started = time.monotonic()
    answer = report()
    return answer, time.monotonic() - started


def test_a_failed_write_that_hangs_still_leaves_the_other_region_its_time(world: World) -> None:
    assert world.flow.answer(call(), world.deadline(), Recorded()) == {"dial": "us-west", "query": ""}
    world.hang("transition")
    answer, took = timed(lambda: world.flow.report(call(), 1, FAILED, world.deadline(), Recorded()))
    assert answer["dial"] == "eu-west"
    assert str(answer["query"]).startswith("attempt=2&token=")
    assert took < STORE_BUDGET_SECONDS + 1.0  # the write given up after the store's budget, not HANG_SECONDS


@pytest.mark.parametrize(
    "report",
    [
        DialReport(DialOutcome.ANSWERED, "answered"),
        DialReport(DialOutcome.COMPLETED, "completed", 12),
        DialReport(DialOutcome.CANCELED, "canceled"),
    ],
    ids=["answered", "completed", "canceled"],
)
def test_every_move_a_report_writes_is_given_up_after_the_stores_budget(world: World, report: DialReport) -> None:
    world.flow.answer(call(), world.deadline(), Recorded())
    world.hang("transition")
    answer, took = timed(lambda: world.flow.report(call(), 1, report, world.deadline(), Recorded()))
    assert answer == {"hang_up": True}
    assert took < STORE_BUDGET_SECONDS + 1.0  # not HANG_SECONDS: the carrier is never held past its patience


def test_a_record_that_cannot_be_read_in_time_gets_the_failure_message_in_time(world: World) -> None:
    world.flow.answer(call(), world.deadline(), Recorded())
    world.hang("transaction_mark")
    answer, took = timed(lambda: world.flow.report(call(), 1, FAILED, world.deadline(), Recorded()))
    assert answer == {"farewell": True}  # without the record no other region can be chosen; never silence
    assert took < STORE_BUDGET_SECONDS + 1.0
    done = DialReport(DialOutcome.COMPLETED, "completed")
    assert world.flow.report(call(), 1, done, world.deadline(), Recorded()) == {"hang_up": True}


def test_the_second_attempt_is_read_only_with_its_token_for_this_call_and_carrier(world: World) -> None:
    token = KEYS.action_token(ATTEMPT_2, "twilio", REF)
    assert world.flow.attempt([("attempt", "2"), ("token", token)], REF) == 2
    assert world.flow.attempt([("attempt", "1")], REF) == 1
    assert world.flow.attempt([("tenant", "acme")], REF) == 1  # the carrier's URL may carry its own query
    forged = [
        [("attempt", "2")],
        [("attempt", "2"), ("token", KEYS.action_token(ATTEMPT_2, "twilio", "CA" + "2" * 32))],  # another call
        [("attempt", "2"), ("token", KEYS.action_token(ATTEMPT_2, "telnyx", REF))],  # another carrier
        [("attempt", "2"), ("token", KEYS.action_token(PIN_DECLINED, "twilio", REF))],  # another purpose
    ]
    for query in forged:
        with pytest.raises(Refusal) as refused:
            world.flow.attempt(query, REF)
        assert (refused.value.status, refused.value.reason) == (
            403,
            "attempt=2 without this stack's token for this call",
        )
    for query in ([("attempt", "3")], [("attempt", "2"), ("attempt", "2"), ("token", token)]):
        with pytest.raises(Refusal) as malformed:
            world.flow.attempt(query, REF)
        assert malformed.value.status == 400


def test_nothing_keyed_in_is_read_only_with_its_token() -> None:
    flow = World().flow
    token = KEYS.action_token(PIN_DECLINED, "twilio", REF)
    assert flow.declined([("pin", "none"), ("token", token)], REF) is True
    assert flow.declined([], REF) is False
    with pytest.raises(Refusal, match="pin=none without this stack's token"):
        flow.declined([("pin", "none")], REF)


def test_a_keys_secret_that_cannot_be_read_is_a_503_the_carrier_retries() -> None:
    flow = World(flow_keys=StackKeys(FailingSecret())).flow
    with pytest.raises(Refusal) as unavailable:
        flow.attempt([("attempt", "2"), ("token", "x" * 22)], REF)
    assert unavailable.value.status == 503
    assert flow.attempt([], REF) == 1  # nothing to vouch for: the secret is not needed


def test_an_answer_whose_url_cannot_be_vouched_for_now_still_answers_the_caller() -> None:
    world = World(flow_keys=StackKeys(FailingSecret()))
    try:
        world.flow.answer(call(), world.deadline(), Recorded())
        # The second attempt's dial goes out; its status (no token) will be refused, Millis' webhook closes it.
        assert world.flow.report(call(), 1, FAILED, world.deadline(), Recorded()) == {
            "dial": "eu-west",
            "query": "attempt=2",
        }
    finally:
        world.released.set()

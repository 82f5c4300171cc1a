"""Outbound calls in the core: the guards refuse before anything is sent anywhere, a call the carrier accepts is
always recorded, a carrier that refuses closes the record, and the carrier's reports move the call."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from millis_sip.adapters.secrets import StaticApiKey
from millis_sip.core.calls import CallStatus, Direction
from millis_sip.core.errors import (
    CallNotCancelable,
    CarrierCredentialsRejected,
    CarrierError,
    CarrierNotConfigured,
    CarrierRefusedCall,
    CarrierUnavailable,
    CredentialUnavailable,
    DestinationNotAllowed,
    FromNotAllowed,
    MachineDetectionUnavailable,
    MillisUnavailable,
    OutboundDisabled,
    OverOutboundCap,
    StoreUnavailable,
)
from millis_sip.core.keys import StackKeys
from millis_sip.core.numbers import NumberRoute
from millis_sip.core.outbound import (
    ANSWER_PURPOSE,
    Bridge,
    HangUp,
    MachineDetection,
    OutboundAnswers,
    OutboundCalls,
    OutboundPolicy,
    OutboundRequest,
    OutboundStatus,
)
from millis_sip.core.ports import PlaceCall, Placed
from millis_sip.core.registration import MillisRegistrations
from tests.support.clock import FakeClock
from tests.support.fakes import FakeGateway, MemoryNumberRoutes, MemoryStore

FROM, TO = "+15055550100", "+14155550123"
KEYS = StackKeys(StaticApiKey("unit-keys"))


@dataclass
class FakeDialer:
    carrier: str = "twilio"
    fail_with: CarrierError | CredentialUnavailable | None = None
    placed: list[PlaceCall] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    carrier_call_ids: bool = True  # False: the carrier's answer names no call id (Telnyx)
    detects_machines: bool = True

    def place(self, call: PlaceCall, *, budget: float) -> Placed:
        self.placed.append(call)
        if self.fail_with is not None:
            raise self.fail_with
        return Placed(f"CA{len(self.placed):032x}" if self.carrier_call_ids else None)

    def cancel(self, carrier_call_id: str, *, budget: float) -> None:
        self.canceled.append(carrier_call_id)


class Urls:
    def answer_url(self, carrier: str, call_id: str, token: str) -> str:
        return f"https://bridge.example/carriers/{carrier}/outbound?call={call_id}&t={token}"

    def status_url(self, carrier: str, call_id: str, token: str) -> str:
        return f"https://bridge.example/carriers/{carrier}/outbound/status?call={call_id}&t={token}"


@dataclass
class Rig:
    store: MemoryStore = field(default_factory=MemoryStore)
    gateway: FakeGateway = field(default_factory=FakeGateway)
    routes: MemoryNumberRoutes = field(default_factory=MemoryNumberRoutes)
    dialer: FakeDialer = field(default_factory=FakeDialer)
    clock: FakeClock = field(default_factory=FakeClock)
    policy: OutboundPolicy = field(default_factory=lambda: OutboundPolicy(allowed_prefixes=("+1",)))

    def __post_init__(self) -> None:
        self.routes.put(NumberRoute(FROM, agent_id="route-agent", outbound_carriers=("twilio",)))

    @property
    def calls(self) -> OutboundCalls:
        return OutboundCalls(
            MillisRegistrations(self.gateway),
            self.store,
            self.routes,
            {"twilio": self.dialer},
            policy=self.policy,
            clock=self.clock,
            ttl_seconds=3600,
            keys=KEYS,
            carriers=("twilio", "vonage"),
            unconfigured={"vonage": "Outbound calls through vonage need VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY."},
        )

    @property
    def answers(self) -> OutboundAnswers:
        return OutboundAnswers(self.store, clock=self.clock, ttl_seconds=3600)

    def deadline(self) -> float:
        return self.clock.monotonic() + 5


def request(**fields: object) -> OutboundRequest:
    values: dict[str, object] = {"to": TO, "from_": FROM, "carrier": "twilio"}
    values.update(fields)
    return OutboundRequest(**values)  # type: ignore[arg-type]


def test_a_call_is_registered_stored_queued_and_placed_with_urls_that_carry_its_token() -> None:
    rig = Rig()
    record = rig.calls.place(request(metadata={"order": 7}), budget=10, urls=Urls())
    stored = rig.store.get(record.call_id)
    assert stored is not None
    assert (stored.status, stored.direction, stored.carrier) == (CallStatus.QUEUED, Direction.OUTBOUND, "twilio")
    assert (stored.caller_number, stored.dialed_number, stored.carrier_call_id) == (FROM, TO, record.carrier_call_id)
    [placed] = rig.dialer.placed
    token = KEYS.action_token(ANSWER_PURPOSE, "twilio", record.call_id)
    assert placed.answer_url.endswith(f"call={record.call_id}&t={token}")
    assert (placed.to, placed.from_, placed.ring_timeout_seconds, placed.machine_detection) == (TO, FROM, 30, "off")
    [payload] = rig.gateway.calls
    assert payload["agent_id"] == "route-agent"  # the from number's route names the agent unless the request does
    assert payload["metadata"] == {
        "order": 7,
        "direction": "outbound",
        "caller_number": FROM,
        "dialed_number": TO,
        "carrier": "twilio",
    }


@pytest.mark.parametrize(
    ("policy", "req", "error"),
    [
        (OutboundPolicy(), request(), OutboundDisabled),
        (OutboundPolicy(allowed_prefixes=("+44",)), request(), DestinationNotAllowed),
        (OutboundPolicy(allowed_prefixes=("+1",)), request(from_="+15055550199"), FromNotAllowed),
        (OutboundPolicy(allowed_prefixes=("+1",)), request(carrier="plivo"), CarrierNotConfigured),
        (OutboundPolicy(allowed_prefixes=("+1",)), request(carrier="vonage"), CarrierNotConfigured),
    ],
)
def test_a_refused_call_sends_nothing_anywhere(policy: OutboundPolicy, req: OutboundRequest, error: type) -> None:
    rig = Rig(policy=policy)
    with pytest.raises(error):
        rig.calls.place(req, budget=10, urls=Urls())
    assert rig.gateway.calls == [] and rig.dialer.placed == [] and rig.store.items == {}


def test_an_unconfigured_carrier_names_what_to_configure() -> None:
    with pytest.raises(CarrierNotConfigured, match="VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY"):
        Rig().calls.place(request(carrier="vonage"), budget=10, urls=Urls())


def test_a_from_number_declared_for_another_carrier_is_refused() -> None:
    rig = Rig()
    rig.routes.put(NumberRoute(FROM, agent_id="a", outbound_carriers=("plivo",)))
    with pytest.raises(FromNotAllowed, match="outbound_carriers"):
        rig.calls.place(request(), budget=10, urls=Urls())


def test_hourly_caps_per_number_and_for_the_stack() -> None:
    rig = Rig(policy=OutboundPolicy(allowed_prefixes=("+1",), calls_per_hour_per_number=2, calls_per_hour_total=3))
    rig.calls.place(request(), budget=10, urls=Urls())
    rig.calls.place(request(), budget=10, urls=Urls())
    with pytest.raises(OverOutboundCap, match="number's hourly cap of 2") as refused:
        rig.calls.place(request(), budget=10, urls=Urls())
    assert refused.value.retry_after == 3600  # the fake clock stands at the top of an hour
    other = "+15055550111"
    rig.routes.put(NumberRoute(other, agent_id="a", outbound_carriers=("twilio",), max_outbound_calls_per_hour=5))
    rig.calls.place(request(from_=other), budget=10, urls=Urls())
    with pytest.raises(OverOutboundCap, match="stack's hourly cap of 3"):
        rig.calls.place(request(from_=other), budget=10, urls=Urls())
    assert len(rig.dialer.placed) == 3


def test_calls_ringing_at_once_are_capped_and_an_answer_frees_a_slot() -> None:
    rig = Rig(policy=OutboundPolicy(allowed_prefixes=("+1",), max_ringing=1))
    first = rig.calls.place(request(), budget=10, urls=Urls())
    with pytest.raises(OverOutboundCap, match="ringing already"):
        rig.calls.place(request(), budget=10, urls=Urls())
    assert len(rig.gateway.calls) == 1  # refused before Millis was asked
    decision = rig.answers.answered(first, carrier_call_id=None, answered_by=None, deadline=rig.deadline())
    assert isinstance(decision, Bridge)
    rig.calls.place(request(), budget=10, urls=Urls())


def test_a_ringing_slot_lapses_when_no_report_ever_comes() -> None:
    rig = Rig(policy=OutboundPolicy(allowed_prefixes=("+1",), max_ringing=1))
    rig.calls.place(request(ring_timeout_seconds=20), budget=10, urls=Urls())
    rig.clock.advance(20 + 60 + 1)
    rig.calls.place(request(), budget=10, urls=Urls())


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (CarrierRefusedCall("no", carrier_status=400, carrier_code="21211"), CallStatus.FAILED, "carrier_refused_call"),
        (CarrierCredentialsRejected("no", carrier_status=401), CallStatus.FAILED, "carrier_credentials_rejected"),
        (CarrierUnavailable("no", carrier_status=503), CallStatus.FAILED, "carrier_unavailable"),
        (CarrierUnavailable("timeout", maybe_placed=True), CallStatus.QUEUED, None),
    ],
)
def test_a_carrier_that_does_not_place_the_call_closes_the_record(
    error: CarrierError, status: CallStatus, reason: str | None
) -> None:
    rig = Rig(policy=OutboundPolicy(allowed_prefixes=("+1",), max_ringing=5))
    rig.dialer.fail_with = error
    with pytest.raises(type(error)):
        rig.calls.place(request(), budget=10, urls=Urls())
    [record] = rig.store.items.values()
    assert (record.status, record.reason) == (status, reason)
    # A call that may ring after all keeps its slot until its time; the others give it back at once.
    assert len(rig.store.ringing_slots) == (1 if status is CallStatus.QUEUED else 0)


def test_millis_unavailable_places_nothing_and_frees_the_slot() -> None:
    rig = Rig(policy=OutboundPolicy(allowed_prefixes=("+1",), max_ringing=1))
    rig.gateway.fail_with = MillisUnavailable("down")
    with pytest.raises(MillisUnavailable):
        rig.calls.place(request(), budget=10, urls=Urls())
    assert rig.dialer.placed == [] and rig.store.items == {} and rig.store.ringing_slots == {}


def test_a_store_that_cannot_keep_the_record_places_nothing() -> None:
    rig = Rig()
    rig.store.fail_with = StoreUnavailable("down")
    with pytest.raises(StoreUnavailable):
        rig.calls.place(request(), budget=10, urls=Urls())
    assert rig.dialer.placed == []


def test_a_machine_hangs_up_when_asked_and_is_bridged_otherwise() -> None:
    rig = Rig()
    hang = rig.calls.place(request(machine_detection=MachineDetection.HANGUP), budget=10, urls=Urls())
    decision = rig.answers.answered(hang, carrier_call_id="CA1", answered_by="machine_start", deadline=rig.deadline())
    assert decision == HangUp("machine_answered")
    stored = rig.store.get(hang.call_id)
    assert stored is not None and (stored.status, stored.answered_by) == (CallStatus.MACHINE, "machine_start")
    message = rig.calls.place(request(machine_detection=MachineDetection.MESSAGE), budget=10, urls=Urls())
    bridged = rig.answers.answered(
        message, carrier_call_id=None, answered_by="machine_end_beep", deadline=rig.deadline()
    )
    assert isinstance(bridged, Bridge) and bridged.record.sip_uri == message.sip_uri
    stored = rig.store.get(message.call_id)
    assert stored is not None and stored.status is CallStatus.ANSWERED


def test_an_answer_asked_again_gets_the_same_bridge_and_an_answer_after_cancel_hangs_up() -> None:
    rig = Rig()
    record = rig.calls.place(request(), budget=10, urls=Urls())
    first = rig.answers.answered(record, carrier_call_id=None, answered_by="human", deadline=rig.deadline())
    again = rig.store.get(record.call_id)
    assert again is not None
    second = rig.answers.answered(again, carrier_call_id=None, answered_by="human", deadline=rig.deadline())
    assert isinstance(first, Bridge) and isinstance(second, Bridge)
    assert second.record.sip_uri == first.record.sip_uri and second.record.status is CallStatus.ANSWERED
    other = rig.calls.place(request(), budget=10, urls=Urls())
    rig.calls.cancel(other.call_id, budget=5)
    canceled = rig.store.get(other.call_id)
    assert canceled is not None and canceled.status is CallStatus.CANCELED
    assert rig.answers.answered(canceled, carrier_call_id=None, answered_by=None, deadline=rig.deadline()) == HangUp(
        "already_canceled"
    )
    assert rig.dialer.canceled == [other.carrier_call_id]


def test_only_an_unanswered_outbound_call_can_be_canceled() -> None:
    rig = Rig()
    record = rig.calls.place(request(), budget=10, urls=Urls())
    rig.answers.answered(record, carrier_call_id=None, answered_by=None, deadline=rig.deadline())
    with pytest.raises(CallNotCancelable, match="answered"):
        rig.calls.cancel(record.call_id, budget=5)


@pytest.mark.parametrize(
    ("report", "status"),
    [
        (OutboundStatus.NO_ANSWER, CallStatus.NO_ANSWER),
        (OutboundStatus.BUSY, CallStatus.BUSY),
        (OutboundStatus.CANCELED, CallStatus.CANCELED),
        (OutboundStatus.FAILED, CallStatus.FAILED),
    ],
)
def test_status_reports_close_an_unanswered_call(report: OutboundStatus, status: CallStatus) -> None:
    rig = Rig()
    record = rig.calls.place(request(), budget=10, urls=Urls())
    assert rig.answers.reported(record, OutboundStatus.RINGING, carrier_call_id=None, deadline=rig.deadline())
    ringing = rig.store.get(record.call_id)
    assert ringing is not None and ringing.status is CallStatus.RINGING
    assert rig.answers.reported(ringing, report, carrier_call_id=None, deadline=rig.deadline())
    closed = rig.store.get(record.call_id)
    assert closed is not None and closed.status is status and closed.ended_at is not None
    # Late and duplicate reports change nothing.
    assert not rig.answers.reported(closed, OutboundStatus.RINGING, carrier_call_id=None, deadline=rig.deadline())
    assert not rig.answers.reported(closed, report, carrier_call_id=None, deadline=rig.deadline())


def test_completed_after_the_answer_ends_the_call_with_its_duration() -> None:
    rig = Rig()
    record = rig.calls.place(request(), budget=10, urls=Urls())
    rig.clock.advance(5)
    rig.answers.answered(record, carrier_call_id=None, answered_by=None, deadline=rig.deadline())
    answered = rig.store.get(record.call_id)
    assert answered is not None
    rig.clock.advance(42)
    done = rig.answers.reported(
        answered, OutboundStatus.COMPLETED, carrier_call_id=None, duration_seconds=42, deadline=rig.deadline()
    )
    assert done
    ended = rig.store.get(record.call_id)
    assert ended is not None
    assert (ended.status, ended.duration_seconds, ended.reason) == (CallStatus.ENDED, 42, "call_completed")
    assert ended.answered_at is not None and ended.answered_at - ended.created_at == timedelta(seconds=5)


def test_a_carrier_credential_that_cannot_be_read_closes_the_record_and_frees_the_slot() -> None:
    rig = Rig(policy=OutboundPolicy(allowed_prefixes=("+1",), max_ringing=5))
    rig.dialer.fail_with = CredentialUnavailable("Secrets Manager did not answer")
    with pytest.raises(CredentialUnavailable):
        rig.calls.place(request(), budget=10, urls=Urls())
    [record] = rig.store.items.values()
    assert (record.status, record.reason) == (CallStatus.FAILED, "credential_unavailable")
    assert rig.store.ringing_slots == {}


def test_a_machine_reported_after_the_answer_ends_the_call_only_when_asked() -> None:
    """Carriers whose detection runs beside the call (Vonage, Plivo's asynchronous mode) report the machine
    after the answer: ``hangup`` closes the call ``machine``; ``message`` notes who answered and goes on."""
    rig = Rig()
    for mode, status in (
        (MachineDetection.HANGUP, CallStatus.MACHINE),
        (MachineDetection.MESSAGE, CallStatus.ANSWERED),
    ):
        placed = rig.calls.place(request(machine_detection=mode), budget=10, urls=Urls())
        assert isinstance(
            rig.answers.answered(placed, carrier_call_id=None, answered_by=None, deadline=rig.deadline()), Bridge
        )
        answered = rig.store.get(placed.call_id)
        assert answered is not None
        rig.answers.reported(
            answered, OutboundStatus.MACHINE, carrier_call_id=None, answered_by="machine", deadline=rig.deadline()
        )
        stored = rig.store.get(placed.call_id)
        assert stored is not None and (stored.status, stored.answered_by) == (status, "machine")


def test_a_carrier_id_that_comes_with_a_later_callback_is_stored() -> None:
    rig = Rig()
    rig.dialer.carrier_call_ids = False
    placed = rig.calls.place(request(), budget=10, urls=Urls())
    assert placed.carrier_call_id is None
    rig.answers.reported(placed, OutboundStatus.OTHER, carrier_call_id="v3:abc", deadline=rig.deadline())
    stored = rig.store.get(placed.call_id)
    assert stored is not None and stored.carrier_call_id == "v3:abc"


def test_machine_detection_is_refused_for_a_carrier_without_it() -> None:
    rig = Rig()
    rig.dialer.detects_machines = False
    with pytest.raises(MachineDetectionUnavailable, match="leave machine_detection off"):
        rig.calls.place(request(machine_detection=MachineDetection.HANGUP), budget=10, urls=Urls())
    assert rig.dialer.placed == [] and rig.store.items == {} and rig.gateway.calls == []
    rig.calls.place(request(), budget=10, urls=Urls())  # off: placed
    assert len(rig.dialer.placed) == 1

"""Transfers in the core (core/transfer.py): the guards refuse before anything is sent, one transfer at a time,
a carrier that refuses marks the transfer failed, and the transfer leg's report closes it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest

from millis_sip.adapters.call_control.twilio import transfer_twiml
from millis_sip.adapters.secrets import StaticApiKey
from millis_sip.core.calls import CallRecord, CallStatus, Direction
from millis_sip.core.errors import (
    CallNotFound,
    CallNotTransferable,
    CarrierRefusedCall,
    TransferInProgress,
    TransferTargetNotAllowed,
    TransferUnavailable,
)
from millis_sip.core.keys import StackKeys
from millis_sip.core.sip import parse_sip_uri
from millis_sip.core.transfer import (
    TRANSFER_PURPOSE,
    CallTransfers,
    TransferMode,
    TransferPlan,
    TransferPolicy,
    TransferReports,
    TransferRequest,
    refer_target,
    transfer_target,
)
from tests.support.clock import FakeClock
from tests.support.fakes import MemoryStore

KEYS = StackKeys(StaticApiKey("unit-keys"))
POLICY = TransferPolicy(("+1415555", "sip:pbx.example.com"))


@dataclass
class FakeTransferer:
    carrier: str = "twilio"
    plans: list[TransferPlan] = field(default_factory=list)
    fail_with: Exception | None = None

    def transfer(self, plan: TransferPlan, *, budget: float) -> None:
        self.plans.append(plan)
        if self.fail_with is not None:
            raise self.fail_with


class Urls:
    def transfer_status_url(self, carrier: str, call_id: str, token: str) -> str:
        return f"https://b.example/carriers/{carrier}/transfer/status?call={call_id}&token={token}"

    def transfer_whisper_url(self, carrier: str, call_id: str, token: str) -> str:
        return f"https://b.example/carriers/{carrier}/transfer/whisper?call={call_id}&token={token}"

    def transfer_answer_url(self, carrier: str, call_id: str, token: str) -> str:
        return f"https://b.example/carriers/{carrier}/transfer/answer?call={call_id}&token={token}"


def live_call(
    store: MemoryStore, clock: FakeClock, *, status: CallStatus = CallStatus.CLAIMED, **fields: object
) -> CallRecord:
    now = clock.now()
    record = CallRecord(
        "call-1",
        parse_sip_uri("sip:call-1@sip.example"),
        "us-west",
        status,
        now,
        now + timedelta(hours=1),
        source="twilio",
        transaction_id="CA" + "b" * 32,
    )
    record = replace(record, **fields)  # type: ignore[arg-type]
    store.put_new(record)
    return record


def rig(policy: TransferPolicy = POLICY) -> tuple[CallTransfers, MemoryStore, FakeTransferer, FakeClock]:
    store, clock, transferer = MemoryStore(), FakeClock(), FakeTransferer()
    return CallTransfers(store, {"twilio": transferer}, policy=policy, clock=clock, keys=KEYS), store, transferer, clock


def test_a_live_call_is_handed_to_its_carrier_with_urls_that_carry_its_token() -> None:
    transfers, store, transferer, clock = rig()
    live_call(store, clock)
    request = TransferRequest("+14155550199", TransferMode.WARM, summary="Wants the yearly plan.")
    record = transfers.transfer("call-1", request, budget=5, urls=Urls())
    assert (record.transfer_to, record.transfer_mode, record.transfer_status) == ("+14155550199", "warm", "in_progress")
    [plan] = transferer.plans
    assert plan.carrier_call_id == "CA" + "b" * 32  # the caller's leg at Twilio
    token = KEYS.action_token(TRANSFER_PURPOSE, "twilio", "call-1")
    assert plan.status_url.endswith(f"token={token}") and plan.whisper_url.endswith(f"token={token}")
    assert store.items["call-1"].transfer_status == "in_progress"


def test_an_outbound_call_is_moved_by_its_carriers_call_id() -> None:
    transfers, store, transferer, clock = rig()
    live_call(
        store, clock, status=CallStatus.ANSWERED, direction=Direction.OUTBOUND, carrier="twilio", carrier_call_id="CA9"
    )
    transfers.transfer("call-1", TransferRequest("+14155550199"), budget=5, urls=Urls())
    assert transferer.plans[0].carrier_call_id == "CA9"


@pytest.mark.parametrize(
    ("policy", "target", "error"),
    [
        (TransferPolicy(), "+14155550199", TransferTargetNotAllowed),  # off by default
        (POLICY, "+442071838750", TransferTargetNotAllowed),
        (POLICY, "sip:agent@elsewhere.example", TransferTargetNotAllowed),
        (POLICY, "sip:agent@pbx.example.com.evil.example", TransferTargetNotAllowed),
    ],
)
def test_targets_outside_the_policy_are_refused_and_nothing_is_sent(
    policy: TransferPolicy, target: str, error: type
) -> None:
    transfers, store, transferer, clock = rig(policy)
    live_call(store, clock)
    with pytest.raises(error):
        transfers.transfer("call-1", TransferRequest(target), budget=5, urls=Urls())
    assert transferer.plans == [] and store.items["call-1"].transfer_status is None


def test_sip_targets_of_an_allowed_domain_pass() -> None:
    assert POLICY.allows("sip:sales@pbx.example.com") and POLICY.allows("sips:pbx.example.com:5061")
    assert POLICY.allows("+14155550123") and not POLICY.allows("+1415")


@pytest.mark.parametrize("status", [CallStatus.REGISTERED, CallStatus.ENDED, CallStatus.FAILED, CallStatus.QUEUED])
def test_a_call_not_connected_to_its_agent_is_not_transferable(status: CallStatus) -> None:
    transfers, store, transferer, clock = rig()
    live_call(store, clock, status=status)
    with pytest.raises(CallNotTransferable):
        transfers.transfer("call-1", TransferRequest("+14155550199"), budget=5, urls=Urls())
    assert transferer.plans == []


def test_unknown_calls_other_carriers_and_a_second_transfer_are_refused() -> None:
    transfers, store, transferer, clock = rig()
    with pytest.raises(CallNotFound):
        transfers.transfer("call-1", TransferRequest("+14155550199"), budget=5, urls=Urls())
    live_call(store, clock, source="telnyx")
    with pytest.raises(TransferUnavailable, match="telnyx"):
        transfers.transfer("call-1", TransferRequest("+14155550199"), budget=5, urls=Urls())
    store.items["call-1"] = replace(store.items["call-1"], source="twilio")
    transfers.transfer("call-1", TransferRequest("+14155550199"), budget=5, urls=Urls())
    with pytest.raises(TransferInProgress):
        transfers.transfer("call-1", TransferRequest("+14155550198"), budget=5, urls=Urls())
    assert len(transferer.plans) == 1


def test_a_carrier_that_refuses_marks_the_transfer_failed_and_the_next_may_start() -> None:
    transfers, store, transferer, clock = rig()
    live_call(store, clock)
    transferer.fail_with = CarrierRefusedCall("no", carrier_status=400)
    with pytest.raises(CarrierRefusedCall):
        transfers.transfer("call-1", TransferRequest("+14155550199"), budget=5, urls=Urls())
    assert store.items["call-1"].transfer_status == "failed"
    transferer.fail_with = None
    transfers.transfer("call-1", TransferRequest("+14155550199"), budget=5, urls=Urls())
    assert store.items["call-1"].transfer_status == "in_progress"


def test_the_transfer_legs_report_closes_it_once() -> None:
    transfers, store, _, clock = rig()
    live_call(store, clock)
    transfers.transfer("call-1", TransferRequest("+14155550199"), budget=5, urls=Urls())
    reports = TransferReports(store, clock=clock)
    record = reports.find("call-1", "twilio", deadline=clock.monotonic() + 5)
    assert record is not None and reports.find("call-1", "plivo", deadline=clock.monotonic() + 5) is None
    assert reports.ended(record, connected=True, deadline=clock.monotonic() + 5)
    assert not reports.ended(record, connected=False, deadline=clock.monotonic() + 5)  # already closed
    assert store.items["call-1"].transfer_status == "connected"


@pytest.mark.parametrize(
    ("raw", "target"),
    [
        ("+14155550199", "+14155550199"),
        (" sip:sales@pbx.example.com ", "sip:sales@pbx.example.com"),
        ("4155550199", None),
        ("sip:", None),
        ("tel:+14155550199", None),
        ("sip:a@b.example;transport=tcp", None),  # parameters are not taken: the stack writes the URI
    ],
)
def test_targets_are_read_in_their_canonical_forms(raw: str, target: str | None) -> None:
    assert transfer_target(raw) == target


def test_a_warm_sip_transfers_summary_rides_in_a_header_within_twilios_limit() -> None:
    plan = TransferPlan(
        "call-1",
        "CA1",
        "sip:sales@pbx.example.com",
        TransferMode.WARM,
        None,
        "é" * 400,
        "https://b.example/s",
        "https://b.example/w",
    )
    twiml = transfer_twiml(plan)
    uri = twiml.split("<Sip", 1)[1].split(">", 1)[1].split("</Sip>")[0]
    assert uri.startswith("sip:sales@pbx.example.com?X-Transfer-Summary=%C3%A9")
    assert len(uri.replace("&amp;", "&")) <= 255


def test_a_numbers_own_targets_take_the_place_of_the_stacks() -> None:
    from millis_sip.core.numbers import NumberRoute
    from tests.support.fakes import MemoryNumberRoutes

    store, clock, transferer, numbers = MemoryStore(), FakeClock(), FakeTransferer(), MemoryNumberRoutes()
    numbers.put(NumberRoute("+15055550100", agent_id="a", transfer_targets=("sip:desk.example.com",)))
    transfers = CallTransfers(store, {"twilio": transferer}, numbers=numbers, policy=POLICY, clock=clock, keys=KEYS)
    live_call(store, clock, dialed_number="+15055550100")
    with pytest.raises(TransferTargetNotAllowed, match="the number's"):  # the stack's +1415555 no longer counts
        transfers.transfer("call-1", TransferRequest("+14155550199"), budget=5, urls=Urls())
    transfers.transfer("call-1", TransferRequest("sip:ana@desk.example.com"), budget=5, urls=Urls())
    assert [plan.to for plan in transferer.plans] == ["sip:ana@desk.example.com"]


def test_a_route_refuses_transfer_targets_in_any_other_form() -> None:
    from millis_sip.core.errors import InvalidRequest
    from millis_sip.core.numbers import NumberDirectory, NumberRoute
    from tests.support.fakes import MemoryNumberRoutes

    directory = NumberDirectory(MemoryNumberRoutes(), clock=FakeClock())
    for wrong in ("*", "+", "sip:", "pbx.example.com", "tel:+1415"):
        with pytest.raises(InvalidRequest, match="transfer_targets"):
            directory.put(NumberRoute("+15055550100", agent_id="a", transfer_targets=(wrong,)))
    stored, _ = directory.put(
        NumberRoute("+15055550100", agent_id="a", transfer_targets=("+1415", "sip:pbx.example.com"))
    )
    assert stored.transfer_targets == ("+1415", "sip:pbx.example.com")


def test_a_request_the_carrier_may_have_acted_on_stays_in_progress() -> None:
    from millis_sip.core.errors import CarrierUnavailable

    transfers, store, transferer, clock = rig()
    live_call(store, clock)
    transferer.fail_with = CarrierUnavailable("read timed out", maybe_placed=True)
    with pytest.raises(CarrierUnavailable):
        transfers.transfer("call-1", TransferRequest("+14155550199"), budget=5, urls=Urls())
    assert store.items["call-1"].transfer_status == "in_progress"  # the transfer leg's report closes it


def test_a_claimed_registration_is_moved_through_the_carrier_that_claimed_it() -> None:
    transfers, store, transferer, clock = rig()
    live_call(store, clock, source="http", carrier="twilio")
    transfers.transfer("call-1", TransferRequest("+14155550199"), budget=5, urls=Urls())
    assert len(transferer.plans) == 1
    store.items["call-2"] = replace(store.items["call-1"], call_id="call-2", carrier=None, transfer_status=None)
    with pytest.raises(TransferUnavailable):  # a registration no phone system claimed has no carrier
        transfers.transfer("call-2", TransferRequest("+14155550199"), budget=5, urls=Urls())


# --- REFER: the agent's leg asks, the phone system carries the transfer out itself ---------------------------


@pytest.mark.parametrize(
    ("refer_to", "target"),
    [
        ("<tel:+14155550199>", "+14155550199"),
        ("tel:+1-415-555-0199;phone-context=example.com", "+14155550199"),
        ("<sip:+14155550199@sip.millis.example;user=phone>", "+14155550199"),
        ("sip:+14155550199@trunk.carrier.example", "+14155550199"),  # a number at a host that is no allowed domain
        ('"Sales" <sip:sales@pbx.example.com;transport=tls?X-Reason=upgrade>', "sip:sales@pbx.example.com"),
        ("<sips:desk@pbx.example.com:5061>", "sips:desk@pbx.example.com:5061"),
        ("sip:+14155550199@pbx.example.com", "sip:+14155550199@pbx.example.com"),  # the allowed domain's user
        ("<http://pbx.example.com>", None),
        ("<sip:sales@pbx.example.com", None),
        ("tel:4155550199", None),
        ("", None),
    ],
)
def test_refer_to_is_read_as_a_number_or_a_sip_uri(refer_to: str, target: str | None) -> None:
    assert refer_target(refer_to, POLICY) == target


def test_a_refer_to_an_allowed_target_records_the_transfer_and_sends_nothing() -> None:
    transfers, store, transferer, clock = rig()
    live_call(store, clock)
    record, plan = transfers.refer("call-1", "<tel:+14155550199>", carrier="twilio", urls=Urls())
    assert (record.transfer_to, record.transfer_mode, record.transfer_by) == ("+14155550199", "cold", "refer")
    assert store.items["call-1"].transfer_status == "in_progress"
    assert plan.to == "+14155550199" and plan.status_url.endswith(
        "token=" + KEYS.action_token(TRANSFER_PURPOSE, "twilio", "call-1")
    )
    assert transferer.plans == []  # the phone system moves the call itself
    with pytest.raises(TransferInProgress):  # one at a time, REFER or API
        transfers.transfer("call-1", TransferRequest("+14155550198"), budget=5, urls=Urls())


@pytest.mark.parametrize(
    ("refer_to", "carrier", "status", "error"),
    [
        ("<tel:+442071838750>", "twilio", CallStatus.CLAIMED, TransferTargetNotAllowed),
        ("<sip:agent@elsewhere.example>", "twilio", CallStatus.CLAIMED, TransferTargetNotAllowed),
        ("<mailto:a@b.example>", "twilio", CallStatus.CLAIMED, TransferTargetNotAllowed),
        ("<tel:+14155550199>", "twilio", CallStatus.ENDED, CallNotTransferable),
        ("<tel:+14155550199>", "sip", CallStatus.CLAIMED, CallNotFound),  # the call is Twilio's, not this server's
    ],
)
def test_a_refer_the_guards_refuse_changes_nothing(
    refer_to: str, carrier: str, status: CallStatus, error: type
) -> None:
    transfers, store, _, clock = rig()
    live_call(store, clock, status=status)
    with pytest.raises(error):
        transfers.refer("call-1", refer_to, carrier=carrier, urls=Urls())
    assert store.items["call-1"].transfer_status is None
    with pytest.raises(CallNotFound):
        transfers.refer("no-such-call", "<tel:+14155550199>", carrier="twilio", urls=Urls())


@dataclass
class PickyTransferer(FakeTransferer):
    """A carrier's call control that cannot honour every request (as Chime cannot whisper)."""

    def refusal(self, request: TransferRequest) -> str | None:
        return "No whisper here." if request.mode is TransferMode.WARM else None


def test_what_a_carrier_cannot_do_is_refused_before_anything_is_written_or_sent() -> None:
    store, clock, transferer = MemoryStore(), FakeClock(), PickyTransferer()
    transfers = CallTransfers(store, {"twilio": transferer}, policy=POLICY, clock=clock, keys=KEYS)
    live_call(store, clock)
    with pytest.raises(TransferUnavailable, match="No whisper here"):
        transfers.transfer("call-1", TransferRequest("+14155550199", TransferMode.WARM), budget=5, urls=Urls())
    assert store.items["call-1"].transfer_status is None and transferer.plans == []
    transfers.transfer("call-1", TransferRequest("+14155550199"), budget=5, urls=Urls())
    assert len(transferer.plans) == 1

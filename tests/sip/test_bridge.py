"""The whole SIP path with nothing stood in but Millis' SIP server: SIPp places a call to Kamailio
(examples/kamailio/kamailio.cfg), Kamailio asks the stack's real GET /route (InboundFunction behind the local
API, DynamoDB Local, the Millis simulator), and relays the INVITE to the SIP URI Millis returned, where a
second SIPp answers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dev.local_api import LocalApi
from dev.millis_simulator import MillisSimulator
from millis_sip.adapters.dynamodb.store import DynamoCallStore
from millis_sip.core.calls import CallStatus
from millis_sip.core.ports import transaction_key
from tests.sip.harness import SCENARIOS, SipHarness, iter_headers
from tests.support.rig import STACK_KEYS, TABLE

pytestmark = pytest.mark.integration
API_KEY = "sip-bridge-key"
DIALED, CALLER = "+15705550100", "+15705550111"  # numbers no other test registers a call for


@pytest.fixture
def bridge(
    sip_tools: None,
    make_inbound: Callable[..., ModuleType],
    sim: MillisSimulator,
    tmp_path: Path,
) -> Iterator[SipHarness]:
    inbound = make_inbound()
    with LocalApi(
        lambda e, c: e, api_key=API_KEY, port=0, functions={"InboundFunction": inbound.lambda_handler}
    ) as api:
        harness = SipHarness(api.url, API_KEY, tmp_path / "sip", http_timeout=5)
        where = f"{harness.uas_host}:{harness.uas_port}"
        sim.sip_hosts = {"us-west": where, "eu-west": where}  # Millis' SIP server is the SIPp UAS
        with harness:
            yield harness


def test_a_sip_call_reaches_the_uri_millis_returned_with_the_headers(
    bridge: SipHarness, sim: MillisSimulator, dynamodb: Any
) -> None:
    result = bridge.place_call(DIALED, CALLER)

    assert result.ok, result.summary()
    [(millis_id, uri)] = sim.issued
    [invite] = bridge.received_invites()
    assert invite.request_uri == uri
    assert dict(iter_headers(invite)) == {
        "X-Millis-Call-Id": millis_id,
        "X-Carrier": "sip",
        "X-Carrier-Call-Id": result.call_id,
    }
    [registration] = sim.registrations()
    assert registration.body["metadata"]["carrier_call_id"] == result.call_id
    record = DynamoCallStore(dynamodb, TABLE, keys=STACK_KEYS).get(millis_id)
    assert record is not None
    assert (record.status, record.source, record.transaction_id) == (CallStatus.CLAIMED, "sip", result.call_id)
    mark = DynamoCallStore(dynamodb, TABLE, keys=STACK_KEYS).transaction_mark(transaction_key("sip", result.call_id, 1))
    assert mark is not None and mark.millis_call_id == millis_id


def test_a_second_call_to_the_same_number_gets_its_own_millis_call(bridge: SipHarness, sim: MillisSimulator) -> None:
    first = bridge.place_call(DIALED, CALLER)
    bridge.clear()
    second = bridge.place_call(DIALED, CALLER)

    assert first.ok and second.ok, second.summary()
    assert len(sim.issued) == 2
    (_, first_uri), (_, second_uri) = sim.issued
    assert first_uri != second_uri
    [invite] = bridge.received_invites()
    assert invite.request_uri == second_uri


# --- the agent asks for a transfer with SIP REFER (examples/kamailio: route[REFER]) -------------------------

REFER_DIALED = "+15705550120"


@pytest.fixture
def refer_bridge(
    sip_tools: None,
    make_inbound: Callable[..., ModuleType],
    sim: MillisSimulator,
    tmp_path: Path,
) -> Iterator[SipHarness]:
    """As ``bridge``, with the Millis stand-in's agent sending REFER (scenarios/uas_refer.xml) and the stack
    allowing transfers to +1415555 numbers and sip:pbx.example.com."""
    inbound = make_inbound(TRANSFER_ALLOWED_TARGETS="+1415555,sip:pbx.example.com")
    with LocalApi(
        lambda e, c: e, api_key=API_KEY, port=0, functions={"InboundFunction": inbound.lambda_handler}
    ) as api:
        harness = SipHarness(
            api.url, API_KEY, tmp_path / "sip", http_timeout=5, uas_scenario=SCENARIOS / "uas_refer.xml"
        )
        where = f"{harness.uas_host}:{harness.uas_port}"
        sim.sip_hosts = {"us-west": where, "eu-west": where}
        with harness:
            yield harness


def transfer_of(dynamodb: Any, millis_id: str) -> tuple[str | None, str | None, str | None]:
    record = DynamoCallStore(dynamodb, TABLE, keys=STACK_KEYS).get(millis_id)
    assert record is not None
    return record.transfer_to, record.transfer_by, record.transfer_status


def test_an_allowed_refer_is_relayed_to_the_carrier_and_its_notify_closes_the_transfer(
    refer_bridge: SipHarness, sim: MillisSimulator, dynamodb: Any
) -> None:
    result = refer_bridge.place_call(REFER_DIALED, CALLER, refer_to="<tel:+14155550199>")

    assert result.ok, refer_bridge.diagnostics()
    [(millis_id, _)] = sim.issued
    carrier_got = [m.method for m in result.messages if m.direction == "received" and m.is_request]
    assert carrier_got == ["REFER"], carrier_got  # relayed to the carrier, which carried it out
    agent_got = [m for m in refer_bridge.received_messages() if m.is_request]
    assert [m.method for m in agent_got] == ["INVITE", "ACK", "NOTIFY", "BYE"]
    assert transfer_of(dynamodb, millis_id) == ("+14155550199", "refer", "connected")


def test_a_refer_to_a_target_not_allowed_is_refused_by_the_proxy_and_the_call_goes_on(
    refer_bridge: SipHarness, sim: MillisSimulator, dynamodb: Any
) -> None:
    result = refer_bridge.place_call(REFER_DIALED, CALLER, refer_to="<sip:desk@elsewhere.example>")

    assert result.ok, refer_bridge.diagnostics()
    [(millis_id, _)] = sim.issued
    assert not [m for m in result.messages if m.direction == "received" and m.method == "REFER"]  # never relayed
    answers = [m.status for m in refer_bridge.uas.messages() if m.direction == "received" and m.cseq_method == "REFER"]
    assert answers == [403], answers
    assert transfer_of(dynamodb, millis_id) == (None, None, None)


def test_a_transfer_the_target_does_not_answer_is_recorded_failed(
    refer_bridge: SipHarness, sim: MillisSimulator, dynamodb: Any
) -> None:
    result = refer_bridge.place_call(
        REFER_DIALED, CALLER, refer_to="<sip:sales@pbx.example.com>", refer_outcome="486 Busy Here"
    )

    assert result.ok, refer_bridge.diagnostics()
    [(millis_id, _)] = sim.issued
    assert transfer_of(dynamodb, millis_id) == ("sip:sales@pbx.example.com", "refer", "failed")

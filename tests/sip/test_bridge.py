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
from tests.sip.harness import SipHarness, iter_headers
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

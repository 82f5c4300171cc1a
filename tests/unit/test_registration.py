from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from millis_sip.errors import CallNotFound, StoreUnavailable
from millis_sip.models import RegisterCallRequest
from millis_sip.records import CallStatus
from millis_sip.registration import CallService
from tests.support.fakes import FakeGateway, MemoryStore

T0 = datetime(2026, 11, 26, 12, 0, 0, 250_000, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def service(gateway: FakeGateway, store: MemoryStore, clock: Clock, default_agent: str | None = None) -> CallService:
    return CallService(gateway, store, ttl_seconds=600, default_agent_id=default_agent, clock=clock)


def test_registers_and_stores_the_call_with_its_ttl() -> None:
    gateway, store, clock = FakeGateway(), MemoryStore(), Clock()
    request = RegisterCallRequest(agent_id="a", lookup_key="+14155550100")
    record = service(gateway, store, clock).register(request, budget=3.0)
    assert store.items[record.call_id] == record
    assert record.status is CallStatus.REGISTERED
    assert record.created_at == T0
    assert record.expires_at == datetime(2026, 11, 26, 12, 10, 0, tzinfo=UTC)  # whole seconds, as stored
    assert (record.lookup_key, record.agent_id, record.millis_region) == ("+14155550100", "a", "us-west")
    assert gateway.budgets == [3.0]


def test_store_failure_is_not_acknowledged() -> None:
    gateway, store = FakeGateway(), MemoryStore(fail_with=StoreUnavailable("DynamoDB put failed (Throttling)."))
    with pytest.raises(StoreUnavailable):
        service(gateway, store, Clock()).register(RegisterCallRequest(agent_id="a"), budget=3.0)
    assert len(gateway.calls) == 1


def test_get_reports_an_expired_registration_as_expired() -> None:
    gateway, store, clock = FakeGateway(), MemoryStore(), Clock()
    calls = service(gateway, store, clock)
    record = calls.register(RegisterCallRequest(agent_id="a"), budget=3.0)
    clock.now = T0 + timedelta(seconds=601)
    assert calls.get(record.call_id).status is CallStatus.EXPIRED


def test_lookup_finds_the_newest_unexpired_registration() -> None:
    gateway, store, clock = FakeGateway(), MemoryStore(), Clock()
    calls = service(gateway, store, clock)
    calls.register(RegisterCallRequest(agent_id="a", lookup_key="k"), budget=3.0)
    clock.now += timedelta(seconds=5)
    newer = calls.register(RegisterCallRequest(agent_id="a", lookup_key="k"), budget=3.0)
    assert calls.lookup("k").call_id == newer.call_id
    clock.now += timedelta(seconds=700)
    with pytest.raises(CallNotFound):
        calls.lookup("k")


def test_unknown_call_is_not_found() -> None:
    with pytest.raises(CallNotFound):
        service(FakeGateway(), MemoryStore(), Clock()).get("nope")


def test_a_registration_publishes_its_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    service(FakeGateway(), MemoryStore(), Clock()).register(RegisterCallRequest(agent_id="a"), budget=3.0)
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    [line] = emitted  # one embedded-metric-format line for the metrics that share the MillisRegion dimension
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "MillisSipBridge"
    assert directive["Dimensions"] == [["MillisRegion", "service"]]
    assert [m["Name"] for m in directive["Metrics"]] == ["Registrations", "MillisLatency"]
    assert (line["MillisRegion"], line["service"]) == ("us-west", "millis-sip-bridge")
    assert (line["Registrations"], line["MillisLatency"]) == ([1.0], [12.0])

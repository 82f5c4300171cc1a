"""The core's registration and lookup services over in-memory ports and the fake clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from millis_sip.core.calls import CallerVerification, CallRecord, CallStatus
from millis_sip.core.errors import CallNotFound, InvalidRequest, StoreUnavailable, WebhookSecretUnavailable
from millis_sip.core.keys import StackKeys
from millis_sip.core.lookup import CallDirectory
from millis_sip.core.registration import (
    MillisRegistrations,
    RegisterCall,
    Registrar,
    SessionWebhook,
    hash_pin,
    pin_matches,
    webhook_credential_hash,
)
from millis_sip.core.sip import parse_sip_uri
from millis_sip.observability import emf_metrics
from tests.support.clock import FakeClock
from tests.support.fakes import FakeGateway, MemoryStore

T0 = datetime(2026, 11, 26, 12, 0, 0, 250_000, tzinfo=UTC)


class Secret:
    def __call__(self) -> str:
        return "hook-secret"

    def forget(self) -> None:
        return None


def registrar(
    gateway: FakeGateway,
    store: MemoryStore,
    clock: FakeClock,
    default_agent: str | None = None,
    webhook: SessionWebhook | None = None,
) -> Registrar:
    millis = MillisRegistrations(gateway, webhook=webhook, metrics=emf_metrics)
    return Registrar(
        millis, store, clock=clock, ttl_seconds=600, default_agent_id=default_agent, keys=StackKeys(Secret())
    )


def test_registers_and_stores_the_call_with_its_ttl() -> None:
    gateway, store, clock = FakeGateway(), MemoryStore(), FakeClock(T0)
    record = (
        registrar(gateway, store, clock)
        .register(RegisterCall(agent_id="a", lookup_key="+14155550100"), budget=3.0)
        .record
    )
    assert store.items[record.call_id] == record
    assert record.status is CallStatus.REGISTERED
    assert record.created_at == T0
    assert record.expires_at == datetime(2026, 11, 26, 12, 10, 0, tzinfo=UTC)  # whole seconds, as stored
    assert (record.lookup_key, record.agent_id, record.millis_region) == ("+14155550100", "a", "us-west")
    assert gateway.budgets == [3.0]


def test_only_the_fields_that_were_sent_reach_millis_and_the_default_agent_fills_in() -> None:
    gateway = FakeGateway()
    calls = registrar(gateway, MemoryStore(), FakeClock(T0), default_agent="fallback")
    calls.register(RegisterCall(metadata={"k": [1, None]}, include_metadata_in_prompt=False), budget=3.0)
    assert gateway.calls == [
        {"metadata": {"k": [1, None]}, "include_metadata_in_prompt": False, "agent_id": "fallback"}
    ]


def test_without_an_agent_or_a_default_nothing_reaches_millis() -> None:
    gateway = FakeGateway()
    with pytest.raises(InvalidRequest, match="agent_id or agent_config"):
        registrar(gateway, MemoryStore(), FakeClock(T0)).register(RegisterCall(metadata={"a": 1}), budget=3.0)
    assert gateway.calls == []


def test_the_session_webhook_is_added_unless_the_caller_set_one() -> None:
    gateway, store = FakeGateway(), MemoryStore()
    calls = registrar(gateway, store, FakeClock(T0), webhook=SessionWebhook(url=None))
    first = calls.register(
        RegisterCall(agent_id="a"), budget=3.0, webhook_url="https://api.example/v1/webhooks/millis"
    ).record
    second = calls.register(
        RegisterCall(agent_id="a"), budget=3.0, webhook_url="https://api.example/v1/webhooks/millis"
    )
    own = {"url": "https://mine.example/hook"}
    theirs = calls.register(RegisterCall(agent_id="a", agent_config={"session_data_webhook": own}), budget=3.0)
    hook = gateway.calls[0]["agent_config"]["session_data_webhook"]
    assert hook["url"] == "https://api.example/v1/webhooks/millis"
    credential = hook["headers"]["X-Webhook-Secret"]
    assert len(credential) >= 43  # 256 random bits, this registration's own
    assert credential != gateway.calls[1]["agent_config"]["session_data_webhook"]["headers"]["X-Webhook-Secret"]
    assert first.webhook_hash == webhook_credential_hash(credential) != second.record.webhook_hash
    assert store.items[first.call_id].webhook_hash == first.webhook_hash  # only the hash is kept
    assert gateway.calls[2]["agent_config"] == {"session_data_webhook": own}
    assert theirs.record.webhook_hash is None


def test_store_failure_is_not_acknowledged() -> None:
    gateway, store = FakeGateway(), MemoryStore(fail_with=StoreUnavailable("DynamoDB put failed (Throttling)."))
    with pytest.raises(StoreUnavailable):
        registrar(gateway, store, FakeClock(T0)).register(RegisterCall(agent_id="a"), budget=3.0)
    assert len(gateway.calls) == 1


def test_get_reports_an_expired_registration_as_expired() -> None:
    gateway, store, clock = FakeGateway(), MemoryStore(), FakeClock(T0)
    record = registrar(gateway, store, clock).register(RegisterCall(agent_id="a"), budget=3.0).record
    clock.advance(601)
    assert CallDirectory(store, clock=clock).get(record.call_id).status is CallStatus.EXPIRED


def test_lookup_finds_the_newest_unexpired_registration() -> None:
    gateway, store, clock = FakeGateway(), MemoryStore(), FakeClock(T0)
    calls, directory = registrar(gateway, store, clock), CallDirectory(store, clock=clock)
    calls.register(RegisterCall(agent_id="a", lookup_key="k"), budget=3.0)
    clock.advance(5)
    newer = calls.register(RegisterCall(agent_id="a", lookup_key="k"), budget=3.0).record
    assert directory.lookup("k").call_id == newer.call_id
    clock.advance(700)
    with pytest.raises(CallNotFound):
        directory.lookup("k")


def test_unknown_call_is_not_found() -> None:
    with pytest.raises(CallNotFound):
        CallDirectory(MemoryStore(), clock=FakeClock(T0)).get("nope")


def test_a_registration_publishes_its_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    registrar(FakeGateway(), MemoryStore(), FakeClock(T0)).register(RegisterCall(agent_id="a"), budget=3.0)
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    [line] = emitted  # one embedded-metric-format line for the metrics that share the MillisRegion dimension
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "MillisSipBridge"
    assert directive["Dimensions"] == [["MillisRegion", "service"]]
    assert [m["Name"] for m in directive["Metrics"]] == ["Registrations", "MillisLatency"]
    assert (line["MillisRegion"], line["service"]) == ("us-west", "millis-sip-bridge")
    assert (line["Registrations"], line["MillisLatency"]) == ([1.0], [12.0])


def test_the_record_expiry_is_whole_seconds_after_the_ttl() -> None:
    clock = FakeClock(T0)
    record = registrar(FakeGateway(), MemoryStore(), clock).register(RegisterCall(agent_id="a"), budget=3.0).record
    assert record.expires_at - record.created_at == timedelta(seconds=600) - timedelta(microseconds=250_000)


def test_a_pin_registration_gets_a_pin_and_keeps_nothing_of_it() -> None:
    store = MemoryStore()
    registered = registrar(FakeGateway(), store, FakeClock(T0)).register(
        RegisterCall(agent_id="a", lookup_key="+14155550100", caller_verification=CallerVerification.PIN), budget=3.0
    )
    assert registered.pin is not None and len(registered.pin) == 6 and registered.pin.isdigit()
    stored = store.items[registered.record.call_id]
    assert stored.caller_verification is CallerVerification.PIN
    assert stored.pin_hash is None and registered.pin not in repr(stored)  # not even a hash (a million guesses)
    keys = StackKeys(Secret())
    assert pin_matches(stored, registered.pin, keys)
    assert not pin_matches(stored, f"{(int(registered.pin) + 1) % 1_000_000:06d}", keys)
    # Derived again from the call id under the stack secret: the same every time it is asked for (an idempotent
    # retry), another under another secret.
    assert keys.pin(stored.call_id) == registered.pin

    class Other(Secret):
        def __call__(self) -> str:
            return "another-stack-secret"

    assert StackKeys(Other()).pin(stored.call_id) != registered.pin
    assert not pin_matches(stored, registered.pin, StackKeys(Other()))


def test_a_record_from_before_derived_pins_is_checked_against_its_hash() -> None:
    record = CallRecord(
        call_id="older",
        sip_uri=parse_sip_uri("sip:call-older@sip.example"),
        millis_region="us-west",
        status=CallStatus.REGISTERED,
        created_at=T0,
        expires_at=T0 + timedelta(hours=1),
        caller_verification=CallerVerification.PIN,
        pin_hash=hash_pin("older", "482913"),
    )
    assert pin_matches(record, "482913", StackKeys(Secret()))
    assert not pin_matches(record, "482914", StackKeys(Secret()))


def test_the_stack_secret_is_read_before_millis_when_a_registration_needs_it() -> None:
    class Unreadable(Secret):
        def __call__(self) -> str:
            raise WebhookSecretUnavailable("Secrets Manager is down")

    gateway, store = FakeGateway(), MemoryStore()
    millis = MillisRegistrations(gateway, metrics=emf_metrics)
    calls = Registrar(
        millis, store, clock=FakeClock(T0), ttl_seconds=600, default_agent_id=None, keys=StackKeys(Unreadable())
    )
    with pytest.raises(WebhookSecretUnavailable):
        calls.register(RegisterCall(agent_id="a", lookup_key="+14155550100"), budget=3.0)
    assert gateway.calls == [] and store.items == {}  # no Millis session to reconcile
    assert calls.register(RegisterCall(agent_id="a"), budget=3.0).record.call_id  # no lookup_key: not needed


def test_other_verifications_get_no_pin() -> None:
    for verification in (CallerVerification.ATTESTATION, CallerVerification.TRUST_CALLER_ID):
        registered = registrar(FakeGateway(), MemoryStore(), FakeClock(T0)).register(
            RegisterCall(agent_id="a", lookup_key="+14155550100", caller_verification=verification), budget=3.0
        )
        assert registered.pin is None and registered.record.pin_hash is None


def test_a_pin_without_a_number_to_claim_by_is_refused_before_millis() -> None:
    gateway = FakeGateway()
    with pytest.raises(InvalidRequest, match="lookup_key"):
        registrar(gateway, MemoryStore(), FakeClock(T0)).register(
            RegisterCall(agent_id="a", caller_verification=CallerVerification.PIN), budget=3.0
        )
    assert gateway.calls == []

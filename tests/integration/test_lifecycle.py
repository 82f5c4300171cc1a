"""Call lifecycle and idempotency end to end: Millis' session webhook closing records (HTTP and phone calls,
replays, out-of-order events), its authentication, and Idempotency-Key on POST /calls."""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx
import pytest

from dev.lambda_context import LocalContext
from dev.local_api import LocalApi
from dev.millis_simulator import Fault, MillisSimulator
from millis_sip.core.registration import webhook_credential_hash
from tests.conftest import load_event
from tests.support.invoke import invoke
from tests.support.rig import TABLE, WEBHOOK_SECRET, LogCapture

pytestmark = pytest.mark.integration


def create(api: ModuleType, key: str | None = None, **body: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
    event = load_event("api-create-call.json")
    event["body"] = json.dumps(body or {"agent_id": "crm-agent", "lookup_key": fresh_number()})
    if key is not None:
        event["headers"]["Idempotency-Key"] = key
        event["multiValueHeaders"]["Idempotency-Key"] = [key]
    return invoke(api, event)


def credential(sim: MillisSimulator) -> str:
    """The webhook credential the last registration gave Millis (the stack secret when it carried none)."""
    call_id, _ = sim.issued[-1]
    return sim.webhook_credential(call_id) or WEBHOOK_SECRET


def webhook(api: ModuleType, secret: str | None, raw: str | None = None, **body: Any) -> tuple[int, dict[str, Any]]:
    event = load_event("api-millis-webhook.json")
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("X-Webhook-Secret", None)
    if secret is not None:
        event["headers"]["X-Webhook-Secret"] = secret
        event["multiValueHeaders"]["X-Webhook-Secret"] = [secret]
    if raw is not None:
        event["body"] = raw
    elif body:
        event["body"] = json.dumps({**json.loads(event["body"]), **body})
    status, _, answer = invoke(api, event)
    return status, answer


def get(api: ModuleType, call_id: str) -> dict[str, Any]:
    event = load_event("api-get-call.json")
    event["pathParameters"] = {"call_id": call_id}
    event["path"] = f"/calls/{call_id}"
    return invoke(api, event)[2]


def lookup(api: ModuleType, key: str) -> int:
    event = load_event("api-lookup-call.json")
    event["queryStringParameters"] = {"lookup_key": key}
    event["multiValueQueryStringParameters"] = {"lookup_key": [key]}
    return invoke(api, event)[0]


def fresh_number() -> str:
    return "+1312" + str(uuid.uuid4().int)[:7]


def item(dynamodb: Any, call_id: str) -> dict[str, Any]:
    found = dynamodb.get_item(TableName=TABLE, Key={"call_id": {"S": call_id}}, ConsistentRead=True)
    return {k: next(iter(v.values())) for k, v in found.get("Item", {}).items()}


# --- the session webhook --------------------------------------------------------------------------------


def test_the_webhook_closes_an_http_registration_once_and_replays_change_nothing(
    api: ModuleType, dynamodb: Any, sim: MillisSimulator
) -> None:
    number = fresh_number()
    _, _, call = create(api, agent_id="crm-agent", lookup_key=number)
    own = credential(sim)
    assert lookup(api, number) == 200
    status, ack = webhook(api, own, call_id=call["call_id"], duration=93.4, call_status="user-ended")
    assert (status, ack) == (200, {"received": True, "call_id": call["call_id"], "outcome": "closed"})
    view = get(api, call["call_id"])
    assert (view["status"], view["millis_call_status"], view["millis_duration_seconds"]) == ("ended", "user-ended", 93)
    assert (view["duration_seconds"], view["reason"]) == (93, "millis_user-ended")
    assert view["ended_at"] is not None
    assert lookup(api, number) == 404  # a finished call is never handed to a carrier again
    before = item(dynamodb, call["call_id"])
    replays: list[dict[str, Any]] = [
        {"duration": 93.4, "call_status": "user-ended"},  # the same report again
        {"duration": 1.0, "call_status": "error"},  # a late one with other values
    ]
    for replay in replays:
        status, ack = webhook(api, own, call_id=call["call_id"], **replay)  # a replay, then a late, altered one
        assert (status, ack["outcome"]) == (200, "annotated")
        after = item(dynamodb, call["call_id"])
        assert {k: v for k, v in after.items() if k != "updated_at"} == {
            k: v for k, v in before.items() if k != "updated_at"
        }


def test_one_calls_credential_opens_no_other_call(api: ModuleType, dynamodb: Any, sim: MillisSimulator) -> None:
    _, _, mine = create(api)
    my_credential = credential(sim)
    _, _, theirs = create(api)
    for presented in (my_credential, WEBHOOK_SECRET):  # nor does the stack secret open a call with its own
        status, answer = webhook(api, presented, call_id=theirs["call_id"], call_status="error")
        assert (status, answer["error"]) == (401, "unauthorized")
    assert item(dynamodb, theirs["call_id"])["status"] == "registered"
    assert webhook(api, my_credential, call_id=mine["call_id"])[1]["outcome"] == "closed"


def test_a_millis_error_fails_the_call(api: ModuleType, sim: MillisSimulator) -> None:
    _, _, call = create(api)
    webhook(
        api, credential(sim), call_id=call["call_id"], call_status="error", error_message="SIP 488 from the carrier"
    )
    view = get(api, call["call_id"])
    assert (view["status"], view["reason"]) == ("failed", "millis_error")


def test_an_unknown_call_is_acknowledged_and_nothing_is_created(
    api: ModuleType, dynamodb: Any, logs: LogCapture
) -> None:
    call_id = f"never-registered-{uuid.uuid4().hex[:8]}"
    status, ack = webhook(api, WEBHOOK_SECRET, call_id=call_id)  # gone, or never here: the stack secret says so
    assert (status, ack["outcome"]) == (200, "unknown")
    assert webhook(api, "a-credential-no-call-holds", call_id=call_id)[0] == 401
    assert item(dynamodb, call_id) == {}
    assert any(r["message"] == "Millis session webhook" and r["outcome"] == "unknown" for r in logs.records())


def test_a_transaction_marker_cannot_be_touched_through_the_webhook(
    api: ModuleType, sma: ModuleType, dynamodb: Any
) -> None:
    event = load_event("sma-new-inbound-call.json")
    event["CallDetails"]["TransactionId"] = tx = str(uuid.uuid4())
    event["CallDetails"]["Participants"][0]["From"] = fresh_number()
    sma.lambda_handler(event, LocalContext())
    marker = f"chime-transaction#{tx}#1"
    before = item(dynamodb, marker)
    assert webhook(api, WEBHOOK_SECRET, call_id=marker)[1]["outcome"] == "unknown"
    assert item(dynamodb, marker) == before


def test_the_webhook_and_the_phone_hang_up_in_either_order_end_the_call_once(
    api: ModuleType, sma: ModuleType, sim: MillisSimulator
) -> None:
    for webhook_first in (True, False):
        event = load_event("sma-new-inbound-call.json")
        event["CallDetails"]["TransactionId"] = str(uuid.uuid4())
        event["CallDetails"]["Participants"][0]["From"] = fresh_number()
        bridging = sma.lambda_handler(event, LocalContext())
        own = credential(sim)
        attrs = bridging["TransactionAttributes"]
        later = load_event("sma-bridge-succeeded.json")
        later["CallDetails"]["TransactionId"] = event["CallDetails"]["TransactionId"]
        later["CallDetails"]["TransactionAttributes"] = attrs
        attrs = sma.lambda_handler(later, LocalContext())["TransactionAttributes"]
        hangup = load_event("sma-hangup-caller.json")
        hangup["CallDetails"]["TransactionId"] = event["CallDetails"]["TransactionId"]
        hangup["CallDetails"]["TransactionAttributes"] = attrs
        call_id = attrs["millis_call_id"]
        if webhook_first:
            assert webhook(api, own, call_id=call_id, call_status="agent-ended", duration=12)[1]["outcome"] == "closed"
            answer = sma.lambda_handler(copy.deepcopy(hangup), LocalContext())
            assert [a["Type"] for a in answer["Actions"]] == ["Hangup"]  # the other leg is still hung up
            expected_reason = "millis_agent-ended"
        else:
            sma.lambda_handler(copy.deepcopy(hangup), LocalContext())
            assert (
                webhook(api, own, call_id=call_id, call_status="user-ended", duration=12)[1]["outcome"] == "annotated"
            )
            expected_reason = "caller_hung_up"
        view = get(api, call_id)
        assert (view["status"], view["reason"], view["source"]) == ("ended", expected_reason, "chime")
        assert view["millis_call_status"] in {"agent-ended", "user-ended"}


@pytest.mark.parametrize("secret", [None, "", "wrong", "x" * 257, "almost-" + "x" * 36, WEBHOOK_SECRET])
def test_the_webhook_refuses_a_missing_or_wrong_credential(
    api: ModuleType, dynamodb: Any, sim: MillisSimulator, secret: str | None
) -> None:
    _, _, call = create(api)
    status, answer = webhook(api, secret, call_id=call["call_id"])
    assert (status, answer["error"]) == (401, "unauthorized")
    assert credential(sim) not in json.dumps(answer) and WEBHOOK_SECRET not in json.dumps(answer)
    assert item(dynamodb, call["call_id"])["status"] == "registered"
    if secret is None or not 16 <= len(secret) <= 256:  # refused before the body is read
        assert webhook(api, secret, raw="{not json")[0] == 401


def test_a_stack_without_a_webhook_secret_refuses_every_webhook(make_api: Callable[..., ModuleType]) -> None:
    api = make_api(WEBHOOK_SECRET="")
    assert webhook(api, WEBHOOK_SECRET, call_id="x")[0] == 401


def test_webhook_bodies_up_to_a_mebibyte_are_read_and_larger_ones_refused(
    api: ModuleType, sim: MillisSimulator
) -> None:
    _, _, call = create(api)
    own = credential(sim)
    transcript = [{"role": "user", "content": "x" * 200}] * 400  # about 90 KB: over the POST /calls limit
    status, ack = webhook(api, own, call_id=call["call_id"], chat=transcript)
    assert (status, ack["outcome"]) == (200, "closed")
    status, answer = webhook(api, own, raw=json.dumps({"call_id": call["call_id"], "pad": "x" * (1024 * 1024)}))
    assert (status, answer["error"]) == (413, "body_too_large")


def test_the_webhook_route_needs_no_api_key_on_the_local_server_but_the_others_do(api: ModuleType) -> None:
    with LocalApi(api.lambda_handler, api_key="k", port=0) as server:
        no_key = httpx.post(
            f"{server.url}/webhooks/millis", headers={"X-Webhook-Secret": WEBHOOK_SECRET}, json={"call_id": "nobody"}
        )
        assert (no_key.status_code, no_key.json()["outcome"]) == (200, "unknown")
        assert httpx.post(f"{server.url}/calls", json={"agent_id": "a"}).status_code == 403


def test_a_callers_own_session_webhook_is_left_alone(api: ModuleType, sim: MillisSimulator) -> None:
    mine = {"url": "https://crm.example/hooks/millis", "headers": {"Authorization": "Bearer crm"}}
    status, _, _ = create(api, agent_id="a", agent_config={"session_data_webhook": mine, "language": "en"})
    assert status == 201
    assert sim.registrations()[-1].body["agent_config"] == {"session_data_webhook": mine, "language": "en"}


def test_phone_calls_registered_by_the_sip_media_application_carry_the_webhook(
    make_sma: Callable[..., ModuleType], sim: MillisSimulator, dynamodb: Any
) -> None:
    sma = make_sma(
        WEBHOOK_SECRET=WEBHOOK_SECRET, WEBHOOK_URL="https://abc.execute-api.us-west-2.amazonaws.com/v1/webhooks/millis"
    )
    event = load_event("sma-new-inbound-call.json")
    event["CallDetails"]["TransactionId"] = str(uuid.uuid4())
    event["CallDetails"]["Participants"][0]["From"] = fresh_number()
    answer = sma.lambda_handler(event, LocalContext())
    hook = sim.registrations()[-1].body["agent_config"]["session_data_webhook"]
    assert hook["url"] == "https://abc.execute-api.us-west-2.amazonaws.com/v1/webhooks/millis"
    own = hook["headers"]["X-Webhook-Secret"]
    assert len(own) >= 43 and own != WEBHOOK_SECRET  # the call's own credential, not the stack secret
    record = item(dynamodb, answer["TransactionAttributes"]["millis_call_id"])
    assert record["webhook_hash"] == webhook_credential_hash(own)


# --- Idempotency-Key ----------------------------------------------------------------------------------------


def test_a_retry_with_the_same_key_and_body_gets_the_first_answer(api: ModuleType, sim: MillisSimulator) -> None:
    key = f"order-{uuid.uuid4()}"
    body = {"agent_id": "crm-agent", "lookup_key": fresh_number(), "metadata": {"ticket": "T-1"}}
    first = create(api, key, **body)
    second = create(api, key, **body)
    assert first[0] == second[0] == 201
    assert first[2] == second[2]
    assert len(sim.registrations()) == 1


def test_the_same_key_with_another_body_is_refused(api: ModuleType, sim: MillisSimulator) -> None:
    key = f"order-{uuid.uuid4()}"
    create(api, key, agent_id="crm-agent", lookup_key="+13125550100")
    status, _, answer = create(api, key, agent_id="crm-agent", lookup_key="+13125550199")
    assert (status, answer["error"]) == (422, "idempotency_key_reused")
    assert "different body" in answer["message"]
    assert len(sim.registrations()) == 1


def test_a_failed_attempt_is_not_remembered(api: ModuleType, sim: MillisSimulator) -> None:
    key = f"order-{uuid.uuid4()}"
    for region in ("us-west", "eu-west"):
        sim.set_fault(region, Fault(status=503, times=1))
    assert create(api, key, agent_id="a")[0] == 503
    assert create(api, key, agent_id="a")[0] == 201


def test_different_keys_are_different_calls_and_a_bad_key_is_refused(api: ModuleType, sim: MillisSimulator) -> None:
    assert create(api, f"a-{uuid.uuid4()}", agent_id="a")[0] == 201
    assert create(api, f"b-{uuid.uuid4()}", agent_id="a")[0] == 201
    assert len(sim.registrations()) == 2
    status, _, answer = create(api, "has spaces", agent_id="a")
    assert (status, answer["error"]) == (400, "invalid_request")


def test_concurrent_requests_with_one_key_register_once(api: ModuleType, sim: MillisSimulator) -> None:
    sim.set_fault("us-west", Fault(delay=0.5, times=1))
    key = f"order-{uuid.uuid4()}"
    results: list[int] = []

    def send() -> None:
        results.append(create(api, key, agent_id="a", lookup_key="+13125550123")[0])

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(sim.registrations()) == 1
    assert results.count(201) >= 1 and set(results) <= {201, 409}


def test_millis_echoing_the_webhook_credential_in_an_error_never_shows_it(
    api: ModuleType, sim: MillisSimulator
) -> None:
    # FastAPI's 422 echoes the offending input: Millis could send the agent_config back, credential and all.
    for region in ("us-west", "eu-west"):
        sim.set_fault(region, Fault(status=422, echo=True))
    status, _, answer = create(api, agent_id="a")
    assert status == 422
    credential = sim.registrations()[-1].body["agent_config"]["session_data_webhook"]["headers"]["X-Webhook-Secret"]
    assert credential not in json.dumps(answer) and sim.api_key not in json.dumps(answer)
    assert "[redacted]" in json.dumps(answer)

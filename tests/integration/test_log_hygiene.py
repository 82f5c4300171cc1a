"""Log hygiene: everything a full run writes (the functions' JSON logs, metrics on stdout, any library's
logging) holds neither the Millis key nor the webhook or keys secret, and phone numbers only masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from types import ModuleType

import pytest

from dev.lambda_context import LocalContext
from dev.millis_simulator import Fault, MillisSimulator
from tests.conftest import ROOT, load_event
from tests.support.invoke import invoke
from tests.support.rig import KEYS_SECRET, WEBHOOK_SECRET, LogCapture

pytestmark = pytest.mark.integration
CALLER = "+14155550177"


def test_a_full_run_logs_no_secret_and_no_phone_number(
    make_api: Callable[..., ModuleType],
    make_sma: Callable[..., ModuleType],
    sim: MillisSimulator,
    logs: LogCapture,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = make_api(POWERTOOLS_LOG_LEVEL="DEBUG")
    sma = make_sma(WEBHOOK_SECRET=WEBHOOK_SECRET, WEBHOOK_URL="https://abc.example/v1/webhooks/millis")

    create = load_event("api-create-call.json")
    create["body"] = json.dumps({"agent_id": "a", "lookup_key": CALLER, "metadata": {"caller": CALLER}})
    _, _, call = invoke(api, create)
    lookup = load_event("api-lookup-call.json")
    lookup["queryStringParameters"] = {"lookup_key": CALLER}
    invoke(api, lookup)
    bad = load_event("api-create-call.json")
    bad["body"] = json.dumps({"agent_id": "a", "lookup_key": f"{CALLER} x", "colour": CALLER})
    invoke(api, bad)

    tx = str(uuid.uuid4())
    inbound = load_event("sma-new-inbound-call.json")
    inbound["CallDetails"]["TransactionId"] = tx
    inbound["CallDetails"]["Participants"][0]["From"] = "+14155550188"
    bridging = sma.lambda_handler(inbound, LocalContext())
    for name in ("sma-bridge-succeeded.json", "sma-hangup-caller.json"):
        event = load_event(name)
        event["CallDetails"]["TransactionId"] = tx
        event["CallDetails"]["TransactionAttributes"] = bridging["TransactionAttributes"]
        sma.lambda_handler(event, LocalContext())

    hook = load_event("api-millis-webhook.json")
    own = sim.webhook_credential(call["call_id"]) or ""
    hook["headers"]["X-Webhook-Secret"] = own
    hook["body"] = json.dumps({"call_id": call["call_id"], "call_status": "error", "error_message": f"from {CALLER}"})
    invoke(api, hook)
    hook["headers"]["X-Webhook-Secret"] = WEBHOOK_SECRET + "-wrong"
    invoke(api, hook)

    for region in ("us-west", "eu-west"):  # Millis rejects the key; then echoes the body in a 422
        sim.set_fault(region, Fault(status=401, times=1))
    invoke(api, create)
    for region in ("us-west", "eu-west"):
        sim.set_fault(region, Fault(status=422, echo=True, times=1))
    invoke(api, create)
    credentials = [sim.webhook_credential(call_id) for call_id, _ in sim.issued]
    credentials += [
        r.body["agent_config"]["session_data_webhook"]["headers"]["X-Webhook-Secret"]
        for r in sim.registrations()
        if "session_data_webhook" in (r.body.get("agent_config") or {})
    ]
    failing = make_sma(CALLS_TABLE_NAME="no-such-table", WEBHOOK_SECRET=WEBHOOK_SECRET)
    inbound["CallDetails"]["TransactionId"] = str(uuid.uuid4())
    failing.lambda_handler(inbound, LocalContext())

    written = logs.text + capsys.readouterr().out + "\n".join(r.getMessage() for r in caplog.records)
    assert len(logs.records()) >= 10  # the run did log
    assert len(credentials) >= 3
    for secret in (sim.api_key, WEBHOOK_SECRET, KEYS_SECRET, *filter(None, credentials)):
        assert secret not in written
    for number in (CALLER, "+14155550188"):
        assert number not in logs.text
    assert "+*******0177" in logs.text  # masked, still telling calls apart


def test_the_mask_and_the_setting_that_turns_it_off() -> None:
    from millis_sip.observability import mask_phone_numbers

    assert mask_phone_numbers("call from +14155550100 to +442071838750") == "call from +*******0100 to +********8750"
    assert mask_phone_numbers("+1234567, 14155550188, sip:+14155550100@host") == (
        "+*****67, *******0188, sip:+*******0100@host"
    )
    assert mask_phone_numbers("tel:+1-4155550100 or 1-415-5550100") == "tel:+1-******0100 or 1-415-*****00"
    # Not numbers: short ones, longer runs (nonces, epoch microseconds), digits inside ids and hex.
    uuid_groups = ("13421026-5ddf-44db-b444-2d879dc1a4aa", "2b7a0f9e-9a3e-4e6d-8c15-123456789012")
    for kept in (
        "+12",
        "port 5060",
        "nonce 12345678901234567890",
        "CA5ab1e0f00d1234567",
        "call-sim-1234567a",
        *uuid_groups,
    ):
        assert mask_phone_numbers(kept) == kept
    script = (
        "from millis_sip.observability import logger, MaskingFormatter\n"
        "print(isinstance(logger.registered_formatter, MaskingFormatter))\n"
    )
    for setting, masked in (("true", "True"), ("false", "False"), ("", "True")):
        env = {**os.environ, "MASK_PHONE_NUMBERS": setting, "PYTHONPATH": str(ROOT / "layers" / "millis_sip")}
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, check=True
        )
        assert result.stdout.strip() == masked, setting

"""The main job on an embedded default: no AWS account, no Docker.

Starts DynamoDB Local and creates the table from template.yaml, starts the Millis simulator (or uses
real Millis when MILLIS_API_KEY is set), serves the API on http://127.0.0.1:3000 the way
`sam local start-api` would, and runs a short scripted call: register, get, carrier lookup. With the
simulator it then plays a phone call through SipMediaAppFunction (the events/ files, in-process). With
--serve it then keeps the API up for curl until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from dev.dynamodb_local import DynamoDBLocal
from dev.functions import load_function
from dev.lambda_context import LocalContext
from dev.local_api import LocalApi
from dev.millis_simulator import Fault, MillisSimulator
from dev.template import ROOT, create_tables

TABLE = "millis-sip-bridge-calls"
IDEMPOTENCY_TABLE = "millis-sip-bridge-idempotency"
LOCAL_API_KEY = "local-api-key"
LOCAL_WEBHOOK_SECRET = "local-webhook-secret"  # noqa: S105 - the local stand-in for the generated secret
DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


def _show(title: str, response: httpx.Response) -> dict[str, Any]:
    request = response.request
    body = request.content.decode() if request.content else ""
    print(
        f"\n--- {title}\n$ curl -X {request.method} '{request.url}' -H 'x-api-key: ...'"
        + (f" -d '{body}'" if body else "")
    )
    print(f"HTTP {response.status_code}")
    data: dict[str, Any] = response.json()
    print(json.dumps(data, indent=2))
    return data


def script(base_url: str, api_key: str, sim: MillisSimulator | None) -> bool:
    """The scripted call. Returns True when every step answered as expected."""
    ok = True
    with httpx.Client(base_url=base_url, headers={"x-api-key": api_key}, timeout=30) as http:
        caller = "+14155550100"
        created = http.post(
            "/calls",
            json={
                "agent_id": os.environ.get("DEMO_AGENT_ID", "demo-agent"),
                "metadata": {"caller": caller, "crm_ticket": "T-1001"},
                "include_metadata_in_prompt": True,
                "lookup_key": caller,
            },
        )
        call = _show("Register a call (POST /calls)", created)
        ok &= created.status_code == 201
        if created.status_code != 201:
            return False
        again = http.post(
            "/calls",
            json={"agent_id": "demo-agent", "lookup_key": "+14155550122"},
            headers={"Idempotency-Key": "demo-order-1"},
        )
        retried = http.post(
            "/calls",
            json={"agent_id": "demo-agent", "lookup_key": "+14155550122"},
            headers={"Idempotency-Key": "demo-order-1"},
        )
        _show("A retry with the same Idempotency-Key gets the first answer (no second registration)", retried)
        ok &= again.status_code == retried.status_code == 201 and again.json() == retried.json()
        got = http.get(f"/calls/{call['call_id']}")
        _show("Read it back (GET /calls/{call_id})", got)
        ok &= got.status_code == 200 and got.json()["sip_uri"] == call["sip_uri"]
        found = http.get("/calls", params={"lookup_key": caller})
        _show("Carrier lookup (GET /calls?lookup_key=...)", found)
        ok &= found.status_code == 200 and found.json()["call_id"] == call["call_id"]
        if sim is not None:
            sim.set_fault(call["millis_region"], Fault(status=503, times=1))
            failover = http.post("/calls", json={"agent_id": "demo-agent", "lookup_key": "+14155550111"})
            _show(f"Nearest region answers 503 once: failover (POST /calls, {call['millis_region']} down)", failover)
            ok &= failover.status_code == 201 and failover.json()["millis_region"] != call["millis_region"]
        bad = http.post("/calls", json={"agent_id": "demo-agent", "lookup_key": "has spaces", "colour": "blue"})
        _show("A bad request gets a 400 that says what to fix", bad)
        ok &= bad.status_code == 400
        anonymous = httpx.get(f"{base_url}/calls", params={"lookup_key": caller})
        print(f"\n--- Without the API key\nHTTP {anonymous.status_code} {anonymous.text}")
        ok &= anonymous.status_code == 403
    return ok


DEMO_VOICE_CONNECTORS = {
    "VOICE_CONNECTOR_ARN_US_WEST": "arn:aws:chime:us-west-2:111122223333:vc/demouswest0000000000000",
    "VOICE_CONNECTOR_ARN_EU_WEST": "arn:aws:chime:us-west-2:111122223333:vc/demoeuwest0000000000000",
    "MILLIS_SIP_HOST_US_WEST": "sip-us-west.millis-simulator.test",
    "MILLIS_SIP_HOST_EU_WEST": "sip-eu-west.millis-simulator.test",
    "DEFAULT_AGENT_ID": "demo-phone-agent",
}


def _event(name: str, tx: str, caller: str, attributes: dict[str, str] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / name).read_text())
    event["CallDetails"]["TransactionId"] = tx
    event["CallDetails"]["Participants"][0]["From"] = caller
    if attributes is not None:
        event["CallDetails"]["TransactionAttributes"] = attributes
    return event


def phone_script(base_url: str, api_key: str) -> bool:
    """A phone call through SipMediaAppFunction: Chime's invocations, played from events/ in-process."""
    os.environ.update(DEMO_VOICE_CONNECTORS)
    sma = load_function("sma_handler")
    ok = True
    with httpx.Client(base_url=base_url, headers={"x-api-key": api_key}, timeout=30) as http:
        caller = "+14155550177"
        crm = http.post("/calls", json={"agent_id": "crm-agent", "metadata": {"ticket": "T-7"}, "lookup_key": caller})
        registered = _show("Your backend registers the caller's call first (POST /calls)", crm)
        tx = "demo-" + registered["call_id"][-12:]

        def invoke(title: str, event: dict[str, Any]) -> dict[str, Any]:
            answer: dict[str, Any] = sma.lambda_handler(event, LocalContext(function_name="SipMediaAppFunction"))
            print(f"\n--- {title}\n{json.dumps(answer['Actions'], indent=2)}")
            return answer

        bridging = invoke(
            f"{caller} dials in: NEW_INBOUND_CALL -> CallAndBridge (claims that registration)",
            _event("sma-new-inbound-call.json", tx, caller),
        )
        attributes = bridging.get("TransactionAttributes", {})
        ok &= bool(attributes.get("millis_call_id") == registered["call_id"])
        bridged = invoke(
            "The agent answers: ACTION_SUCCESSFUL", _event("sma-bridge-succeeded.json", tx, caller, attributes)
        )
        ended = invoke(
            "The caller hangs up: HANGUP -> hang up the agent's leg",
            _event("sma-hangup-caller.json", tx, caller, bridged.get("TransactionAttributes", attributes)),
        )
        ok &= [a["Type"] for a in ended["Actions"]] == ["Hangup"]
        record = _show("The record (GET /calls/{call_id})", http.get(f"/calls/{registered['call_id']}"))
        ok &= bool(record.get("status") == "ended" and record.get("reason") == "caller_hung_up")
        hook = httpx.post(
            f"{base_url}/webhooks/millis",
            headers={"X-Webhook-Secret": LOCAL_WEBHOOK_SECRET},
            json={"call_id": registered["call_id"], "call_status": "user-ended", "duration": 42.5},
        )
        _show("Millis reports the session over (POST /webhooks/millis, X-Webhook-Secret, no API key)", hook)
        closed = http.get(f"/calls/{registered['call_id']}").json()
        ok &= bool(hook.status_code == 200 and closed.get("millis_call_status") == "user-ended")
        stranger = invoke(
            "Someone with no registration calls: registered on the nearest region with DefaultAgentId",
            _event("sma-new-inbound-call.json", tx + "-2", "+14155550188"),
        )
        ok &= [a["Type"] for a in stranger["Actions"]] == ["CallAndBridge"]
    return ok


@contextlib.contextmanager
def local_stack(port: int, verbose: bool) -> Iterator[tuple[LocalApi, MillisSimulator | None]]:
    real_key = os.environ.get("MILLIS_API_KEY", "").strip()
    with contextlib.ExitStack() as stack:
        ddb = stack.enter_context(DynamoDBLocal())
        env = {
            **DUMMY_AWS,
            "AWS_REGION": os.environ.get("AWS_REGION", "us-west-2"),
            "AWS_DEFAULT_REGION": os.environ.get("AWS_REGION", "us-west-2"),
            "AWS_ENDPOINT_URL_DYNAMODB": ddb.endpoint,
            "CALLS_TABLE_NAME": TABLE,
            "IDEMPOTENCY_TABLE_NAME": IDEMPOTENCY_TABLE,
            "WEBHOOK_SECRET": LOCAL_WEBHOOK_SECRET,
            "MILLIS_API_KEY_SECRET_ARN": "",
            "POWERTOOLS_SERVICE_NAME": "millis-sip-bridge",
            "POWERTOOLS_METRICS_NAMESPACE": "MillisSipBridge",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "INFO" if verbose else "ERROR",
            "POWERTOOLS_METRICS_DISABLED": "false" if verbose else "true",
        }
        os.environ.update(env)
        create_tables(ddb.endpoint, TABLE, IDEMPOTENCY_TABLE, region=env["AWS_REGION"])
        sim: MillisSimulator | None = None
        if real_key:
            print("MILLIS_API_KEY is set: registering with real Millis.")
        else:
            sim = stack.enter_context(MillisSimulator())
            os.environ.update(sim.env())
        handler = load_function("api_handler")
        api = stack.enter_context(LocalApi(handler.lambda_handler, api_key=LOCAL_API_KEY, port=port))
        region = handler.settings.millis_region
        print(f"DynamoDB Local      {ddb.endpoint} (table {TABLE}, from template.yaml)")
        print(
            f"Millis              {'real' if real_key else f'simulator on 127.0.0.1:{sim.port if sim else 0}'}; "
            f"AWS_REGION={env['AWS_REGION']} -> {region.primary} first ({region.basis}), {region.fallback} fallback"
        )
        print(f"API                 {api.url} (x-api-key: {LOCAL_API_KEY})")
        yield api, sim


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help="keep the API up after the script, until Ctrl-C")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    parser.add_argument("--verbose", action="store_true", help="show the function's log lines and metrics")
    args = parser.parse_args()
    try:
        with local_stack(args.port, args.verbose) as (api, sim):
            ok = script(api.url, LOCAL_API_KEY, sim)
            what = "registered, read back and looked up a call"
            if sim is not None:
                ok &= phone_script(api.url, LOCAL_API_KEY)
                what += "; bridged a phone call"
            print(f"\n{'Demo OK' if ok else 'Demo FAILED'}: {what}.")
            if args.serve:
                if sim is not None:
                    sim.clear()
                print(
                    f"\nServing on {api.url} until Ctrl-C. Try:\n"
                    f"  curl -s -X POST {api.url}/calls -H 'x-api-key: {LOCAL_API_KEY}' "
                    "-H 'content-type: application/json' "
                    """-d '{"agent_id": "my-agent", "lookup_key": "+14155550123"}'\n"""
                    f"  curl -s '{api.url}/calls?lookup_key=%2B14155550123' -H 'x-api-key: {LOCAL_API_KEY}'"
                )
                stop = threading.Event()
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
                with contextlib.suppress(KeyboardInterrupt):
                    stop.wait()
                print("\nStopping.")
            return 0 if ok else 1
    except OSError as exc:
        if exc.errno == 98:
            print(f"Port {args.port} is in use: run with --port N (or PORT=N).", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())

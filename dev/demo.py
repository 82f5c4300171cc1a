"""The main job on an embedded default: no AWS account, no Docker.

Starts DynamoDB Local and creates the tables from template.yaml, starts the Millis simulator (or uses
real Millis when MILLIS_API_KEY is set), serves the API on loopback the way `sam local start-api` would
(on a free port; with --serve on PORT, default 3000), and runs a short scripted call: register, get,
carrier lookup. With the simulator it then plays a phone call through SipMediaAppFunction (the events/
files, in-process), and prints the call events of every call (the calls table's stream through
EventsFunction to a stand-in bus, docs/events.md). Each step prints the curl command that does the same by
hand; the last line names the first step that did not answer as expected. With --serve it then keeps the
API up for curl until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode
from xml.etree import ElementTree

import httpx

from dev.carrier_api import (
    ChimeStandIn,
    PlivoStandIn,
    SignalWireStandIn,
    TelnyxStandIn,
    TwilioStandIn,
    VonageStandIn,
)
from dev.carrier_signing import LOCAL_KEYS
from dev.dynamodb_local import DynamoDBLocal
from dev.events import load_event
from dev.function_env import REGION, SIMULATOR_VOICE_CONNECTORS, Tables, function_env
from dev.functions import load_function
from dev.lambda_context import LocalContext
from dev.local_api import LocalApi
from dev.millis_simulator import Fault, MillisSimulator
from dev.template import create_tables

TABLES = Tables.named("millis-sip-bridge")
LOCAL_API_KEY = "local-api-key"
LOCAL_WEBHOOK_SECRET = "local-webhook-secret"  # noqa: S105 - the local stand-in for the generated secret
LOCAL_KEYS_SECRET = "local-keys-secret"  # noqa: S105 - the local stand-in for the generated keys secret
SERVE_PORT = 3000

# The headers a user types, in the order they are printed, spelled as docs/api.md spells them.
SHOWN_HEADERS = {
    "x-api-key": "x-api-key",
    "content-type": "content-type",
    "idempotency-key": "Idempotency-Key",
    "x-webhook-secret": "X-Webhook-Secret",
    "x-twilio-signature": "X-Twilio-Signature",
    "telnyx-signature-ed25519": "telnyx-signature-ed25519",
    "telnyx-timestamp": "telnyx-timestamp",
    "authorization": "Authorization",
    "x-plivo-signature-v3": "X-Plivo-Signature-V3",
    "x-plivo-signature-v3-nonce": "X-Plivo-Signature-V3-Nonce",
    "accept": "Accept",
}
# Local stand-ins for the carriers' credentials (in AWS they come from Secrets Manager).
SALES_NUMBER = "+15055550123"  # the number the demo's callers dial


def _quote(text: str) -> str:
    """One shell word, single-quoted."""
    return "'" + text.replace("'", "'\\''") + "'"


def printable_url(url: httpx.URL | str) -> str:
    """The URL as a user would type it: every reserved character in the query percent-encoded (`+` is
    %2B; a bare `+` would reach the API as a space)."""
    url = httpx.URL(str(url))
    query = url.query.decode()
    base = str(url.copy_with(query=None))
    if not query:
        return base
    pairs = parse_qsl(query, keep_blank_values=True)
    return f"{base}?{urlencode(pairs, quote_via=quote, safe='')}"


def curl(request: httpx.Request) -> str:
    """The curl command that sends ``request``: method, URL, the headers that matter, the body."""
    words = ["curl", "-s"]
    if request.method != "GET":
        words += ["-X", request.method]
    words.append(_quote(printable_url(request.url)))
    sent = {name.lower(): value for name, value in request.headers.items()}
    for name, spelled in SHOWN_HEADERS.items():
        if name in sent and not (name == "accept" and sent[name] == "*/*"):  # curl's default too
            words += ["-H", _quote(f"{spelled}: {sent[name]}")]
    if request.content:
        words += ["-d", _quote(request.content.decode())]
    return " ".join(words)


def answer(response: httpx.Response) -> str:
    """``HTTP 502 millis_key_rejected``: the status and the error code (or API Gateway's message)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    code = ""
    if isinstance(body, dict):
        code = str(body.get("error") or body.get("message") or "")
    elif response.text:
        code = response.text[:120]
    return f"HTTP {response.status_code} {code}".rstrip()


class Step:
    """One step of the script: what it printed, and what did not answer as expected."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.problem: str | None = None

    def show(self, response: httpx.Response) -> dict[str, Any]:
        print(f"$ {curl(response.request)}")
        print(f"HTTP {response.status_code}")
        if response.headers.get("content-type", "").startswith(("text/xml", "text/plain")):
            print(response.text)
            return {}
        try:
            data = response.json()
        except ValueError:
            print(response.text)
            return {}
        print(json.dumps(data, indent=2))
        return data if isinstance(data, dict) else {}

    def expect(self, ok: bool, problem: str) -> bool:
        """Records ``problem`` unless ``ok``; the first problem of a step is the one reported."""
        if not ok and self.problem is None:
            self.problem = problem
        return ok

    def expect_status(self, response: httpx.Response, status: int) -> bool:
        return self.expect(response.status_code == status, f"{answer(response)} (expected {status})")


class Steps:
    """The script's steps, in order; the summary names the first one that failed."""

    def __init__(self) -> None:
        self.failed: list[tuple[str, str]] = []

    @property
    def ok(self) -> bool:
        return not self.failed

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[Step]:
        """``with steps.step(title) as step:`` runs one step; an error inside it fails the step, not the run."""
        print(f"\n--- {title}")
        current = Step(title)
        try:
            yield current
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            current.expect(False, f"{type(exc).__name__}: {exc}")
        if current.problem is not None:
            print(f"!!! not as expected: {current.problem}")
            self.failed.append((title, current.problem))

    def summary(self, what: str) -> str:
        if not self.failed:
            return f"Demo OK: {what}."
        title, problem = self.failed[0]
        later = len(self.failed) - 1
        more = f" (and {later} later step{'s' if later > 1 else ''})" if later else ""
        return f'Demo FAILED at "{title}": {problem}{more}'


def script(base_url: str, api_key: str, sim: MillisSimulator | None, steps: Steps) -> None:
    """The scripted call over HTTP; ``steps`` records what did not answer as expected."""
    with httpx.Client(base_url=base_url, headers={"x-api-key": api_key}, timeout=30) as http:
        caller = "+14155550100"
        agent = os.environ.get("DEMO_AGENT_ID", "").strip() or "demo-agent"  # with real Millis: an agent of yours
        call: dict[str, Any] = {}
        with steps.step("Register a call (POST /calls)") as step:
            created = http.post(
                "/calls",
                json={
                    "agent_id": agent,
                    "metadata": {"caller": caller, "crm_ticket": "T-1001"},
                    "include_metadata_in_prompt": True,
                    "lookup_key": caller,
                },
            )
            call = step.show(created)
            step.expect_status(created, 201)
        if not steps.ok:
            return  # every later step reads this registration
        with steps.step("A retry with the same Idempotency-Key gets the first answer (no second registration)") as step:
            order = {"agent_id": agent, "lookup_key": "+14155550122"}
            again = http.post("/calls", json=order, headers={"Idempotency-Key": "demo-order-1"})
            retried = http.post("/calls", json=order, headers={"Idempotency-Key": "demo-order-1"})
            step.show(retried)
            if step.expect_status(again, 201) and step.expect_status(retried, 201):
                step.expect(again.json() == retried.json(), "the retry got another answer than the first request")
        with steps.step("Read it back (GET /calls/{call_id})") as step:
            got = http.get(f"/calls/{call['call_id']}")
            data = step.show(got)
            if step.expect_status(got, 200):
                step.expect(data.get("sip_uri") == call["sip_uri"], "sip_uri differs from the registration's")
        with steps.step("Carrier lookup (GET /calls?lookup_key=...)") as step:
            found = http.get("/calls", params={"lookup_key": caller})
            data = step.show(found)
            if step.expect_status(found, 200):
                step.expect(data.get("call_id") == call["call_id"], "the lookup found another call")
        if sim is not None:
            region = call["millis_region"]
            with steps.step(f"Nearest region answers 503 once: failover (POST /calls, {region} down)") as step:
                sim.set_fault(region, Fault(status=503, times=1))
                failover = http.post("/calls", json={"agent_id": "demo-agent", "lookup_key": "+14155550111"})
                data = step.show(failover)
                if step.expect_status(failover, 201):
                    step.expect(data.get("millis_region") != region, f"registered on {region} again, not the other")
        with steps.step("A bad request gets a 400 that says what to fix") as step:
            bad = http.post("/calls", json={"agent_id": "demo-agent", "lookup_key": "has spaces", "colour": "blue"})
            step.show(bad)
            step.expect_status(bad, 400)
        with steps.step("Without the API key: API Gateway refuses") as step:
            anonymous = httpx.get(f"{base_url}/calls", params={"lookup_key": caller})
            step.show(anonymous)
            step.expect_status(anonymous, 403)


# The phone path's default agent (any number without a route reaches it); DEFAULT_AGENT_ID= (empty) for none, so a
# number without a route gets 404 no_agent (docs/development.md).
DEMO_PHONE = {**SIMULATOR_VOICE_CONNECTORS, "DEFAULT_AGENT_ID": os.environ.get("DEFAULT_AGENT_ID", "demo-phone-agent")}
LOCAL_TWILIO_ACCOUNT = "AC" + "0" * 31 + "1"  # the stand-in's account (no account behind it)
LOCAL_PLIVO_AUTH_ID = "MALOCALDEMO000000001"  # the Plivo stand-in's Auth ID (no account behind it)
LOCAL_TELNYX_ACCOUNT = "5ca1ab1e-0000-4000-8000-00000000beef"  # the Telnyx stand-in's account (none behind it)
LOCAL_TELNYX_API_KEY = "KEY-local-telnyx-api-key"
# each places one call in the demo
OUTBOUND_CARRIERS = {
    "twilio": "Twilio",
    "signalwire": "SignalWire",
    "telnyx": "Telnyx",
    "vonage": "Vonage",
    "plivo": "Plivo",
    "chime": "Chime",
}
LOCAL_SIGNALWIRE_PROJECT = "5ca1ab1e-0000-4000-8000-00000000f00d"  # the SignalWire stand-in's project
SUPPORT_NUMBER = "+15055550161"  # the demo's support line at Twilio, whose call is transferred
TRANSFER_TARGET = "+14155550190"  # the person the demo's warm transfer reaches (TRANSFER_ALLOWED_TARGETS)
LOCAL_SIP_MEDIA_APPLICATION = "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9"  # the Chime stand-in's application
OUTBOUND_FROM = "+15055550142"  # the demo's number at Twilio that calls out


def _event(name: str, tx: str, caller: str, attributes: dict[str, str] | None = None) -> dict[str, Any]:
    event = load_event(name)
    event["CallDetails"]["TransactionId"] = tx
    event["CallDetails"]["Participants"][0]["From"] = caller
    if attributes is not None:
        event["CallDetails"]["TransactionAttributes"] = attributes
    return event


def phone_script(base_url: str, api_key: str, sim: MillisSimulator, steps: Steps) -> None:
    """A phone call through SipMediaAppFunction: Chime's invocations, played from events/ in-process."""
    os.environ.update(DEMO_PHONE)
    sma = load_function("sma_handler")

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        answered: dict[str, Any] = sma.lambda_handler(event, LocalContext(function_name="SipMediaAppFunction"))
        print(json.dumps(answered["Actions"], indent=2))
        return answered

    def action_types(answered: dict[str, Any]) -> list[str]:
        return [action["Type"] for action in answered["Actions"]]

    with httpx.Client(base_url=base_url, headers={"x-api-key": api_key}, timeout=30) as http:
        caller = "+14155550177"
        registered: dict[str, Any] = {}
        # Chime reports no STIR/SHAKEN attestation: a caller-ID claim over Chime needs trust_caller_id or a PIN.
        with steps.step("Your backend registers the caller's call first, trusting caller ID (POST /calls)") as step:
            crm = http.post(
                "/calls",
                json={
                    "agent_id": "crm-agent",
                    "metadata": {"ticket": "T-7"},
                    "lookup_key": caller,
                    "caller_verification": "trust_caller_id",
                },
            )
            registered = step.show(crm)
            step.expect_status(crm, 201)
        if "call_id" not in registered:
            return
        call_id = registered["call_id"]
        tx = "demo-" + call_id[-12:]
        attributes: dict[str, str] = {}
        with steps.step(f"{caller} dials in: NEW_INBOUND_CALL -> CallAndBridge (claims that registration)") as step:
            bridging = invoke(_event("sma-new-inbound-call.json", tx, caller))
            attributes = bridging.get("TransactionAttributes", {})
            if step.expect(action_types(bridging) == ["CallAndBridge"], f"answered {action_types(bridging)}"):
                step.expect(
                    attributes.get("millis_call_id") == call_id,
                    f"bridged {attributes.get('millis_call_id')}, not the registration {call_id}",
                )
        with steps.step("The agent answers: ACTION_SUCCESSFUL") as step:
            bridged = invoke(_event("sma-bridge-succeeded.json", tx, caller, attributes))
            attributes = bridged.get("TransactionAttributes", attributes)
            step.expect(action_types(bridged) == [], f"answered {action_types(bridged)}, expected nothing to do")
        with steps.step("The caller hangs up: HANGUP -> hang up the agent's leg") as step:
            ended = invoke(_event("sma-hangup-caller.json", tx, caller, attributes))
            step.expect(action_types(ended) == ["Hangup"], f"answered {action_types(ended)}, expected [Hangup]")
        with steps.step("The record (GET /calls/{call_id})") as step:
            got = http.get(f"/calls/{call_id}")
            record = step.show(got)
            if step.expect_status(got, 200):
                step.expect(
                    record.get("status") == "ended" and record.get("reason") == "caller_hung_up",
                    f"status {record.get('status')}, reason {record.get('reason')} (expected ended, caller_hung_up)",
                )
        with steps.step(
            "Millis reports the session over (POST /webhooks/millis with the call's own X-Webhook-Secret, no API key)"
        ) as step:
            # Each registration gave Millis a credential of its own (in agent_config.session_data_webhook).
            hook = httpx.post(
                f"{base_url}/webhooks/millis",
                headers={"X-Webhook-Secret": sim.webhook_credential(call_id) or ""},
                json={"call_id": call_id, "call_status": "user-ended", "duration": 42.5},
            )
            step.show(hook)
            if step.expect_status(hook, 200):
                closed = http.get(f"/calls/{call_id}").json()
                step.expect(closed.get("millis_call_status") == "user-ended", "the record lacks millis_call_status")
        if DEMO_PHONE["DEFAULT_AGENT_ID"]:
            title, expected = "registered on the nearest region with DefaultAgentId", ["CallAndBridge"]
        else:  # DEFAULT_AGENT_ID= : no agent takes the call
            title, expected = "no agent takes it (no DefaultAgentId): the failure message", ["Speak", "Hangup"]
        with steps.step(f"Someone with no registration calls: {title}") as step:
            stranger = invoke(_event("sma-new-inbound-call.json", tx + "-2", "+14155550188"))
            step.expect(
                action_types(stranger) == expected,
                f"answered {action_types(stranger)}, expected {expected}",
            )


def twilio_say(response: httpx.Response) -> list[str]:
    """The verbs of a TwiML answer (and the SIP URI of a <Dial><Sip>), for the demo's checks."""
    root = ElementTree.fromstring(response.text)  # noqa: S314 - the local API's own answer
    return [child.tag for child in root] + [(sip.text or "").strip() for sip in root.iter("Sip")]


def twilio_script(base_url: str, api_key: str, steps: Steps) -> None:
    """Calls through Twilio: the webhooks Twilio would send (signed with Twilio's own RequestValidator, as the
    account's auth token signs them) and the TwiML the stack answers; then a SIP server asking GET /route."""
    from dev.carrier_signing import SignedCarrier

    def twilio_post(client: httpx.Client, path: str, params: dict[str, str]) -> httpx.Response:
        return SignedCarrier(base_url, client, LOCAL_KEYS).twilio(path, params)

    with httpx.Client(base_url=base_url, headers={"x-api-key": api_key}, timeout=30) as http:
        with steps.step(f"Route the number {SALES_NUMBER} to an agent (PUT /numbers/{{number}})") as step:
            route = http.put(
                f"/numbers/{SALES_NUMBER}", json={"agent_id": "sales-agent", "metadata": {"team": "sales"}}
            )
            step.show(route)
            step.expect(route.status_code in (200, 201), f"{answer(route)} (expected 201)")
        twilio = httpx.Client(base_url=base_url, timeout=30)  # Twilio sends no API key: its signature instead
        call = {"CallSid": "CA" + "d" * 32, "From": "+14155550199", "To": SALES_NUMBER, "Direction": "inbound"}
        sip_uri = ""
        with steps.step(
            "A caller dials it through Twilio (POST /carriers/twilio/voice, signed) -> <Dial><Sip>"
        ) as step:
            rung = twilio_post(twilio, "/carriers/twilio/voice", call)
            step.show(rung)
            if step.expect_status(rung, 200):
                verbs = twilio_say(rung)
                sip_uri = verbs[-1]
                step.expect(verbs[0] == "Dial" and sip_uri.startswith("sip:"), f"answered {verbs}")
        with steps.step("Twilio retries the webhook: the same answer, no second registration") as step:
            again = twilio_post(twilio, "/carriers/twilio/voice", call)
            step.show(again)
            step.expect(again.text == rung.text, "the retry got another answer")
        with steps.step("A webhook Twilio did not sign is refused (403), nothing registered") as step:
            forged = twilio.post("/carriers/twilio/voice", data={**call, "CallSid": "CA" + "f" * 32})
            step.show(forged)
            step.expect_status(forged, 403)
        with steps.step("The call ends: Twilio's Dial action (POST /carriers/twilio/status) closes the record") as step:
            done = twilio_post(
                twilio, "/carriers/twilio/status", {**call, "DialCallStatus": "completed", "DialCallDuration": "61"}
            )
            step.show(done)
            call_id = sip_uri.removeprefix("sip:call-").split("@")[0]
            record = http.get(f"/calls/{call_id}").json()
            step.expect(
                record.get("status") == "ended" and record.get("duration_seconds") == 61,
                f"status {record.get('status')}, duration {record.get('duration_seconds')} (expected ended, 61)",
            )
        pin_caller = "+14155550166"
        pin = ""
        with steps.step("A backend registers a call its caller must unlock with a PIN (POST /calls)") as step:
            created = http.post(
                "/calls",
                json={"agent_id": "crm-agent", "lookup_key": pin_caller, "caller_verification": "pin"},
            )
            pin = step.show(created).get("pin", "")
            step.expect(len(pin) == 6, "no six-digit pin in the answer")
        pin_call = {"CallSid": "CA" + "e" * 32, "From": pin_caller, "To": SALES_NUMBER}
        with steps.step("That caller rings: the stack asks for the PIN (<Gather>)") as step:
            asked = twilio_post(twilio, "/carriers/twilio/voice", pin_call)
            step.show(asked)
            step.expect(twilio_say(asked)[:1] == ["Gather"], f"answered {twilio_say(asked)}")
        with steps.step("The caller keys it in (Digits): bridged to the backend's registration") as step:
            keyed = twilio_post(twilio, "/carriers/twilio/voice", {**pin_call, "Digits": pin})
            step.show(keyed)
            step.expect(twilio_say(keyed)[:1] == ["Dial"], f"answered {twilio_say(keyed)}")
        twilio.close()
        with steps.step("A SIP server asks where a call goes (GET /route, Accept: text/plain)") as step:
            routed = http.get(
                "/route",
                params={"to": SALES_NUMBER, "from": "+14155550155", "call": "a84b4c76e66710@pbx.example"},
                headers={"Accept": "text/plain"},
            )
            step.show(routed)
            if step.expect_status(routed, 200):
                step.expect(routed.text.startswith("sip:") and "X-Millis-Call-Id=" in routed.text, "not a SIP URI")


def carriers_script(base_url: str, steps: Steps) -> None:
    """One call each through Telnyx (TeXML), Vonage (NCCO) and Plivo (Plivo XML), every webhook signed the way
    the carrier signs it (an Ed25519 key pair, a Vonage HS256 JWT with payload_hash, Plivo's own V3 signer),
    and the end of each call closing its record."""
    import uuid

    from dev.carrier_signing import SignedCarrier

    def telnyx_post(client: httpx.Client, path: str, params: dict[str, str]) -> httpx.Response:
        return SignedCarrier(base_url, client, LOCAL_KEYS).telnyx(path, params)

    def vonage(client: httpx.Client, path: str, payload: dict[str, str], method: str = "POST") -> httpx.Response:
        return SignedCarrier(base_url, client, LOCAL_KEYS).vonage(path, payload, method=method)

    def plivo_post(client: httpx.Client, path: str, params: dict[str, str]) -> httpx.Response:
        return SignedCarrier(base_url, client, LOCAL_KEYS).plivo(path, params)

    def record(client: httpx.Client, call_id: str) -> dict[str, Any]:
        found: dict[str, Any] = client.get(f"/calls/{call_id}", headers={"x-api-key": LOCAL_API_KEY}).json()
        return found

    def ended(step: Step, client: httpx.Client, call_id: str, seconds: int) -> None:
        got = record(client, call_id)
        step.expect(
            got.get("status") == "ended" and got.get("duration_seconds") == seconds,
            f"status {got.get('status')}, duration {got.get('duration_seconds')} (expected ended, {seconds})",
        )

    with httpx.Client(base_url=base_url, timeout=30) as carrier:
        call_id = ""
        telnyx_call = {"CallSid": f"v3:{uuid.uuid4().hex}", "From": "+14155550177", "To": SALES_NUMBER}
        with steps.step("Telnyx TeXML: a call (POST /carriers/telnyx/voice, Ed25519-signed) -> <Dial><Sip>") as step:
            rung = telnyx_post(carrier, "/carriers/telnyx/voice", telnyx_call)
            step.show(rung)
            if step.expect_status(rung, 200):
                verbs = twilio_say(rung)
                step.expect(verbs[0] == "Dial" and verbs[-1].startswith("sip:"), f"answered {verbs}")
                call_id = verbs[-1].removeprefix("sip:call-").split("@")[0]
        with steps.step("Telnyx's Dial action (POST /carriers/telnyx/status) closes the record") as step:
            done = {**telnyx_call, "DialCallStatus": "completed", "DialCallDuration": "42"}
            step.show(telnyx_post(carrier, "/carriers/telnyx/status", done))
            ended(step, carrier, call_id, 42)

        vonage_call = {
            "from": "14155550188",
            "to": SALES_NUMBER.removeprefix("+"),
            "uuid": str(uuid.uuid4()),
            "conversation_uuid": f"CON-{uuid.uuid4()}",
        }
        with steps.step("Vonage: the answer_url (GET /carriers/vonage/answer, signed JWT) -> NCCO connect") as step:
            rung = vonage(carrier, "/carriers/vonage/answer", vonage_call, method="GET")
            step.show(rung)
            ncco = rung.json() if rung.status_code == 200 else []
            actions = ncco if isinstance(ncco, list) else []
            step.expect(
                [a.get("action") for a in actions] == ["connect"], f"answered {[a.get('action') for a in actions]}"
            )
            uri = actions[0]["endpoint"][0]["uri"] if actions else ""
            call_id = uri.removeprefix("sip:call-").split("@")[0]
        with steps.step("Vonage's event_url: the SIP leg completes (POST /carriers/vonage/event)") as step:
            leg = {
                "uuid": str(uuid.uuid4()),
                "conversation_uuid": vonage_call["conversation_uuid"],
                "status": "completed",
                "direction": "outbound",
                "to": uri,
                "duration": "33",
            }
            step.show(vonage(carrier, "/carriers/vonage/event", leg))
            ended(step, carrier, call_id, 33)

        # Plivo writes numbers without the +: the stack reads them in E.164 (the route of SALES_NUMBER applies).
        plivo_call = {
            "CallUUID": str(uuid.uuid4()),
            "From": "14155550199",
            "To": SALES_NUMBER.removeprefix("+"),
            "Direction": "inbound",
        }
        with steps.step(
            "Plivo: the answer URL (POST /carriers/plivo/answer, V3-signed, numbers without +) -> <Dial><User>"
        ) as step:
            rung = plivo_post(carrier, "/carriers/plivo/answer", plivo_call)
            step.show(rung)
            if step.expect_status(rung, 200):
                root = ElementTree.fromstring(rung.text)  # noqa: S314 - the local API's own answer
                users = [(u.text or "").strip() for u in root.iter("User")]
                step.expect(bool(users) and users[0].startswith("sip:"), f"answered {[c.tag for c in root]}")
                call_id = users[0].removeprefix("sip:call-").split("@")[0] if users else ""
                agent = record(carrier, call_id).get("agent_id") if call_id else None
                step.expect(agent == "sales-agent", f"agent {agent} (expected the route's, sales-agent)")
        with steps.step("Plivo's hangup URL (POST /carriers/plivo/status) closes the record") as step:
            done = {**plivo_call, "CallStatus": "completed", "HangupCause": "NORMAL_CLEARING", "Duration": "27"}
            step.show(plivo_post(carrier, "/carriers/plivo/status", done))
            ended(step, carrier, call_id, 27)


def outbound_script(base_url: str, steps: Steps) -> None:
    """One outbound call through each carrier's stand-in: the from number declared, the call placed, the person
    answering, the agent talking, the record closed (docs/outbound.md)."""
    import time

    with httpx.Client(base_url=base_url, headers={"x-api-key": LOCAL_API_KEY}, timeout=30) as http:
        with steps.step(f"Declare {OUTBOUND_FROM} for outbound calls (PUT /numbers/{{number}})") as step:
            route = http.put(
                f"/numbers/{OUTBOUND_FROM}",
                json={"agent_id": "reminder-agent", "outbound_carriers": list(OUTBOUND_CARRIERS)},
            )
            step.show(route)
            step.expect_status(route, 201)
        for carrier, title in OUTBOUND_CARRIERS.items():
            call_id = ""
            with steps.step(f"Place an outbound call (POST /calls/outbound) through {title}") as step:
                placed = http.post(
                    "/calls/outbound",
                    json={
                        "to": "+14155550166",
                        "from": OUTBOUND_FROM,
                        "carrier": carrier,
                        "metadata": {"visit": "Tue"},
                    },
                )
                step.show(placed)
                if step.expect_status(placed, 202):
                    call_id = placed.json()["call_id"]
            with steps.step(
                f"{title} rings, the person answers, the agent talks, the record closes (GET /calls/{{call_id}})"
            ) as step:
                record: dict[str, Any] = {}
                deadline = time.monotonic() + 10
                while call_id and time.monotonic() < deadline:
                    record = http.get(f"/calls/{call_id}").json()
                    if record.get("status") == "ended":
                        break
                    time.sleep(0.1)
                print(json.dumps(record, indent=2))
                step.expect(
                    record.get("status") == "ended" and bool(record.get("bridged_at")),
                    f"status {record.get('status')} (expected ended, after bridged)",
                )


def transfer_script(base_url: str, steps: Steps) -> None:
    """A Twilio call the stack answered, handed to a person with a warm transfer (docs/transfers.md): the call
    update goes to Twilio's stand-in, which plays the new TwiML through the stack's whisper and status URLs."""
    import time

    from dev.carrier_signing import SignedCarrier

    with httpx.Client(base_url=base_url, headers={"x-api-key": LOCAL_API_KEY}, timeout=30) as http:
        twilio = SignedCarrier(base_url, httpx.Client(base_url=base_url, timeout=30), LOCAL_KEYS)
        with steps.step(f"Route {SUPPORT_NUMBER} to the support agent (PUT /numbers/{{number}})") as step:
            route = http.put(f"/numbers/{SUPPORT_NUMBER}", json={"agent_id": "support-agent"})
            step.show(route)
            step.expect(route.status_code in (200, 201), f"{answer(route)} (expected 201)")
        call = {"CallSid": "CA" + "7" * 32, "From": "+14155550160", "To": SUPPORT_NUMBER, "Direction": "inbound"}
        call_id = ""
        with steps.step("A caller reaches the support agent through Twilio (POST /carriers/twilio/voice)") as step:
            rung = twilio.twilio("/carriers/twilio/voice", call)
            step.show(rung)
            if step.expect_status(rung, 200):
                call_id = twilio_say(rung)[-1].removeprefix("sip:call-").split("@")[0]
        with steps.step("The agent hands the caller to a person, warm (POST /calls/{call_id}/transfer)") as step:
            moved = http.post(
                f"/calls/{call_id}/transfer",
                json={
                    "to": TRANSFER_TARGET,
                    "mode": "warm",
                    "summary": "A caller about the yearly plan.",
                    "announce": "Putting you through.",
                },
            )
            step.show(moved)
            step.expect_status(moved, 202)
        with steps.step("The person hears the summary, then takes the call (GET /calls/{call_id})") as step:
            record: dict[str, Any] = {}
            deadline = time.monotonic() + 10
            while call_id and time.monotonic() < deadline:
                record = http.get(f"/calls/{call_id}").json()
                if (record.get("transfer") or {}).get("status") in ("connected", "failed"):
                    break
                time.sleep(0.1)
            print(json.dumps(record.get("transfer"), indent=2))
            status = (record.get("transfer") or {}).get("status")
            step.expect(status == "connected", f"transfer {status} (expected connected)")
        # A SIP server's call whose agent sends SIP REFER: the server asks before it relays it, then reports how it
        # went (examples/kamailio does both; docs/sip-servers.md, "REFER").
        sip_call = {"to": SUPPORT_NUMBER, "from": "+14155550165", "call": "refer-demo-1@pbx.example"}
        with steps.step("A SIP server's call reaches the support agent (GET /route)") as step:
            routed = http.get("/route", params=sip_call, headers={"Accept": "text/plain"})
            step.show(routed)
            step.expect_status(routed, 200)
        with steps.step("Its agent sends REFER: may the server relay it? (GET /route/refer)") as step:
            refer = {"call": sip_call["call"], "to": f"<tel:{TRANSFER_TARGET}>"}
            allowed = http.get("/route/refer", params=refer, headers={"Accept": "text/plain"})
            step.show(allowed)
            if step.expect_status(allowed, 200):
                step.expect(allowed.text.strip() == TRANSFER_TARGET, f"target {allowed.text.strip()!r}")
        with steps.step("The carrier's NOTIFY says the person answered (GET /route/refer/status)") as step:
            told = http.get(
                "/route/refer/status",
                params={"call": sip_call["call"], "code": "200"},
                headers={"Accept": "text/plain"},
            )
            step.show(told)
            if step.expect_status(told, 200):
                step.expect(told.text.strip() == "connected", f"answered {told.text.strip()!r}")


def events_script(steps: Steps) -> None:
    """The call events of everything above (docs/events.md): the calls table's stream read from DynamoDB Local,
    handed to EventsFunction as Lambda's event source mapping would, put on a stand-in bus; one line each."""
    import jsonschema

    from dev.event_bus import LocalEventBus
    from dev.stream_events import CallsStream, deliver
    from dev.template import ROOT
    from millis_sip.wiring import call_events

    with steps.step("Call events: the calls table's stream through EventsFunction to a stand-in bus") as step:
        bus = LocalEventBus()
        os.environ["EVENT_BUS_NAME"] = bus.name
        try:
            events = load_function("events_handler")
            events.publisher = call_events(bus=bus)  # type: ignore[attr-defined]
        finally:
            os.environ.pop("EVENT_BUS_NAME", None)
        stream = CallsStream(os.environ["AWS_ENDPOINT_URL_DYNAMODB"], TABLES.calls)
        failed = deliver(stream.read(), events.lambda_handler)
        for event in bus.events:
            print(bus.line(event))
        schema = json.loads((ROOT / "docs" / "events" / "call-events.schema.json").read_text())
        checker = jsonschema.Draft202012Validator(schema)
        invalid = [e["detail-type"] for e in bus.events if not checker.is_valid(e)]
        print(f"{len(bus.events)} events, in {bus.requests} PutEvents requests")
        step.expect(not failed, f"{len(failed)} stream records not published")
        step.expect(bool(bus.events), "no events")
        step.expect(not invalid, f"events not as docs/events/call-events.schema.json says: {invalid[:3]}")


def vonage_application_key() -> tuple[str, Any]:
    """A key pair for the Vonage stand-in's application, made for this run (PKCS#8 PEM, as Vonage hands it out)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode(), key.public_key()


class PortInUse(Exception):
    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} is in use")
        self.port = port


def check_port(port: int) -> None:
    """Fails fast, before DynamoDB Local starts, when the API's port is taken (0 picks a free one)."""
    if port == 0:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the API server binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(port) from None
            raise


@contextlib.contextmanager
def local_stack(port: int, verbose: bool) -> Iterator[tuple[LocalApi, MillisSimulator | None]]:
    check_port(port)
    real_key = os.environ.get("MILLIS_API_KEY", "").strip()
    with contextlib.ExitStack() as stack:
        ddb = stack.enter_context(DynamoDBLocal())
        sim: MillisSimulator | None = None
        if real_key:
            print("MILLIS_API_KEY is set: registering with real Millis.")
        else:
            sim = stack.enter_context(MillisSimulator())
        env = function_env(
            tables=TABLES,
            dynamodb_endpoint=ddb.endpoint,
            webhook_secret=LOCAL_WEBHOOK_SECRET,
            keys_secret=LOCAL_KEYS_SECRET,
            millis=sim.env() if sim is not None else {"MILLIS_API_KEY": real_key},
            region=os.environ.get("AWS_REGION", REGION),
            log_level="INFO" if verbose else "ERROR",
            metrics=verbose,
        )
        os.environ.update(env)
        create_tables(ddb.endpoint, TABLES, region=env["AWS_REGION"])
        functions: dict[str, ModuleType] = {}
        try:
            api = LocalApi(
                lambda event, context: functions["api"].lambda_handler(event, context),
                api_key=LOCAL_API_KEY,
                port=port,
                functions={
                    "InboundFunction": lambda event, context: functions["inbound"].lambda_handler(event, context)
                },
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(port) from None
            raise
        # Outbound calls through stand-ins for the carriers' call-control APIs (dev/carrier_api.py), to the US and
        # Canada.
        twilio = stack.enter_context(TwilioStandIn(LOCAL_TWILIO_ACCOUNT, LOCAL_KEYS.twilio_auth_token).running())
        plivo = stack.enter_context(PlivoStandIn(LOCAL_PLIVO_AUTH_ID, LOCAL_KEYS.plivo_auth_token).running())
        telnyx = stack.enter_context(
            TelnyxStandIn(LOCAL_TELNYX_ACCOUNT, LOCAL_TELNYX_API_KEY, LOCAL_KEYS.telnyx_key).running()
        )
        vonage_pem, vonage_public = vonage_application_key()
        vonage = stack.enter_context(
            VonageStandIn(LOCAL_KEYS.vonage_application, vonage_public, LOCAL_KEYS.vonage_secret).running()
        )
        # Chime's stand-in invokes SipMediaAppFunction in-process, as Chime would (loaded on its first call).
        outbound_sma: list[ModuleType] = []

        def sma_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            if not outbound_sma:
                os.environ.update(DEMO_PHONE)
                outbound_sma.append(load_function("sma_handler"))
            answered: dict[str, Any] = outbound_sma[0].lambda_handler(event, context)
            return answered

        chime = stack.enter_context(ChimeStandIn(LOCAL_SIP_MEDIA_APPLICATION, sma_handler).running())
        # SignalWire signs with the project's signing key, kept in the Twilio credential (docs/carriers/twilio.md).
        signalwire = stack.enter_context(
            SignalWireStandIn(LOCAL_SIGNALWIRE_PROJECT, "PT-local-api-token", LOCAL_KEYS.twilio_auth_token).running()
        )
        # botocore's own endpoint setting for chime-sdk-voice: kept for the demo's life (the client is made when
        # the first call is placed).
        os.environ["AWS_ENDPOINT_URL_CHIME_SDK_VOICE"] = chime.url
        outbound = {
            "PUBLIC_BASE_URL": api.url,
            "OUTBOUND_ALLOWED_PREFIXES": "+1",
            "CHIME_SIP_MEDIA_APPLICATION_ID": LOCAL_SIP_MEDIA_APPLICATION,
            "TRANSFER_ALLOWED_TARGETS": TRANSFER_TARGET,
            "SIGNALWIRE_SPACE_URL": signalwire.url,
            "SIGNALWIRE_PROJECT_ID": LOCAL_SIGNALWIRE_PROJECT,
            "SIGNALWIRE_API_TOKEN": "PT-local-api-token",
            "TWILIO_ACCOUNT_SID": LOCAL_TWILIO_ACCOUNT,
            "TWILIO_AUTH_TOKEN": LOCAL_KEYS.twilio_auth_token,
            "TWILIO_API_URL": twilio.url,
            "PLIVO_AUTH_ID": LOCAL_PLIVO_AUTH_ID,
            "PLIVO_AUTH_TOKEN": LOCAL_KEYS.plivo_auth_token,
            "PLIVO_API_URL": plivo.url,
            "TELNYX_ACCOUNT_SID": LOCAL_TELNYX_ACCOUNT,
            "TELNYX_APPLICATION_ID": "1293384261075731499",
            "TELNYX_API_KEY": LOCAL_TELNYX_API_KEY,
            "TELNYX_API_URL": telnyx.url,
            "VONAGE_APPLICATION_ID": LOCAL_KEYS.vonage_application,
            "VONAGE_PRIVATE_KEY": vonage_pem,
            "VONAGE_API_URL": vonage.url,
        }
        os.environ.update(outbound)
        handler = functions["api"] = load_function("api_handler")
        # The call path: the carriers' webhooks and GET /route, signed for the URL the local API is reached at.
        inbound = {
            "PUBLIC_BASE_URL": api.url,
            "TRANSFER_ALLOWED_TARGETS": TRANSFER_TARGET,
            **LOCAL_KEYS.env(),
            **DEMO_PHONE,
        }
        os.environ.update(inbound)
        functions["inbound"] = load_function("inbound_handler")
        for name in {**inbound, **outbound}:
            os.environ.pop(name, None)
        stack.enter_context(api)
        region = handler.settings.millis_region
        print(f"DynamoDB Local      {ddb.endpoint} (tables {TABLES.calls}, {TABLES.numbers}, ... from template.yaml)")
        print(
            f"Millis              {'real' if real_key else f'simulator on 127.0.0.1:{sim.port if sim else 0}'}; "
            f"AWS_REGION={env['AWS_REGION']} -> {region.primary} first ({region.basis}), {region.fallback} fallback"
        )
        print(f"API                 {api.url} (x-api-key: {LOCAL_API_KEY})")
        yield api, sim


def serve_hint(api_url: str) -> str:
    register = httpx.Request(
        "POST",
        f"{api_url}/calls",
        headers={"x-api-key": LOCAL_API_KEY},
        json={"agent_id": "my-agent", "lookup_key": "+14155550123"},
    )
    lookup = httpx.Request(
        "GET", f"{api_url}/calls", params={"lookup_key": "+14155550123"}, headers={"x-api-key": LOCAL_API_KEY}
    )
    route = httpx.Request(
        "GET",
        f"{api_url}/route",
        params={"to": SALES_NUMBER, "from": "+14155550123", "call": "serve-1@pbx.example"},
        headers={"x-api-key": LOCAL_API_KEY, "accept": "text/plain"},
    )
    return f"\nServing on {api_url} until Ctrl-C. Try:\n  {curl(register)}\n  {curl(lookup)}\n  {curl(route)}"


def main() -> int:
    # Each line as it is printed, also when the output goes to a file or a pipe (make serve > serve.log).
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help="keep the API up after the script, until Ctrl-C")
    parser.add_argument(
        "--port",
        type=int,
        help=f"the API's port (default: a free one; with --serve the PORT variable, else {SERVE_PORT})",
    )
    parser.add_argument("--verbose", action="store_true", help="show the function's log lines and metrics")
    args = parser.parse_args()
    port: int = args.port if args.port is not None else 0
    if args.port is None and args.serve:
        raw = os.environ.get("PORT", "").strip() or str(SERVE_PORT)
        if not raw.isdigit():
            parser.error(f"PORT={raw!r} is not a port number")
        port = int(raw)
    try:
        with local_stack(port, args.verbose) as (api, sim):
            steps = Steps()
            script(api.url, LOCAL_API_KEY, sim, steps)
            what = "registered, read back and looked up a call"
            if sim is not None:
                phone_script(api.url, LOCAL_API_KEY, sim, steps)
                twilio_script(api.url, LOCAL_API_KEY, steps)
                carriers_script(api.url, steps)
                outbound_script(api.url, steps)
                transfer_script(api.url, steps)
                events_script(steps)
                what += (
                    "; bridged phone calls from Chime, Twilio, Telnyx, Vonage, Plivo and a SIP server"
                    f"; placed outbound calls through {', '.join(OUTBOUND_CARRIERS.values())}"
                    "; transferred a carrier's call and a SIP server's (REFER) to a person"
                )
            print(f"\n{steps.summary(what)}")
            if sim is None and not steps.ok:
                print(
                    "MILLIS_API_KEY is set, so the demo used real Millis: check the key, or unset it for the simulator."
                )
            if args.serve:
                if sim is not None:
                    sim.clear()
                print(serve_hint(api.url))
                stop = threading.Event()
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
                with contextlib.suppress(KeyboardInterrupt):
                    stop.wait()
                print("\nStopping.")
            return 0 if steps.ok else 1
    except PortInUse as exc:
        how = f"pick another, e.g. PORT={exc.port + 1} make serve" if args.serve else "leave out --port for a free one"
        print(f"Port {exc.port} is in use: {how}.", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

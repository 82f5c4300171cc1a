"""The main job on an embedded default: no AWS account, no Docker.

Starts DynamoDB Local and creates the tables from template.yaml, starts the Millis simulator (or uses
real Millis when MILLIS_API_KEY is set), serves the API on loopback the way `sam local start-api` would
(on a free port; with --serve on PORT, default 3000), and runs a short scripted call: register, get,
carrier lookup. With the simulator it then plays a phone call through SipMediaAppFunction (the events/
files, in-process). Each step prints the curl command that does the same by hand; the last line names the
first step that did not answer as expected. With --serve it then keeps the API up for curl until Ctrl-C.
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
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import httpx

from dev.dynamodb_local import DynamoDBLocal
from dev.events import load_event
from dev.function_env import REGION, SIMULATOR_VOICE_CONNECTORS, function_env
from dev.functions import load_function
from dev.lambda_context import LocalContext
from dev.local_api import LocalApi
from dev.millis_simulator import Fault, MillisSimulator
from dev.template import create_tables

TABLE = "millis-sip-bridge-calls"
IDEMPOTENCY_TABLE = "millis-sip-bridge-idempotency"
LOCAL_API_KEY = "local-api-key"
LOCAL_WEBHOOK_SECRET = "local-webhook-secret"  # noqa: S105 - the local stand-in for the generated secret
SERVE_PORT = 3000

# The headers a user types, in the order they are printed, spelled as docs/api.md spells them.
SHOWN_HEADERS = {
    "x-api-key": "x-api-key",
    "content-type": "content-type",
    "idempotency-key": "Idempotency-Key",
    "x-webhook-secret": "X-Webhook-Secret",
}


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
        if name in sent:
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


DEMO_PHONE = {**SIMULATOR_VOICE_CONNECTORS, "DEFAULT_AGENT_ID": "demo-phone-agent"}


def _event(name: str, tx: str, caller: str, attributes: dict[str, str] | None = None) -> dict[str, Any]:
    event = load_event(name)
    event["CallDetails"]["TransactionId"] = tx
    event["CallDetails"]["Participants"][0]["From"] = caller
    if attributes is not None:
        event["CallDetails"]["TransactionAttributes"] = attributes
    return event


def phone_script(base_url: str, api_key: str, steps: Steps) -> None:
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
        with steps.step("Your backend registers the caller's call first (POST /calls)") as step:
            crm = http.post(
                "/calls", json={"agent_id": "crm-agent", "metadata": {"ticket": "T-7"}, "lookup_key": caller}
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
            "Millis reports the session over (POST /webhooks/millis, X-Webhook-Secret, no API key)"
        ) as step:
            hook = httpx.post(
                f"{base_url}/webhooks/millis",
                headers={"X-Webhook-Secret": LOCAL_WEBHOOK_SECRET},
                json={"call_id": call_id, "call_status": "user-ended", "duration": 42.5},
            )
            step.show(hook)
            if step.expect_status(hook, 200):
                closed = http.get(f"/calls/{call_id}").json()
                step.expect(closed.get("millis_call_status") == "user-ended", "the record lacks millis_call_status")
        with steps.step(
            "Someone with no registration calls: registered on the nearest region with DefaultAgentId"
        ) as step:
            stranger = invoke(_event("sma-new-inbound-call.json", tx + "-2", "+14155550188"))
            step.expect(
                action_types(stranger) == ["CallAndBridge"],
                f"answered {action_types(stranger)}, expected CallAndBridge",
            )


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
            calls_table=TABLE,
            idempotency_table=IDEMPOTENCY_TABLE,
            dynamodb_endpoint=ddb.endpoint,
            webhook_secret=LOCAL_WEBHOOK_SECRET,
            millis=sim.env() if sim is not None else {"MILLIS_API_KEY": real_key},
            region=os.environ.get("AWS_REGION", REGION),
            log_level="INFO" if verbose else "ERROR",
            metrics=verbose,
        )
        os.environ.update(env)
        create_tables(ddb.endpoint, TABLE, IDEMPOTENCY_TABLE, region=env["AWS_REGION"])
        handler = load_function("api_handler")
        try:
            api = stack.enter_context(LocalApi(handler.lambda_handler, api_key=LOCAL_API_KEY, port=port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(port) from None
            raise
        region = handler.settings.millis_region
        print(f"DynamoDB Local      {ddb.endpoint} (table {TABLE}, from template.yaml)")
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
    return f"\nServing on {api_url} until Ctrl-C. Try:\n  {curl(register)}\n  {curl(lookup)}"


def main() -> int:
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
                phone_script(api.url, LOCAL_API_KEY, steps)
                what += "; bridged a phone call"
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

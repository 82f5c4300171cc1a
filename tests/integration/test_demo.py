"""`make demo`, the README's first command, run as a user runs it: it must end with Demo OK and leave
nothing running; it must not need the port `make serve` uses; its curl lines must be what a user types;
and when a step fails, the last line must name that step."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from dev.demo import LOCAL_API_KEY, Steps, curl, printable_url, script
from dev.local_api import LocalApi
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def run_demo(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dev.demo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "AWS_REGION": "us-west-2", **env},
        timeout=180,
        check=False,
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def test_the_demo_runs_the_http_and_the_phone_call_script_without_the_serve_port(
    tmp_path: Path, taken_port: int
) -> None:
    result = run_demo(tmp_path, PORT=str(taken_port))  # `make demo` while `make serve`'s port is taken
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (
        "Demo OK: registered, read back and looked up a call; bridged phone calls from Chime, Twilio, Telnyx, "
        "Vonage, Plivo and a SIP server; placed outbound calls through Twilio, SignalWire, Telnyx, Vonage, Plivo, "
        "Chime; transferred a carrier's call and a SIP server's (REFER) to a person." in result.stdout
    )
    assert "NEW_INBOUND_CALL -> CallAndBridge" in result.stdout
    # The call events of the demo's calls (docs/events.md), one line each, schema-checked by the demo itself.
    assert "--- Call events" in result.stdout and " events, in " in result.stdout
    for kind in ("Call Registered", "Call Claimed", "Call Bridged", "Call Ended", "Call Transferred", "Call Queued"):
        assert f" {kind} " in result.stdout, kind
    assert f":{taken_port}" not in result.stdout
    curls = [line for line in result.stdout.splitlines() if line.startswith("$ curl")]
    assert any("-H 'Idempotency-Key: demo-order-1'" in line for line in curls)
    assert any("lookup_key=%2B14155550100" in line for line in curls)
    webhook = next(line for line in curls if "/webhooks/millis" in line)
    assert "-H 'X-Webhook-Secret: " in webhook and "local-webhook-secret" not in webhook  # the call's own
    assert "x-api-key" not in webhook


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_make_call_plays_each_carriers_call_against_make_serve_writing_to_a_pipe(tmp_path: Path) -> None:
    """`make serve` says it is ready while its output goes to a pipe (not only at shutdown); `make call` then
    reaches an agent through each carrier, signed as the carrier signs; with DEFAULT_AGENT_ID= (no default agent)
    a number without a route gets 404 no_agent; SIGTERM stops the server."""
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "AWS_REGION": "us-west-2"}
    server = subprocess.Popen(
        [sys.executable, "-m", "dev.demo", "--serve"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "PORT": str(port), "DEFAULT_AGENT_ID": ""},
    )
    try:
        assert server.stdout is not None
        seen = []
        for line in server.stdout:  # line by line as printed: the pipe is not held back until the end
            seen.append(line)
            if line.startswith("Serving on"):
                break
        assert any(line.startswith("Demo OK") for line in seen), "".join(seen[-40:])

        def call(carrier: str, to: str = "+15055550123") -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "dev.call"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                env={**env, "PORT": str(port), "CARRIER": carrier, "TO": to},
                timeout=60,
                check=False,
            )

        for carrier in ("twilio", "signalwire", "telnyx", "vonage", "plivo", "sip"):
            played = call(carrier)
            assert played.returncode == 0, played.stdout + played.stderr
            assert "reached an agent" in played.stdout and f"127.0.0.1:{port}/calls/" in played.stdout
        nobody = call("sip", "+15055550177")  # no route, and no default agent
        assert nobody.returncode == 1 and "HTTP 404" in nobody.stdout and "no_agent" in nobody.stdout, nobody.stdout
        bad = call("twilio", "5055550123")
        assert bad.returncode == 2 and "not an E.164 number" in bad.stderr
    finally:
        server.terminate()
        rest, _ = server.communicate(timeout=30)
    assert server.returncode == 0 and "Stopping." in rest


def test_serve_on_a_taken_port_says_how_to_move_it(tmp_path: Path, taken_port: int) -> None:
    result = run_demo(tmp_path, "--serve", PORT=str(taken_port))
    assert result.returncode == 2
    assert f"Port {taken_port} is in use" in result.stderr
    assert "make serve" in result.stderr
    assert "PORT=" in result.stderr


def test_curl_lines_carry_the_headers_a_user_must_type() -> None:
    register = httpx.Request(
        "POST",
        "http://127.0.0.1:3000/calls",
        headers={"x-api-key": LOCAL_API_KEY, "Idempotency-Key": "order-1"},
        json={"agent_id": "a", "lookup_key": "+14155550100"},
    )
    assert curl(register) == (
        "curl -s -X POST 'http://127.0.0.1:3000/calls' -H 'x-api-key: local-api-key' "
        "-H 'content-type: application/json' -H 'Idempotency-Key: order-1' "
        """-d '{"agent_id":"a","lookup_key":"+14155550100"}'"""
    )
    lookup = httpx.Request("GET", "http://127.0.0.1:3000/calls", params={"lookup_key": "+14155550100"})
    assert curl(lookup) == "curl -s 'http://127.0.0.1:3000/calls?lookup_key=%2B14155550100'"
    quoted = httpx.Request("POST", "http://h/calls", json={"metadata": {"name": "O'Brien"}})
    assert curl(quoted).endswith("""-d '{"metadata":{"name":"O'\\''Brien"}}'""")
    assert printable_url("http://h/calls?lookup_key=+1415") == "http://h/calls?lookup_key=%201415"  # + is a space
    assert printable_url("http://h/calls?lookup_key=%2B1415") == "http://h/calls?lookup_key=%2B1415"


def test_a_failing_step_is_named(make_api: Callable[..., ModuleType], capsys: pytest.CaptureFixture[str]) -> None:
    api = make_api(MILLIS_API_KEY="not-the-simulators-key")  # Millis answers 401: POST /calls answers 502
    steps = Steps()
    with LocalApi(api.lambda_handler, api_key=LOCAL_API_KEY, port=0) as local:
        script(local.url, LOCAL_API_KEY, None, steps)
    summary = steps.summary("registered, read back and looked up a call")
    assert summary == 'Demo FAILED at "Register a call (POST /calls)": HTTP 502 millis_key_rejected (expected 201)'
    assert "!!! not as expected: HTTP 502 millis_key_rejected" in capsys.readouterr().out


def test_the_summary_names_the_first_failure_and_counts_the_rest() -> None:
    steps = Steps()
    with steps.step("one") as step:
        step.expect(True, "fine")
    with steps.step("two") as step:
        step.expect(False, "HTTP 503 millis_unavailable (expected 201)")
    with steps.step("three") as step:
        raise httpx.ConnectError("refused")
    assert not steps.ok
    assert steps.summary("x") == 'Demo FAILED at "two": HTTP 503 millis_unavailable (expected 201) (and 1 later step)'
    assert steps.failed[1] == ("three", "ConnectError: refused")
    assert Steps().summary("did it all") == "Demo OK: did it all."

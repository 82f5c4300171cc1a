"""A Millis API simulator: a real HTTP server on loopback implementing ``POST /register_sip_call`` as
documented (docs/development.md, "Millis simulator"), with per-region faults for tests and demos.

Each Millis region is a path prefix on one server: ``http://127.0.0.1:<port>/us-west`` and ``.../eu-west``
are the two base URLs. Faults can be set in-process (``sim.set_fault``) or over HTTP:

    POST   /_sim/faults/<region>   {"status": 503, "delay": 0, "drop": false, "body": null, "times": null}
    DELETE /_sim/faults            clear every fault (answers still held back by a delay are not given)
    GET    /_sim/requests          what the simulator received (Authorization shown as present/absent only)

A region that is slow but never silent drips its answer: ``{"drip": 1.5}`` sends the status line and headers at
once, then the body one byte every 1.5 s; with ``"drip_headers": true`` the drip starts at the status line's
first byte, so the client is still reading the headers. Every byte arrives well within any read timeout, yet
the answer takes its length times the pause (a registration's body is about 110 bytes: close to three minutes
at 1.5 s). What drips is the answer the region would give otherwise: a registration, or the fault's ``status``
and ``body``; with ``delay`` too, the drip starts after it.

Run it alone: ``python -m dev.millis_simulator --port 8080 --api-key sim-key``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REGIONS = ("us-west", "eu-west")


def sip_host(region: str) -> str:
    """The host of the SIP URIs a simulated region returns (what the Voice Connectors of dev/function_env.py
    route to)."""
    return f"sip-{region}.millis-simulator.test"


FIELDS = {"agent_id": str, "agent_config": dict, "metadata": dict, "include_metadata_in_prompt": bool}


@dataclass
class Fault:
    """What a region does instead of answering normally. ``times``: for the next N requests only."""

    status: int | None = None
    body: str | None = None
    delay: float = 0.0
    drop: bool = False
    echo: bool = False  # answer FastAPI's way, echoing the request body as the offending input (422 unless told)
    drip: float = 0.0  # seconds between the bytes of the answer (0: all at once)
    drip_headers: bool = False  # drip from the status line on, not only the body
    times: int | None = None


@dataclass
class Received:
    region: str
    path: str
    authorization: str | None
    body: Any
    at: float = field(default_factory=time.time)


class MillisSimulator:
    def __init__(
        self,
        api_key: str = "sim-private-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        uri_field: str = "sip_uri",
        known_agents: set[str] | None = None,
        sip_hosts: dict[str, str] | None = None,
    ) -> None:
        self.api_key = api_key
        self.uri_field = uri_field
        self.known_agents = known_agents
        # Where each region's SIP URIs point: a name by default, or a real SIP server (host:port) for SIP tests.
        self.sip_hosts = dict(sip_hosts or {})
        self.received: list[Received] = []
        self.issued: list[tuple[str, str]] = []  # (call_id, SIP URI) of every registration answered
        self.bodies: dict[str, Any] = {}  # call_id -> the registration's body, as Millis received it
        self._faults: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._generation = 0  # how many times clear() ran: a delayed answer from before one is not given
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def base_url(self, region: str) -> str:
        return f"http://127.0.0.1:{self.port}/{region}"

    def env(self) -> dict[str, str]:
        """The environment that points the bridge at this simulator."""
        return {
            "MILLIS_US_WEST_URL": self.base_url("us-west"),
            "MILLIS_EU_WEST_URL": self.base_url("eu-west"),
            "MILLIS_API_KEY": self.api_key,
        }

    def start(self) -> MillisSimulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="millis-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MillisSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults and records -------------------------------------------------------------------

    def set_fault(self, region: str, fault: Fault) -> None:
        if region not in REGIONS:
            raise ValueError(f"unknown region {region!r}")
        with self._lock:
            self._faults[region] = fault

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._faults.clear()
            self.received.clear()
            self.issued.clear()
            self.bodies.clear()

    def reset(self) -> None:
        """``clear()``, and the answers back to their defaults (field name, known agents, SIP hosts)."""
        self.clear()
        self.uri_field = "sip_uri"
        self.known_agents = None
        self.sip_hosts = {}

    def registrations(self, region: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if region is None or r.region == region]

    def webhook_credential(self, call_id: str) -> str | None:
        """What Millis would send back in X-Webhook-Secret when ``call_id``'s session ends (None: no webhook)."""
        with self._lock:
            body = self.bodies.get(call_id) or {}
        hook = (body.get("agent_config") or {}).get("session_data_webhook") or {}
        value = (hook.get("headers") or {}).get("X-Webhook-Secret")
        return str(value) if value is not None else None

    def _take_fault(self, region: str) -> Fault | None:
        with self._lock:
            fault = self._faults.get(region)
            if fault is None:
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self._faults[region]
            return fault

    def _record(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)

    # --- the documented contract --------------------------------------------------------------

    def register(self, region: str, authorization: str | None, raw: bytes) -> tuple[int, dict[str, Any]]:
        if authorization != self.api_key:
            return 401, {"detail": "Invalid API key"}
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return 422, {"detail": [{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}]}
        if not isinstance(body, dict):
            return 422, {"detail": [{"loc": ["body"], "msg": "Input should be an object", "type": "dict_type"}]}
        problems = [
            {"loc": ["body", name], "msg": f"Input should be {kind.__name__}", "type": f"{kind.__name__}_type"}
            for name, kind in FIELDS.items()
            if body.get(name) is not None and not isinstance(body[name], kind)
        ]
        if problems:
            return 422, {"detail": problems}
        agent_id = body.get("agent_id")
        if agent_id is None and body.get("agent_config") is None:
            return 422, {"detail": "agent_id or agent_config is required"}
        if agent_id is not None and self.known_agents is not None and agent_id not in self.known_agents:
            return 404, {"detail": f"Agent {agent_id} not found"}
        call_id = f"sim-{uuid.uuid4().hex[:20]}"
        host = self.sip_hosts.get(region) or sip_host(region)
        uri = f"sip:call-{call_id}@{host}"
        with self._lock:
            self.issued.append((call_id, uri))
            self.bodies[call_id] = body
        return 200, {"call_id": call_id, self.uri_field: uri}


def _handler_for(sim: MillisSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "MillisSimulator/1"
        # Headers and body go out in separate writes: with Nagle's algorithm the body would wait for the
        # client's delayed ACK of the headers (40 ms on loopback), a delay no real server adds.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            return

        def _read(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, payload: Any = None, raw: str | None = None, fault: Fault | None = None) -> None:
            data = raw.encode() if raw is not None else json.dumps(payload).encode()
            if fault is not None and fault.drip > 0:
                self._drip(status, data, fault.drip, headers=fault.drip_headers)
                return
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        def _drip(self, status: int, data: bytes, pause: float, *, headers: bool) -> None:
            """The answer one byte at a time, ``pause`` seconds apart: the body only, or from the status line on."""
            head = (
                f"{self.protocol_version} {status} {self.responses.get(status, ('',))[0]}\r\n"
                f"Server: {self.version_string()}\r\nDate: {self.date_time_string()}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode("latin-1")
            at_once, dripped = (b"", head + data) if headers else (head, data)
            self.close_connection = True
            with contextlib.suppress(OSError):  # the client gave up: the next byte finds the connection gone
                self.wfile.write(at_once)
                for i in range(len(dripped)):
                    time.sleep(pause)
                    self.wfile.write(dripped[i : i + 1])

        def do_POST(self) -> None:
            raw = self._read()
            parts = self.path.strip("/").split("/")
            if parts[:2] == ["_sim", "faults"] and len(parts) == 3 and parts[2] in REGIONS:
                sim.set_fault(parts[2], Fault(**json.loads(raw or b"{}")))
                self._send(204, raw="")
                return
            if len(parts) != 2 or parts[0] not in REGIONS or parts[1] != "register_sip_call":
                self._send(404, {"detail": "Not Found"})
                return
            region = parts[0]
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            sim._record(Received(region, self.path, self.headers.get("Authorization"), body))
            generation = sim._generation
            fault = sim._take_fault(region)
            if fault is not None:
                if fault.delay:
                    time.sleep(fault.delay)
                    if sim._generation != generation:  # cleared meanwhile: the test that asked is over
                        self.close_connection = True
                        return
                if fault.drop:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault.echo:
                    detail = [{"loc": ["body"], "msg": "simulated", "type": "value_error", "input": body}]
                    self._send(fault.status or 422, {"detail": detail}, fault=fault)
                    return
                if fault.status is not None or fault.body is not None:
                    status = fault.status or 200
                    if fault.body is not None:
                        self._send(status, raw=fault.body, fault=fault)
                    else:
                        self._send(status, {"detail": f"simulated HTTP {status}"}, fault=fault)
                    return
            status, payload = sim.register(region, self.headers.get("Authorization"), raw)
            self._send(status, payload, fault=fault)

        def do_DELETE(self) -> None:
            self._read()
            if self.path.rstrip("/") == "/_sim/faults":
                sim.clear()
                self._send(204, raw="")
            else:
                self._send(404, {"detail": "Not Found"})

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/_sim/requests":
                shown = [
                    {**asdict(r), "authorization": "present" if r.authorization else "absent"}
                    for r in sim.registrations()
                ]
                self._send(200, shown)
            else:
                self._send(404, {"detail": "Not Found"})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 lets sam local containers reach it")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--api-key", default="sim-private-key")
    parser.add_argument("--uri-field", choices=["sip_uri", "sip"], default="sip_uri")
    args = parser.parse_args()
    sim = MillisSimulator(args.api_key, host=args.host, port=args.port, uri_field=args.uri_field).start()
    print(f"Millis simulator on http://{args.host}:{sim.port}/us-west and /eu-west (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sim.stop()


if __name__ == "__main__":
    main()

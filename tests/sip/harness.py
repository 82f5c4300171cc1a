"""Real-SIP harness: Kamailio running examples/kamailio/kamailio.cfg (the very file users deploy) between a SIPp
"carrier" placing calls (UAC) and a SIPp stand-in for Millis' SIP server (UAS), asking a route API over HTTP.

Everything listens on 127.0.0.1 only, on free ports. The route API is a parameter (base URL + API key): the
stand-in `RouteServer` below, or any other server that speaks the `/route` contract (the project's local API).

    with SipHarness(route_base_url, api_key, workdir) as sip:
        result = sip.place_call("+14155550100", "+14155550111")
        assert result.ok
        invite = sip.received_invites()[-1]
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self, cast

ROOT = Path(__file__).resolve().parents[2]
KAMAILIO_CFG = ROOT / "examples" / "kamailio" / "kamailio.cfg"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
LOOPBACK = "127.0.0.1"
INSTALL_HINT = "apt-get install kamailio kamailio-utils-modules sip-tester"
# Where distributions put Kamailio's modules (Debian/Ubuntu multiarch first).
KAMAILIO_MODULE_GLOBS = (
    "/usr/lib/*/kamailio/modules",
    "/usr/lib/kamailio/modules",
    "/usr/lib64/kamailio/modules",
    "/usr/local/lib*/kamailio/modules",
)
UNRESERVED = "-._~"  # RFC 3986 unreserved characters besides ALPHA / DIGIT: left as is by percent-encoding


# ---------------------------------------------------------------------------------------------------------------
# Tools and ports


def missing_tools() -> list[str]:
    """What is missing to run real SIP tests: empty when kamailio, its http_client module and sipp are there."""
    missing = []
    if shutil.which("kamailio") is None:
        missing.append("kamailio (package kamailio)")
    elif not any(Path(d, "http_client.so").is_file() for g in KAMAILIO_MODULE_GLOBS for d in glob.glob(g)):
        missing.append("Kamailio's http_client module (package kamailio-utils-modules)")
    if shutil.which("sipp") is None:
        missing.append("sipp (package sip-tester)")
    return missing


_issued_ports: set[int] = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now, never handed out twice by this process."""
    with _ports_lock:
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                tcp.bind((LOOPBACK, 0))
                port = int(tcp.getsockname()[1])
                if port in _issued_ports:
                    continue
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    try:
                        udp.bind((LOOPBACK, port))
                    except OSError:
                        continue
            _issued_ports.add(port)
            return port
    raise RuntimeError("no free loopback port")


def _udp_port_bound(port: int) -> bool:
    """True when some process has a UDP socket bound to `port` (Linux /proc; no probing bind that could race)."""
    wanted = f"{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(row.split()[1].rsplit(":", 1)[1] == wanted for row in rows):
            return True
    return False


def _stop(process: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """SIGTERM the process group we started (start_new_session), then SIGKILL what is left."""
    if process is None or process.poll() is not None:
        if process is not None:
            _kill_group(process.pid, signal.SIGKILL)
        return
    _kill_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
    _kill_group(process.pid, signal.SIGKILL)  # children that outlived their parent


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _tail(text: str, lines: int = 80) -> str:
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------------------------
# SIP messages


@dataclass(frozen=True)
class SipMessage:
    """One SIP message as SIPp logged it; `direction` is "received" or "sent" from that SIPp's point of view."""

    start_line: str
    headers: tuple[tuple[str, str], ...]
    body: str = ""
    direction: str = ""
    transport: str = ""

    @classmethod
    def parse(cls, text: str, direction: str = "", transport: str = "") -> SipMessage:
        head, _, body = text.replace("\r\n", "\n").partition("\n\n")
        lines = head.strip("\n").split("\n")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # folded continuation
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip()}")
                continue
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return cls(lines[0].strip(), tuple(headers), body.strip("\n"), direction, transport)

    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("SIP/2.0")

    @property
    def method(self) -> str | None:
        return self.start_line.split(" ", 1)[0] if self.is_request else None

    @property
    def request_uri(self) -> str | None:
        return self.start_line.split(" ")[1] if self.is_request else None

    @property
    def status(self) -> int | None:
        return None if self.is_request else int(self.start_line.split(" ")[1])

    @property
    def cseq_method(self) -> str:
        return (self.header("CSeq") or " ").split()[-1]

    def header(self, name: str) -> str | None:
        """The first header `name` (case-insensitive), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


_SIPP_ENTRY = re.compile(
    r"^-{20,} [^\n]*\n(?P<transport>\w+) message (?P<direction>received|sent)[^\n]*\n\n", re.MULTILINE
)


def parse_sipp_log(text: str) -> list[SipMessage]:
    """The messages of a SIPp `-trace_msg` log, in order."""
    entries = list(_SIPP_ENTRY.finditer(text))
    messages = []
    ends = [entry.start() for entry in entries[1:]] + [len(text)]
    for entry, end in zip(entries, ends[: len(entries)], strict=True):
        raw = text[entry.end() : end]
        if raw.strip():
            messages.append(SipMessage.parse(raw, entry["direction"], entry["transport"]))
    return messages


# ---------------------------------------------------------------------------------------------------------------
# The route API stand-in


@dataclass(frozen=True)
class RouteRequest:
    """One HTTP request the stand-in route server got."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    raw_query: str = ""


@dataclass(frozen=True)
class RouteReply:
    status: int
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"
    delay: float = 0.0  # seconds to wait before answering (a slow or hanging API)


Responder = Callable[[RouteRequest], RouteReply]


def route_line(uri: str, headers: Mapping[str, str] | None = None) -> str:
    """The one-line `/route` answer: the SIP URI, then the headers as RFC 3261 URI headers, values
    percent-encoded (RFC 3986 unreserved characters left as is)."""
    if not headers:
        return uri
    encoded = "&".join(f"{name}={urllib.parse.quote(value, safe=UNRESERVED)}" for name, value in headers.items())
    return f"{uri}?{encoded}"


class MillisRoute:
    """Answers like the real `/route`: checks the key, a fresh Millis SIP URI (on the UAS) for each new call id and
    the same answer when asked again for that call (idempotent), 404 for numbers without an agent."""

    def __init__(self, api_key: str, sip_host: str, sip_port: int, agents: set[str] | None = None) -> None:
        self.api_key = api_key
        self.sip_host = sip_host
        self.sip_port = sip_port
        self.agents = agents  # dialed numbers with an agent; None: every number
        self.answers: dict[str, str] = {}  # call id -> the line answered
        self._lock = threading.Lock()

    def millis_call_id(self, n: int) -> str:
        return f"millis-{n:04d}-{uuid.uuid4().hex[:8]}"

    def __call__(self, request: RouteRequest) -> RouteReply:
        if request.headers.get("x-api-key") != self.api_key:
            return RouteReply(403, "forbidden\n")
        to, call = request.query.get("to", ""), request.query.get("call", "")
        if not to or not call:
            return RouteReply(400, "to and call are required\n")
        if self.agents is not None and to not in self.agents:
            return RouteReply(404, "no agent for this number\n")
        with self._lock:
            if call not in self.answers:
                millis_id = self.millis_call_id(len(self.answers) + 1)
                uri = f"sip:{millis_id}@{self.sip_host}:{self.sip_port};transport=udp"
                headers = {"X-Millis-Call-Id": millis_id, "X-Carrier": "sip", "X-Carrier-Call-Id": call}
                self.answers[call] = route_line(uri, headers)
            return RouteReply(200, self.answers[call] + "\n")


class _RouteHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: RouteServer


class _RouteHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # http.server's naming
        owner = cast(_RouteHTTPServer, self.server).owner
        path, _, raw_query = self.path.partition("?")
        query = {k: v[0] for k, v in urllib.parse.parse_qs(raw_query, keep_blank_values=True).items()}
        request = RouteRequest(self.command, path, query, {k.lower(): v for k, v in self.headers.items()}, raw_query)
        reply = owner.handle(request)
        if reply.delay:
            time.sleep(reply.delay)
        body = reply.body.encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): nothing to answer
            pass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's signature
        pass


class RouteServer:
    """Stand-in `/route` API on a free loopback port. Records every request; `responder` decides each answer
    (404 for every request until one is set). Replaceable: the harness only needs a base URL and a key."""

    def __init__(self, responder: Responder | None = None, path: str = "/route") -> None:
        self.responder: Responder = responder or (lambda _request: RouteReply(404, "no responder\n"))
        self.path = path
        self._requests: list[RouteRequest] = []
        self._lock = threading.Lock()
        self._server = _RouteHTTPServer((LOOPBACK, 0), _RouteHandler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="route-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[RouteRequest]:
        with self._lock:
            return list(self._requests)

    def handle(self, request: RouteRequest) -> RouteReply:
        with self._lock:
            self._requests.append(request)
        if request.path != self.path:
            return RouteReply(404, "not found\n")
        return self.responder(request)

    def reset(self, responder: Responder | None = None) -> None:
        with self._lock:
            self._requests.clear()
        if responder is not None:
            self.responder = responder

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------------------
# Kamailio and SIPp processes


class Kamailio:
    """examples/kamailio/kamailio.cfg in the foreground (-DD -E), its parameters as -A defines."""

    def __init__(
        self,
        workdir: Path,
        route_url: str,
        api_key: str,
        *,
        port: int | None = None,
        cfg: Path = KAMAILIO_CFG,
        http_timeout: int = 2,
        children: int = 4,
        defines: Mapping[str, str] | None = None,
        config_via: str = "args",
    ) -> None:
        """`config_via`: "args" passes the route URL and key as -A defines, "env" as MILLIS_ROUTE_URL and
        MILLIS_ROUTE_API_KEY in the environment (the config reads both)."""
        if config_via not in ("args", "env"):
            raise ValueError("config_via is 'args' or 'env'")
        for name, value in (("route URL", route_url), ("API key", api_key)):
            if '"' in value or "\\" in value or "\n" in value:
                raise ValueError(f"the {name} cannot hold quotes, backslashes or newlines (a Kamailio string define)")
        self.workdir = workdir
        self.port = port or free_port()
        self.cfg = cfg
        self.log_path = workdir / "kamailio.log"
        self.runtime_dir = workdir / "kamailio-run"
        self.command = [
            shutil.which("kamailio") or "kamailio",
            "-f", str(cfg),
            "-DD", "-E",  # foreground, log to stderr
            "-n", str(children),
            "-m", "64", "-M", "8",
            "-Y", str(self.runtime_dir),
            "-P", str(workdir / "kamailio.pid"),
            "-w", str(workdir),
            "-A", f"SIP_ADDR={LOOPBACK}",
            "-A", f"SIP_PORT={self.port}",
            "-A", f"HTTP_TIMEOUT={http_timeout}",
        ]  # fmt: skip
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MILLIS_ROUTE_")}
        if config_via == "args":
            self.command += ["-A", f'ROUTE_URL="{route_url}"', "-A", f'API_KEY="{api_key}"']
        else:
            self.env |= {"MILLIS_ROUTE_URL": route_url, "MILLIS_ROUTE_API_KEY": api_key}
        for name, value in (defines or {}).items():
            self.command += ["-A", f"{name}={value}"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True,
            )  # fmt: skip
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Until Kamailio answers an OPTIONS keepalive on its UDP port."""
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, 0))
            probe.settimeout(0.2)
            attempt = 0
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"kamailio exited ({self.returncode}):\n{_tail(self.log())}")
                attempt += 1
                probe.sendto(self._options(probe.getsockname()[1], attempt), (LOOPBACK, self.port))
                try:
                    reply = probe.recv(65535).decode(errors="replace")
                except TimeoutError:
                    continue
                if reply.startswith("SIP/2.0 200"):
                    return
        raise RuntimeError(f"kamailio did not answer OPTIONS within {timeout}s:\n{_tail(self.log())}")

    def _options(self, local_port: int, attempt: int) -> bytes:
        return (
            f"OPTIONS sip:{LOOPBACK}:{self.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch=z9hG4bK-ready-{attempt}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{LOOPBACK}>;tag=ready{attempt}\r\n"
            f"To: <sip:{LOOPBACK}:{self.port}>\r\n"
            f"Call-ID: ready-{attempt}-{uuid.uuid4().hex}@{LOOPBACK}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log(self) -> str:
        return _read(self.log_path)

    def stop(self) -> None:
        _stop(self.process)


class SippUas:
    """SIPp answering as Millis' SIP server would (scenarios/uas.xml), logging every message it gets."""

    def __init__(self, workdir: Path, *, port: int | None = None, scenario: Path = SCENARIOS / "uas.xml") -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.message_file = workdir / "uas-messages.log"
        self.error_file = workdir / "uas-errors.log"
        self.output_file = workdir / "uas-output.log"
        self.command = [
            shutil.which("sipp") or "sipp",
            "-sf", str(scenario),
            "-i", LOOPBACK, "-p", str(self.port), "-bind_local", "-t", "u1",
            "-mi", LOOPBACK, "-mp", str(free_port()),
            "-trace_msg", "-message_file", str(self.message_file),
            "-trace_err", "-error_file", str(self.error_file),
            "-nostdin",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 5.0) -> None:
        with self.output_file.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not _udp_port_bound(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sipp UAS did not start:\n{_tail(_read(self.output_file))}")
            time.sleep(0.02)

    def messages(self) -> list[SipMessage]:
        return parse_sipp_log(_read(self.message_file))

    def log(self) -> str:
        return "\n".join(
            part for part in (_tail(_read(self.error_file), 40), _tail(_read(self.message_file), 120)) if part
        )

    def stop(self) -> None:
        _stop(self.process)


@dataclass
class CallResult:
    """What the SIPp carrier saw of one call."""

    returncode: int
    call_id: str
    messages: list[SipMessage] = field(repr=False)  # everything the UAC sent and received
    output: str = field(repr=False)  # SIPp's screens
    errors: str = field(repr=False)  # SIPp's -trace_err log
    command: list[str] = field(repr=False)

    @property
    def successful(self) -> int:
        return self._counter("Successful call")

    @property
    def failed(self) -> int:
        return self._counter("Failed call")

    @property
    def ok(self) -> bool:
        """SIPp exited 0 with exactly one successful call."""
        return self.returncode == 0 and self.successful == 1 and self.failed == 0

    @property
    def responses(self) -> list[tuple[int, str]]:
        """(status, CSeq method) of every response the carrier received, in order (retransmissions included)."""
        return [(m.status, m.cseq_method) for m in self.messages if m.direction == "received" and m.status is not None]

    @property
    def final_status(self) -> int | None:
        """The final (>= 200) answer to the INVITE, or None."""
        finals = [status for status, method in self.responses if method == "INVITE" and status >= 200]
        return finals[0] if finals else None

    def reason(self, status: int) -> str | None:
        for m in self.messages:
            if m.direction == "received" and m.status == status:
                return m.start_line.split(" ", 2)[2] if m.start_line.count(" ") >= 2 else ""
        return None

    def summary(self) -> str:
        return (
            f"sipp exit {self.returncode}, successful {self.successful}, failed {self.failed}, "
            f"responses {self.responses}\n{self.errors}"
        )

    def _counter(self, name: str) -> int:
        rows = re.findall(rf"^\s*{name}\s*\|\s*\d+\s*\|\s*(\d+)", self.output, re.MULTILINE)
        return int(rows[-1]) if rows else 0


# ---------------------------------------------------------------------------------------------------------------
# The harness


class SipHarness:
    """Kamailio with examples/kamailio/kamailio.cfg asking `route_base_url`/route (with `api_key`), a SIPp UAS
    standing in for Millis' SIP server, and `place_call()` to send a SIPp carrier call through."""

    def __init__(
        self,
        route_base_url: str,
        api_key: str,
        workdir: Path,
        *,
        http_timeout: int = 2,
        kamailio_cfg: Path = KAMAILIO_CFG,
        kamailio_defines: Mapping[str, str] | None = None,
        config_via: str = "args",
        uas_port: int | None = None,
        kamailio_port: int | None = None,
        uas_scenario: Path = SCENARIOS / "uas.xml",
    ) -> None:
        """Ports are chosen here (free loopback ones unless given), so `uas_port` / `millis_uri()` can be handed to
        whatever answers the route before start()."""
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.uas = SippUas(workdir, port=uas_port, scenario=uas_scenario)
        self.kamailio = Kamailio(
            workdir,
            route_base_url.rstrip("/"),
            api_key,
            port=kamailio_port,
            cfg=kamailio_cfg,
            http_timeout=http_timeout,
            defines=kamailio_defines,
            config_via=config_via,
        )
        self._seen = 0  # UAS messages before the last clear()
        self._calls = 0
        self.last_call: CallResult | None = None

    # where things are
    @property
    def uas_host(self) -> str:
        return LOOPBACK

    @property
    def uas_port(self) -> int:
        return self.uas.port

    @property
    def kamailio_port(self) -> int:
        return self.kamailio.port

    def millis_uri(self, user: str, transport: str = "udp") -> str:
        """A SIP URI on the UAS, as Millis would hand out for a call."""
        return f"sip:{user}@{self.uas_host}:{self.uas_port};transport={transport}"

    # lifecycle
    def start(self) -> Self:
        try:
            self.uas.start()
            self.kamailio.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        self.kamailio.stop()
        self.uas.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # what the UAS got
    def clear(self) -> None:
        """Forget what the UAS received so far (received_* only report what comes next)."""
        self._seen = len(self.uas.messages())
        self.last_call = None

    def received_messages(self) -> list[SipMessage]:
        """Every message the Millis stand-in received since the last clear()."""
        return [m for m in self.uas.messages()[self._seen :] if m.direction == "received"]

    def received_invites(self) -> list[SipMessage]:
        """The INVITEs (retransmissions included) the Millis stand-in received since the last clear()."""
        return [m for m in self.received_messages() if m.method == "INVITE"]

    # calls
    def place_call(
        self,
        to: str,
        from_: str,
        *,
        expect: int = 200,
        call_id: str | None = None,
        talk_ms: int = 100,
        transport: str = "udp",
        cancel_after_ms: int | None = None,
        timeout_s: int = 15,
        refer_to: str | None = None,
        refer_outcome: str = "200 OK",
    ) -> CallResult:
        """A carrier call to `to` from `from_` through Kamailio. `expect` is the final answer the scenario waits
        for: 200 (then ACK, `talk_ms` of talk, BYE), or an error status (then ACK). `cancel_after_ms`: CANCEL
        that long after the 100 Trying and expect 487. `transport`: "udp" or "tcp" between carrier and proxy.
        `refer_to`: the agent sends REFER there once the call is up (the harness's UAS must run
        scenarios/uas_refer.xml); a relayed REFER is taken and its outcome NOTIFYed as `refer_outcome`."""
        self._calls += 1
        n = self._calls
        call_id = call_id or f"{uuid.uuid4().hex}@carrier.test"
        if refer_to is not None:  # the agent (a UAS running scenarios/uas_refer.xml) sends REFER to refer_to
            scenario = self._render("uac_refer.xml", n, REFER_TO=refer_to, OUTCOME=refer_outcome)
        elif cancel_after_ms is not None:
            scenario = self._render("uac_cancel.xml", n, CANCEL_AFTER_MS=str(cancel_after_ms))
        elif expect == 200:
            scenario = SCENARIOS / "uac.xml"
        else:
            scenario = self._render("uac_rejected.xml", n, STATUS=str(expect))
        message_file = self.workdir / f"uac-{n}-messages.log"
        error_file = self.workdir / f"uac-{n}-errors.log"
        command = [
            shutil.which("sipp") or "sipp",
            f"{LOOPBACK}:{self.kamailio_port}",
            "-sf", str(scenario),
            "-s", to, "-key", "from_user", from_,
            "-cid_str", call_id.replace("%", "%%"),  # SIPp expands %u, %p, %s in it
            "-d", str(talk_ms),
            "-m", "1",
            "-i", LOOPBACK, "-p", str(free_port()), "-bind_local",
            "-mi", LOOPBACK, "-mp", str(free_port()),
            "-t", {"udp": "u1", "tcp": "t1"}[transport],
            "-recv_timeout", "10000",
            "-timeout", f"{timeout_s}s", "-timeout_error",
            "-trace_msg", "-message_file", str(message_file),
            "-trace_err", "-error_file", str(error_file),
            "-nostdin",
        ]  # fmt: skip
        process = subprocess.Popen(
            command, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            output, _ = process.communicate(timeout=timeout_s + 10)
        finally:
            _stop(process)
        result = CallResult(
            process.returncode,
            call_id,
            parse_sipp_log(_read(message_file)),
            output.decode(errors="replace"),
            _read(error_file),
            command,
        )
        self.last_call = result
        return result

    def _render(self, name: str, n: int, **values: str) -> Path:
        text = (SCENARIOS / name).read_text()
        for key, value in values.items():
            text = text.replace(f"__{key}__", value)
        path = self.workdir / f"{Path(name).stem}-{n}.xml"
        path.write_text(text)
        return path

    # diagnostics
    def kamailio_log(self) -> str:
        return self.kamailio.log()

    def diagnostics(self) -> str:
        """Kamailio's log, the UAS's log and the last call's SIPp output, for a failing test's report."""
        parts = [f"--- kamailio log (tail) ---\n{_tail(self.kamailio_log(), 150)}"]
        parts.append(f"--- Millis stand-in (UAS) ---\n{self.uas.log()}")
        if self.last_call is not None:
            parts.append(f"--- carrier (UAC) ---\n{self.last_call.summary()}\n{_tail(self.last_call.output, 40)}")
        return "\n\n".join(parts)


def iter_headers(message: SipMessage, prefix: str = "X-") -> Iterator[tuple[str, str]]:
    """The headers of `message` whose names start with `prefix` (case-insensitive)."""
    return ((name, value) for name, value in message.headers if name.lower().startswith(prefix.lower()))

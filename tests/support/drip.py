"""A Millis that is slow but never silent, on a Unix socket (unit tests open no network sockets): each region,
told apart by the request's Host header, answers a registration at once or one byte every ``pause`` seconds,
from the status line on (the client is still reading the headers) or from the body on. What the simulator's
``Fault(drip=...)`` does over TCP, small enough for the unit tests that hold ``http_deadline`` to the installed
httpx and httpcore."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

ANSWER = {"call_id": "c-drip", "sip_uri": "sip:call-c-drip@sip.millis.example"}
BODY = json.dumps(ANSWER).encode()
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(
    BODY
)


@dataclass(frozen=True, slots=True)
class Drip:
    pause: float  # seconds between bytes
    headers: bool  # from the status line on; else the status line and headers go at once, then the body drips


class DrippingMillis:
    def __init__(self, path: Path, drips: dict[str, Drip]) -> None:
        self.path = str(path)
        self.drips = drips  # host -> how it drips; any other host answers at once
        self.sent: dict[str, int] = {}  # host -> bytes of the answer sent before the client went away
        self.requests: list[str] = []  # the Host of each request, in order
        self._server = socketserver.ThreadingUnixStreamServer(self.path, self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="dripping-millis", daemon=True
        )

    def _handler(self) -> type[socketserver.StreamRequestHandler]:
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                headers: dict[str, str] = {}
                while (line := self.rfile.readline().decode("latin-1").strip()) != "":
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                self.rfile.read(int(headers.get("content-length", "0")))
                host = headers.get("host", "")
                server.requests.append(host)
                drip = server.drips.get(host)
                if drip is None:
                    self.wfile.write(HEAD + BODY)
                    return
                at_once, dripped = (b"", HEAD + BODY) if drip.headers else (HEAD, BODY)
                server.sent[host] = len(at_once)
                try:
                    self.wfile.write(at_once)
                    for i in range(len(dripped)):
                        time.sleep(drip.pause)
                        self.wfile.write(dripped[i : i + 1])
                        server.sent[host] += 1
                except OSError:
                    return  # the client gave up

        return Handler

    def __enter__(self) -> DrippingMillis:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

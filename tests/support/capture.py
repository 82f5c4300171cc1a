"""A loopback HTTP server that records every request and answers each with a canned response: what a carrier's
official SDK sends for an operation, captured, to compare with what the stack sends for the same operation."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Captured:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    def fields(self) -> Any:
        """The body as data: JSON, or a form (each field's list of values)."""
        if self.content_type == "application/json":
            return json.loads(self.body)
        return parse_qs(self.body.decode(), keep_blank_values=True)


class Capture:
    def __init__(self, status: int = 201, answer: Any = None) -> None:
        self.status, self.answer = status, answer if answer is not None else {}
        self.requests: list[Captured] = []

    def take(self) -> Captured:
        assert self.requests, "no request was captured"
        return self.requests.pop(0)


@contextmanager
def capture_server(capture: Capture) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            capture.requests.append(Captured(self.command, self.path, headers, body))
            payload = json.dumps(capture.answer).encode()
            self.send_response(capture.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

"""A TCP proxy on loopback that adds a fixed one-way delay to each burst of bytes, both ways: what a network
round trip costs (DynamoDB in AWS is 5 to 10 ms away from the function), for the benchmarks. Requests that
overlap wait their delays at the same time, as they would on a network; on bare loopback they cannot show
that, because DynamoDB Local answers from one busy process."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType
from urllib.parse import urlsplit

BURST_GAP = 0.001  # bytes arriving within this of the previous ones belong to the same burst


class LatencyProxy:
    def __init__(self, target: str, one_way_seconds: float) -> None:
        parts = urlsplit(target)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._scheme = parts.scheme or "http"
        self._delay = one_way_seconds
        self._server = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="latency-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._server.getsockname()[1]}"

    def _accept(self) -> None:
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                continue
            upstream = socket.create_connection(self._target)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._sockets.append(sock)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        last = 0.0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                now = time.monotonic()
                if now - last > BURST_GAP:  # the first bytes of a request or an answer: they cross the network
                    time.sleep(self._delay)
                last = time.monotonic()
                sink.sendall(data)
        except OSError:
            pass  # the other side closed
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(2)
        self._server.close()
        for sock in self._sockets:
            sock.close()

"""A TCP server on loopback that accepts connections and never answers: what a dependency that hangs looks like
to its client (DynamoDB or Secrets Manager behind a network fault), for the phone path's budget tests."""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class BlackHole:
    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}"

    def _accept(self) -> None:
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except OSError:
                continue
            self._held.append(connection)  # read nothing, answer nothing

    def __enter__(self) -> BlackHole:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(2)
        for connection in self._held:
            connection.close()
        self._server.close()

"""A deadline for a whole HTTP exchange over httpx: connect, send, status line and headers, body.

httpx's timeouts bound each socket operation, not the request: a server that sends one byte every 1.5 s never
trips a 2 s read timeout, and its answer takes as long as it likes (a registration dripped that way took two
minutes). Nor can the timeouts be made to shrink as the deadline nears: httpcore 1.0 reads
``request.extensions["timeout"]`` once per phase (once for the status line and headers, once for the body)
and waits that long on every read of the phase, however many there are.

So the deadline is enforced where every wait happens, in the network backend of httpcore's connection pool
(``httpcore.ConnectionPool(network_backend=...)``): inside ``within(seconds, once_sending=...)`` every
connect, TLS handshake, read and write on this thread waits at most until the deadline (less when httpx's own
timeout for that phase is shorter), and one that would start after it fails at once with the timeout of its kind
(``httpx.ConnectTimeout``, ``ReadTimeout``, ``WriteTimeout``). A read cut short leaves its response
unfinished, and httpcore closes such a connection instead of pooling it. Each socket operation honours the
time it is given as a whole (CPython counts a ``recv``, ``sendall`` or TLS read against one deadline, not per
wake-up), so an exchange ends within one scheduling delay of its deadline.

Outside ``within`` nothing changes. Not bounded: the name lookup (``getaddrinfo`` takes no timeout) and the
wait for a free pooled connection (httpx's ``pool`` timeout bounds that one).

``tests/unit/test_http_deadline.py`` holds this to the installed httpx and httpcore: a drip in the headers
and a drip in the body end at the deadline, and an upgrade that changes how httpcore waits fails it.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx


class _Deadline:
    __slots__ = ("at", "once_sending")

    def __init__(self, at: float, once_sending: float | None) -> None:
        self.at = at  # time.monotonic() by which every wait ends
        self.once_sending = once_sending  # the exchange's time from its first byte sent; None once applied

    def left(self, *, sending: bool = False) -> float:
        if sending and self.once_sending is not None:
            self.at = min(self.at, time.monotonic() + self.once_sending)
            self.once_sending = None
        return self.at - time.monotonic()


_deadline: ContextVar[_Deadline | None] = ContextVar("http_exchange_deadline", default=None)


@contextmanager
def within(seconds: float, *, once_sending: float | None = None) -> Iterator[None]:
    """Every network wait of the exchanges made inside (on this thread) ends at most ``seconds`` from now, and
    with ``once_sending`` also at most that long after the request's first byte goes out (once a new
    connection is open, at once on a pooled one): what a read timeout is to one read, ``once_sending`` is to
    the exchange from the request to the answer's last byte."""
    token = _deadline.set(_Deadline(time.monotonic() + max(seconds, 0.0), once_sending))
    try:
        yield
    finally:
        _deadline.reset(token)


def _clamp(timeout: float | None, expired: type[httpcore.TimeoutException], *, sending: bool = False) -> float | None:
    """``timeout`` cut to the time left before the deadline; ``expired`` when none is left."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline.left(sending=sending)
    if left <= 0:
        raise expired("the exchange's deadline passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits no longer than the deadline of the exchange using it."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _clamp(timeout, httpcore.WriteTimeout, sending=True))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, _clamp(timeout, httpcore.ConnectTimeout))
        return DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sockets (``SyncBackend`` unless told), each connection a ``DeadlineStream``."""

    def __init__(self, backend: httpcore.NetworkBackend | None = None) -> None:
        self._backend = backend or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _clamp(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._backend.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _clamp(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class BoundedTransport(httpx.HTTPTransport):
    """httpx's HTTP/1.1 transport over a connection pool of ``DeadlineBackend`` connections, so ``within``
    bounds the exchanges made through it. TLS as httpx verifies it by default (certifi's CAs), no proxy, no
    settings from the environment. ``uds``: a Unix socket in place of TCP (the unit tests' dripping server).

    httpx has no parameter for the network backend, so the transport's pool (the one attribute its
    ``handle_request`` and ``close`` use) is httpcore's, built here, instead of the one httpx would build."""

    def __init__(self, *, limits: httpx.Limits, uds: str | None = None) -> None:
        # Not super().__init__(): it would build a pool (and an SSL context, a cold-start cost) only to drop it.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            uds=uds,
            network_backend=DeadlineBackend(),
        )

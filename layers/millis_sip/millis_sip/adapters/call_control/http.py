"""What every carrier's call-control client shares: one pooled httpx client, a whole-exchange deadline per
request (``adapters.http_deadline``), one retry where the carrier said it did nothing (429, 5xx, a connection
that never opened), none where the request may have been acted on (a read that timed out: a second POST could
place a second call), and the carriers' answers mapped to the core's errors."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from millis_sip.adapters import http_deadline
from millis_sip.core.errors import (
    CarrierCredentialsRejected,
    CarrierError,
    CarrierRefusedCall,
    CarrierUnavailable,
)

CONNECT_TIMEOUT, READ_TIMEOUT = 2.0, 5.0
MIN_TRY_SECONDS = 0.3  # below this a try cannot finish: do not start it
MAX_BODY_BYTES = 64 * 1024
RETRY_PAUSE_SECONDS = 0.2


def new_client() -> httpx.Client:
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=4, keepalive_expiry=60)
    return httpx.Client(
        transport=http_deadline.BoundedTransport(limits=limits),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
        headers={"User-Agent": "millis-sip-bridge"},
    )


class CarrierApi:
    """One carrier's REST API: ``send`` makes a request within a budget and returns the JSON answer, or raises
    the ``CarrierError`` that says what went wrong. ``describe(body)`` turns the carrier's error body into
    (its code, its message) for the error the caller gets (never a credential: the carrier does not echo it)."""

    def __init__(
        self,
        carrier: str,
        client: httpx.Client,
        *,
        describe: Callable[[Any], tuple[str | None, str | None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.carrier = carrier
        self._client = client
        self._describe = describe
        self._clock = clock

    def send(
        self,
        method: str,
        url: str,
        *,
        budget: float,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        data: Any = None,
        json_body: Any = None,
        retry: bool = True,
    ) -> Any:
        deadline = self._clock() + budget
        tries = 2 if retry else 1
        last: CarrierUnavailable | None = None
        for attempt in range(tries):
            left = deadline - self._clock()
            if left < MIN_TRY_SECONDS:
                break
            try:
                return self._once(method, url, left, headers=headers, auth=auth, data=data, json_body=json_body)
            except CarrierUnavailable as exc:
                last = exc
                if exc.maybe_placed:
                    raise
                if attempt + 1 < tries:
                    time.sleep(min(RETRY_PAUSE_SECONDS, max(deadline - self._clock() - MIN_TRY_SECONDS, 0)))
        raise last or CarrierUnavailable(f"No time left to ask {self.carrier}.")

    def _once(
        self,
        method: str,
        url: str,
        seconds: float,
        *,
        headers: Mapping[str, str] | None,
        auth: tuple[str, str] | None,
        data: Any,
        json_body: Any,
    ) -> Any:
        timeout = httpx.Timeout(
            connect=min(CONNECT_TIMEOUT, seconds),
            read=min(READ_TIMEOUT, seconds),
            write=min(READ_TIMEOUT, seconds),
            pool=min(CONNECT_TIMEOUT, seconds),
        )
        try:
            with (
                http_deadline.within(seconds),
                self._client.stream(
                    method,
                    url,
                    headers=dict(headers or {}),
                    auth=auth,
                    data=data,
                    json=json_body,
                    timeout=timeout,
                ) as response,
            ):
                body = _read(response)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
            raise CarrierUnavailable(f"{self.carrier} could not be reached.") from None
        except httpx.TransportError as exc:
            # The request went out and no (whole) answer came back: the carrier may have acted on it.
            raise CarrierUnavailable(
                f"{self.carrier} did not answer in time ({type(exc).__name__}).", maybe_placed=True
            ) from None
        return self._answer(response.status_code, body, response.headers.get("retry-after"))

    def _answer(self, status: int, body: bytes | None, retry_after: str | None) -> Any:
        parsed = _json(body)
        if status < 300:
            return parsed
        code, message = self._describe(parsed)
        said = f"{self.carrier} answered HTTP {status}" + (f" ({code}: {message})" if code or message else "")
        if status in (401, 403):
            raise CarrierCredentialsRejected(
                f"{said}: it rejected the stack's credentials; check the secret.",
                carrier_status=status,
                carrier_code=code,
            )
        if status == 429 or status >= 500:
            raise CarrierUnavailable(
                f"{said}; retry later.",
                carrier_status=status,
                carrier_code=code,
                retry_after=_seconds(retry_after),
            )
        raise CarrierRefusedCall(f"{said}.", carrier_status=status, carrier_code=code)


def _read(response: httpx.Response) -> bytes | None:
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _json(body: bytes | None) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _seconds(raw: str | None) -> int:
    try:
        return max(1, min(int(raw or "2"), 60))
    except ValueError:
        return 2


def first_line(secret: str) -> str:
    """A carrier credential may hold two lines while a rotation is in flight (the webhooks accept both): the
    first is the one requests are made with."""
    return next((line.strip() for line in secret.splitlines() if line.strip()), "")


def text_of(body: Any, *names: str) -> str | None:
    """The first of ``names`` in a JSON object, as short text (for error messages)."""
    if not isinstance(body, dict):
        return None
    for name in names:
        value = body.get(name)
        if value not in (None, ""):
            return str(value)[:300]
    return None


__all__ = ["CarrierApi", "CarrierError", "new_client", "text_of"]

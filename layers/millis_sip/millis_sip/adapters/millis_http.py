"""The Millis gateway over httpx: ``POST {base}/register_sip_call`` on the nearest region, failing over once.

Failover happens on connection errors, timeouts, 5xx and 429, and only while the caller's deadline
leaves time for another try. 401/403 (the key), 404 and 422 (the caller's agent or body) and any other
4xx are final: another region would answer the same.

Each attempt has a deadline of its own: at most the connect timeout to have a connection, then at most the
read timeout from the request's first byte to the answer's last, never past the caller's budget. The whole
exchange (connect, request, status line and headers, body) ends by it however the region answers: silent, or
slow but never silent (one byte at a time, each well within the read timeout; see ``http_deadline``). A
region that drips costs no more than one that says nothing, so the other region still gets its try when the
budget has room for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from millis_sip.adapters import http_deadline, threads
from millis_sip.adapters.secrets import CachedSecret, StaticApiKey, api_key_source
from millis_sip.core.calls import TOKEN
from millis_sip.core.clock import SystemClock
from millis_sip.core.errors import (
    Attempt,
    MillisAuthError,
    MillisBadResponse,
    MillisError,
    MillisKeyUnavailable,
    MillisRejectedRequest,
    MillisUnavailable,
)
from millis_sip.core.ports import MIN_ATTEMPT_SECONDS, Clock, MillisRegistration
from millis_sip.core.regions import MillisRegion
from millis_sip.core.sip import InvalidSipUri, SipUri, parse_sip_uri

if TYPE_CHECKING:
    from millis_sip.config import Settings

REGISTER_PATH = "/register_sip_call"
MAX_RESPONSE_BYTES = 64 * 1024
MAX_DETAIL_CHARS = 1000


class _Retryable(Exception):
    def __init__(self, outcome: str, *, rate_limited: bool = False, retry_after: int | None = None) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.rate_limited = rate_limited
        self.retry_after = retry_after


class HttpMillisGateway:
    """The httpx adapter. One instance (and one connection pool) per execution environment."""

    def __init__(
        self,
        client: httpx.Client,
        base_urls: Mapping[MillisRegion, str],
        region_order: Sequence[MillisRegion],
        api_key: Callable[[], str],
        *,
        connect_timeout: float,
        read_timeout: float,
        clock: Clock | None = None,
    ) -> None:
        self._client = client
        self._urls = {region: url.rstrip("/") + REGISTER_PATH for region, url in base_urls.items()}
        self._order = tuple(region_order)
        self._api_key = api_key
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._clock = clock or SystemClock()

    @classmethod
    def from_settings(cls, settings: Settings, *, api_key: Callable[[], str] | None = None) -> HttpMillisGateway:
        """The gateway an entry module builds once: its own pooled client, the key from Secrets Manager
        (or MILLIS_API_KEY locally) unless ``api_key`` is given, the configured timeouts, nearest region first."""
        return cls(
            cls.new_client(),
            settings.millis_urls,
            settings.millis_region.order,
            api_key or api_key_source(settings.api_key_secret_arn, settings.secret_max_age),
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
        )

    def after_restore(self) -> None:
        """A restored SnapStart snapshot holds no live connection: open new ones, read the key again."""
        stale, self._client = self._client, self.new_client()
        stale.close()
        forget = getattr(self._api_key, "forget", None)
        if callable(forget):
            forget()

    @staticmethod
    def new_client() -> httpx.Client:
        """The pooled client the entry modules build once; timeouts and each attempt's deadline are set per
        attempt (its transport is what lets a deadline end an exchange)."""
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=4, keepalive_expiry=60)
        return httpx.Client(
            transport=http_deadline.BoundedTransport(limits=limits),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(5.0),
            headers={"User-Agent": "millis-sip-bridge", "Accept": "application/json"},
        )

    def _key(self, budget: float) -> str:
        """The Millis key, read within ``budget`` (a cached key costs nothing; Secrets Manager may hang)."""
        if isinstance(self._api_key, StaticApiKey | CachedSecret) and (fresh := self._api_key.fresh()) is not None:
            return fresh  # a key already in memory needs no worker thread
        [key] = threads.parallel(self._api_key, timeout=budget)
        if isinstance(key, TimeoutError):
            raise MillisKeyUnavailable("Secrets Manager did not answer within the call's budget; will retry.")
        if isinstance(key, BaseException):
            raise key
        return str(key)

    def register(
        self, payload: Mapping[str, Any], *, budget: float, regions: Sequence[MillisRegion] | None = None
    ) -> MillisRegistration:
        order = tuple(regions) if regions else self._order
        deadline = self._clock.monotonic() + budget
        key = self._key(budget)  # MillisKeyUnavailable propagates: nothing was sent
        attempts: list[Attempt] = []
        last: _Retryable | None = None
        for region in order:
            remaining = deadline - self._clock.monotonic()
            if remaining < MIN_ATTEMPT_SECONDS:
                break
            started = self._clock.monotonic()
            try:
                call_id, sip_uri = self._attempt(region, payload, key, remaining)
            except _Retryable as exc:
                attempts.append(Attempt(region.value, exc.outcome, _ms(self._clock.monotonic() - started)))
                last = exc
                continue
            except MillisError as exc:
                exc.attempts = (*attempts, Attempt(region.value, exc.code, _ms(self._clock.monotonic() - started)))
                raise
            attempts.append(Attempt(region.value, "ok", _ms(self._clock.monotonic() - started)))
            return MillisRegistration(call_id, sip_uri, region, tuple(attempts))
        tried = ", ".join(f"{a.region}: {a.outcome}" for a in attempts) or "no region (deadline too short)"
        raise MillisUnavailable(
            f"Millis could not register the call ({tried}).",
            attempts,
            rate_limited=bool(last and last.rate_limited),
            retry_after=(last.retry_after if last and last.retry_after else 2),
        )

    def _attempt(
        self, region: MillisRegion, payload: Mapping[str, Any], key: str, remaining: float
    ) -> tuple[str, SipUri]:
        seconds = min(self._connect_timeout + self._read_timeout, remaining)  # the attempt's deadline at the latest
        timeout = httpx.Timeout(
            connect=min(self._connect_timeout, seconds),
            read=min(self._read_timeout, seconds),
            write=min(self._read_timeout, seconds),
            pool=min(self._connect_timeout, seconds),
        )
        try:
            with (
                http_deadline.within(seconds, once_sending=self._read_timeout),
                self._client.stream(
                    "POST", self._urls[region], json=dict(payload), headers={"Authorization": key}, timeout=timeout
                ) as response,
            ):
                body = _read_capped(response)
        except httpx.TimeoutException:
            raise _Retryable("timeout") from None
        except httpx.ConnectError:
            raise _Retryable("connect_error") from None
        except httpx.TransportError as exc:  # dropped connection, protocol error mid-response
            raise _Retryable(f"transport_error:{type(exc).__name__}") from None
        status = response.status_code
        if status == 429:
            raise _Retryable("http_429", rate_limited=True, retry_after=_retry_after(response))
        if status >= 500:
            raise _Retryable(f"http_{status}", retry_after=_retry_after(response))
        if status in (401, 403):
            raise MillisAuthError(
                f"Millis rejected the API key (HTTP {status}) in {region.value}: store the Millis private key "
                "(not the public key) in the stack's secret."
            )
        if status >= 400:
            detail = _detail(body, (key, *_header_secrets(payload)))
            raise MillisRejectedRequest(
                f"Millis refused the registration (HTTP {status}): check agent_id and agent_config.",
                status=status,
                detail=detail,
            )
        if body is None:
            raise MillisBadResponse(f"Millis answered HTTP {status} with a body over {MAX_RESPONSE_BYTES} bytes.")
        return _parse_registration(body, status)


def _read_capped(response: httpx.Response) -> bytes | None:
    """The body, or None when it is larger than MAX_RESPONSE_BYTES (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_registration(body: bytes, status: int) -> tuple[str, SipUri]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise MillisBadResponse(f"Millis answered HTTP {status} with a body that is not JSON.") from None
    if not isinstance(data, dict):
        raise MillisBadResponse("Millis answered with JSON that is not an object.")
    call_id = data.get("call_id")
    if not isinstance(call_id, str) or not TOKEN.match(call_id):
        raise MillisBadResponse("Millis answered without a usable call_id (1-128 visible ASCII characters).")
    raw_uri = data.get("sip_uri") if data.get("sip_uri") is not None else data.get("sip")
    if raw_uri is None:
        raise MillisBadResponse("Millis answered without a SIP URI (neither sip_uri nor sip).")
    try:
        uri = parse_sip_uri(raw_uri)
    except InvalidSipUri as exc:
        raise MillisBadResponse(f"Millis answered with an unusable SIP URI: {exc}.") from None
    return call_id, uri


def _header_secrets(payload: Mapping[str, Any]) -> tuple[str, ...]:
    """Header values the bridge put into the session webhook (the webhook's shared secret)."""
    config = payload.get("agent_config")
    hook = config.get("session_data_webhook") if isinstance(config, dict) else None
    headers = hook.get("headers") if isinstance(hook, dict) else None
    if not isinstance(headers, dict):
        return ()
    return tuple(v for v in headers.values() if isinstance(v, str) and len(v) >= 8)


def _detail(body: bytes | None, secrets: tuple[str, ...]) -> object:
    """Millis' error detail, bounded and with every secret redacted should Millis ever echo one
    (FastAPI's 422 echoes the offending input)."""
    if not body:
        return None
    try:
        data = json.loads(body)
        detail: object = data.get("detail", data) if isinstance(data, dict) else data
        text = json.dumps(detail, ensure_ascii=False)
    except (ValueError, RecursionError):
        detail = text = body.decode("utf-8", "replace")
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
            detail = text
    if len(text) > MAX_DETAIL_CHARS:
        return text[:MAX_DETAIL_CHARS] + "..."
    return detail


def _retry_after(response: httpx.Response) -> int | None:
    raw = response.headers.get("Retry-After", "")
    return min(int(raw), 60) if raw.isascii() and raw.isdigit() else None  # "²".isdigit() is True


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)

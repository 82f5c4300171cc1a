"""A local stand-in for API Gateway (what `sam local start-api` does, without Docker): it serves the
template's routes on loopback, checks the API key as the REST API's usage plans would, turns each HTTP
request into an API Gateway REST (v1) proxy event, invokes the real handler of the route's function
in-process and writes back its proxy response.

It takes the template's API keys (the main key SAM creates, and the others, such as the SIP servers' key, by
logical id): any of them opens every keyed route, as on the stage, and a keyed route's event carries the key and
its id in ``requestContext.identity`` (``apiKey``, ``apiKeyId``: ``local_api_key_id(logical id)``); a route
without a key gets neither, as API Gateway sends null there.

With ``throttle=True`` it also enforces the template's throttles as API Gateway does, each a token bucket
(``burst`` requests at once, refilled at ``rate`` per second): every MethodSettings throttle for its method and
route (shared by all its callers), and each API key's own usage plan on the routes that need a key: a method the
plan throttles on its own (e.g. "/route/GET") has a bucket of its own per key, the plan's throttle covers the
key's other requests. A request past its bucket is answered 429 ``{"message":"Too Many Requests"}`` and never
reaches the function."""

from __future__ import annotations

import base64
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from dev.lambda_context import LocalContext
from dev.template import api_key_required, api_routes, method_throttles, routes_without_api_key, sam_api_key
from dev.template import api_keys as template_api_keys

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
STAGE = "v1"


def _route_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    regex = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{regex}$")


def build_event(
    method: str,
    raw_path: str,
    resource: str,
    path_params: dict[str, str] | None,
    headers: list[tuple[str, str]],
    body: bytes | None,
    source_ip: str = "127.0.0.1",
    domain: str | None = None,
    api_key: str | None = None,
    api_key_id: str | None = None,
) -> dict[str, Any]:
    """An API Gateway REST proxy event, as the service builds it: ``raw_path`` as it came on the wire,
    its path percent-decoded (API Gateway hands functions the decoded path) and its query parsed; ``api_key`` and
    ``api_key_id``: the key API Gateway checked (null on a route that takes none)."""
    split = urlsplit(raw_path)
    path = unquote(split.path)
    query = parse_qs(split.query, keep_blank_values=True)
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        multi_headers.setdefault(name, []).append(value)
    text: str | None = None
    is_b64 = False
    if body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, is_b64 = base64.b64encode(body).decode(), True
    lower = {k.lower(): v[-1] for k, v in multi_headers.items()}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {k: v[-1] for k, v in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": path_params or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/{STAGE}{path}",
            "stage": STAGE,
            "requestId": str(uuid.uuid4()),
            **({"domainName": domain} if domain else {}),
            "requestTimeEpoch": int(time.time() * 1000),
            "accountId": "123456789012",
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "identity": {
                "sourceIp": source_ip,
                "apiKey": api_key,
                "apiKeyId": api_key_id,
                "userAgent": lower.get("user-agent"),
            },
        },
        "body": text,
        "isBase64Encoded": is_b64,
    }


def local_api_key_id(logical_id: str) -> str:
    """The id the local API gives the template's API key ``logical_id`` (what ``!Ref`` of the key is in AWS: an
    opaque id the functions compare, e.g. SIP_SERVER_API_KEY_ID)."""
    return f"local-{logical_id}"


TOO_MANY_REQUESTS = (429, {"Content-Type": "application/json"}, b'{"message":"Too Many Requests"}')


class TokenBucket:
    """``burst`` tokens at first and at most, ``rate`` more each second of ``clock``; a request takes one."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = burst
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + max(now - self._last, 0.0) * self.rate)
            self._last = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class Throttles:
    """The template's throttles: one bucket per throttled method and route; for keyed routes, per API key one for
    each method its usage plan throttles on its own and one for the rest of what the key sends."""

    def __init__(self, parameters: Mapping[str, Any] | None = None, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._methods = {
            route: TokenBucket(rate, burst, clock)
            for route, (rate, burst) in method_throttles(parameters=parameters).items()
        }
        self._plans = template_api_keys(parameters=parameters)
        self._keys: dict[tuple[str, tuple[str, str] | None], TokenBucket] = {}
        self._lock = threading.Lock()

    def allow(self, method: str, resource: str, api_key: str | None) -> bool:
        """``api_key``: the logical id of the template's API key the request came with, on a keyed route."""
        bucket = self._methods.get((method, resource))
        if bucket is not None and not bucket.take():
            return False
        if api_key is None or (plan := self._plans.get(api_key)) is None:
            return True
        route = (method, resource)
        limits, scope = (plan.methods[route], route) if route in plan.methods else (plan.throttle, None)
        if limits is None:
            return True
        with self._lock:
            key_bucket = self._keys.setdefault((api_key, scope), TokenBucket(*limits, self._clock))
        return key_bucket.take()


class LocalApi:
    def __init__(
        self,
        handler: Handler | Sequence[Handler],
        *,
        api_key: str | None,
        api_keys: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 3000,
        function_name: str = "ApiFunction",
        timeout_seconds: float = 20.0,
        functions: Mapping[str, Handler | Sequence[Handler]] | None = None,
        throttle: bool = False,
        parameters: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``handler``: the execution environments of ``function_name`` (ApiFunction); ``functions``: those of
        the template's other functions behind the API (e.g. InboundFunction), by logical id. ``api_key``: the value
        of the main API key (the one SAM creates); ``api_keys``: the values of the template's other API keys, by
        logical id (e.g. {"SipServerApiKey": ...}). ``throttle``: enforce the template's throttles, with its
        parameters' defaults unless ``parameters`` sets them, on ``clock``."""
        self.api_key = api_key if api_key_required() else None
        known = set(template_api_keys(parameters=parameters))
        unknown = set(api_keys or {}) - known
        if unknown:
            raise ValueError(f"not API keys of the template: {sorted(unknown)} (it has {sorted(known)})")
        # value -> logical id of every key that opens the keyed routes
        self.keys: dict[str, str] = {}
        main = sam_api_key()
        if self.api_key is not None and main is not None:
            self.keys[self.api_key] = main
        if api_key_required():
            self.keys.update({value: logical_id for logical_id, value in (api_keys or {}).items()})
        self.throttles = Throttles(parameters, clock) if throttle else None
        self.function_name = function_name
        self.timeout_seconds = timeout_seconds
        self._pools: dict[str, queue.Queue[Handler]] = {}
        self.routes: list[tuple[str, str, re.Pattern[str], str]] = []
        self.open_routes: set[tuple[str, str]] = set()
        for name, handlers in {function_name: handler, **(functions or {})}.items():
            pool: queue.Queue[Handler] = queue.Queue()
            # Each handler is one execution environment: Lambda never runs two invocations in one at the same
            # time, and runs as many environments as there are concurrent requests (here: at most that many).
            for each in [handlers] if callable(handlers) else list(handlers):
                pool.put(each)
            self._pools[name] = pool
            self.routes += [(m, r, _route_pattern(r), name) for m, r in api_routes(name)]
            self.open_routes |= routes_without_api_key(name)
        self._server = ThreadingHTTPServer((host, port), self._request_handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalApi:
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def dispatch(
        self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        path = unquote(urlsplit(raw_path).path)  # API Gateway hands functions the decoded path
        lower = {k.lower(): v for k, v in headers}
        route = next(
            ((r, match, name) for m, r, p, name in self.routes if m == method and (match := p.match(path))), None
        )
        if route is None:  # API Gateway's answer for a method or resource it does not have
            return 403, {"Content-Type": "application/json"}, b'{"message":"Missing Authentication Token"}'
        resource, match, function = route
        keyed = (method, resource) not in self.open_routes
        presented = lower.get("x-api-key") if keyed and self.keys else None
        key = self.keys.get(presented) if presented is not None else None  # its logical id
        if keyed and self.keys and key is None:
            return 403, {"Content-Type": "application/json"}, b'{"message":"Forbidden"}'
        if self.throttles and not self.throttles.allow(method, resource, key):
            return TOO_MANY_REQUESTS
        event = build_event(
            method,
            raw_path,
            resource,
            match.groupdict(),
            headers,
            body,
            domain=lower.get("host"),
            api_key=presented if key is not None else None,
            api_key_id=local_api_key_id(key) if key is not None else None,
        )
        context = LocalContext(function_name=function, timeout_seconds=self.timeout_seconds)
        pool = self._pools[function]
        environment = pool.get()
        try:
            result = environment(event, context)
        finally:
            pool.put(environment)
        out_headers = dict(result.get("headers") or {})
        for name, values in (result.get("multiValueHeaders") or {}).items():
            out_headers[name] = ", ".join(values)
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        return int(result.get("statusCode", 502)), out_headers, data

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "MillisSipBridgeLocal/1"
            # Headers and body go out in separate writes: with Nagle's algorithm the body would wait for the
            # client's delayed ACK of the headers (40 ms on loopback), a delay no real server adds.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                try:
                    status, headers, data = api.dispatch(self.command, self.path, list(self.headers.items()), body)
                except Exception:  # noqa: BLE001 - API Gateway answers 502 when the integration fails
                    status, headers, data = (
                        502,
                        {"Content-Type": "application/json"},
                        b'{"message":"Internal server error"}',
                    )
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve  # noqa: N815

        return RequestHandler

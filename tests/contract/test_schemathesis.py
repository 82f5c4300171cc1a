"""Schemathesis against the local API server of the demo (the real handler behind the API Gateway
stand-in, DynamoDB Local, the Millis simulator), driven by the OpenAPI document the API itself publishes:
valid and invalid requests (positive and negative generation) must get a documented status, content type
and body, invalid ones a 4xx, and none a 5xx."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import GenerationMode

from dev.dynamodb_local import DynamoDBLocal
from dev.function_env import function_env
from dev.functions import load_function
from dev.local_api import LocalApi
from dev.millis_simulator import MillisSimulator
from tests.support.rig import KEYS_SECRET, TABLES, WEBHOOK_SECRET

pytestmark = pytest.mark.integration
API_KEY = "schemathesis-api-key"
EXAMPLES = 40


@pytest.fixture(scope="module")
def served(ddb: DynamoDBLocal, simulator: MillisSimulator) -> Iterator[LocalApi]:
    simulator.clear()
    simulator.known_agents = None
    with pytest.MonkeyPatch.context() as patch:
        env = function_env(
            tables=TABLES,
            millis=simulator.env(),
            dynamodb_endpoint=ddb.endpoint,
            webhook_secret=WEBHOOK_SECRET,
            keys_secret=KEYS_SECRET,
            default_agent_id="schemathesis-agent",
        )
        for name, value in env.items():
            patch.setenv(name, value)
        module = load_function("api_handler")
        with LocalApi(module.lambda_handler, api_key=API_KEY, port=0) as server:
            yield server


@pytest.fixture(scope="module")
def api_schema(served: LocalApi) -> Any:
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json", headers={"x-api-key": API_KEY})


def test_every_answer_is_documented_and_none_is_a_server_error(api_schema: Any) -> None:
    # schemathesis' own pytest plugin does not run on pytest 9 yet: the same checks, driven directly.
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /calls",
        "GET /calls",
        "GET /calls/{call_id}",
        "POST /webhooks/millis",
        "PUT /numbers/{number}",
        "GET /numbers/{number}",
        "DELETE /numbers/{number}",
        "GET /numbers",
    }
    for operation, mode in [(op, mode) for op in operations for mode in GenerationMode]:
        try:
            checks(operation, mode)()
        except Exception as exc:  # noqa: BLE001 - collect every operation's findings, then fail once
            failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)


def checks(operation: Any, mode: GenerationMode) -> Any:
    """Hypothesis' test of one operation in one generation mode."""

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def check(case: Any) -> None:
        # A reused Idempotency-Key with another body is a documented 422 (test_lifecycle covers it);
        # stateless generation would reuse keys by chance, so each generated request gets its own.
        if case.headers and "idempotency-key" in {k.lower() for k in case.headers}:
            case.headers = {k: v for k, v in case.headers.items() if k.lower() != "idempotency-key"}
            case.headers["Idempotency-Key"] = f"st-{uuid.uuid4().hex}"
        # A page cursor is opaque: only one this API gave out is valid, and a made-up one is a documented 400
        # (test_numbers_api covers it), so positive generation does not invent one.
        if mode is GenerationMode.POSITIVE and case.query:
            case.query.pop("next", None)
        # A free-form object's numbers beyond +-(2^53 - 1) are a documented 400 (docs/api.md, Errors: I-JSON) that
        # its schema (any JSON value) cannot state: positive generation does not count them as valid.
        if mode is GenerationMode.POSITIVE:
            assume(not _unsafe_number(case.body))
        # GET /calls' rules across parameters (docs/api.md, "Listing calls"): lookup_key alone, a real date, since
        # before until, at most 7 days apart, years 2000 to 9000. Each is a documented 400 that parameters'
        # schemas cannot state: positive generation does not count a request breaking one as valid.
        if mode is GenerationMode.POSITIVE and operation.label == "GET /calls":
            assume(_listing_is_valid(case.query or {}))
        case.call_and_validate(headers={"x-api-key": API_KEY, "X-Webhook-Secret": WEBHOOK_SECRET})

    return check


def _listing_is_valid(query: dict[str, Any]) -> bool:
    from millis_sip.core.errors import InvalidRequest
    from millis_sip.core.lookup import LIST_DEFAULT_WINDOW, LIST_MAX_WINDOW
    from millis_sip.edges.http.app import LIST_PARAMETERS, _moment

    if "lookup_key" in query and LIST_PARAMETERS & set(query):
        return False
    try:
        since, until = _moment("since", query.get("since")), _moment("until", query.get("until"))
    except InvalidRequest:
        return False
    until = until or datetime.now(UTC)
    since = since or until - LIST_DEFAULT_WINDOW
    return since < until and until - since <= LIST_MAX_WINDOW


def _unsafe_number(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, int | float) and not isinstance(node, bool) and abs(node) > 2**53 - 1:
            return True
    return False

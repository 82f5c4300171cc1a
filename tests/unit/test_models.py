from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from millis_sip.core.errors import InvalidRequest
from millis_sip.edges.http.models import MAX_METADATA_DEPTH, RegisterCallRequest


def parse(body: dict[str, Any]) -> RegisterCallRequest:
    return RegisterCallRequest.model_validate(body)


def test_only_the_fields_the_caller_sent_are_forwarded() -> None:
    request = parse({"agent_id": "a", "metadata": {"x": [1, {"y": None}]}, "lookup_key": "+14155550100"})
    assert request.to_command().millis_payload(default_agent_id="fallback") == {
        "agent_id": "a",
        "metadata": {"x": [1, {"y": None}]},
    }


def test_all_four_millis_fields_pass_through_unchanged() -> None:
    body = {
        "agent_id": "a",
        "agent_config": {"prompt": "p", "tools": []},
        "metadata": {},
        "include_metadata_in_prompt": True,
    }
    assert parse(body).to_command().millis_payload(None) == body


def test_default_agent_fills_in_only_when_no_agent_was_named() -> None:
    assert parse({}).to_command().millis_payload("default-agent") == {"agent_id": "default-agent"}
    assert parse({"agent_config": {"prompt": "p"}}).to_command().millis_payload("default-agent") == {
        "agent_config": {"prompt": "p"}
    }


def test_no_agent_and_no_default_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="agent_id or agent_config"):
        parse({"metadata": {"a": 1}}).to_command().millis_payload(None)


@pytest.mark.parametrize(
    "body",
    [
        {"agent_id": "a", "unknown": 1},
        {"agent_id": 5},
        {"agent_id": ""},
        {"agent_id": "a b"},
        {"agent_id": "a" * 129},
        {"agent_config": "prompt"},
        {"agent_config": ["prompt"]},
        {"metadata": "x"},
        {"include_metadata_in_prompt": "true"},
        {"include_metadata_in_prompt": 1},
        {"lookup_key": ""},
        {"lookup_key": "x" * 129},
        {"lookup_key": "has space"},
        {"lookup_key": "caf\u00e9"},
        {"lookup_key": 14155550100},
        {"metadata": {"blob": "x" * 9000}},
        {"agent_config": {"prompt": "x" * 50_000}},
    ],
)
def test_bad_bodies_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse(body)


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def test_metadata_depth_is_limited() -> None:
    parse({"metadata": nested(MAX_METADATA_DEPTH)})
    with pytest.raises(ValidationError, match="nested deeper"):
        parse({"metadata": nested(MAX_METADATA_DEPTH + 1)})


@pytest.mark.parametrize("key", ["+14155550100", "a84b4c76e66710@pc33.atlanta.com", "CA1234567890abcdef", "x" * 128])
def test_lookup_keys_admit_numbers_call_ids_and_references(key: str) -> None:
    assert parse({"lookup_key": key}).lookup_key == key

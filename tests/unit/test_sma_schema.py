"""The schema every Chime test validates answers with (tests/support/sma_schema.py), held to the documented
example responses: every documented response made of the actions this product sends passes it, and the
documented mistakes (more than ten TransactionAttributes, a tag Chime does not know) fail it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import CHIME_FIXTURES, chime_fixture
from tests.support.sma_schema import ACTIONS, validate_response

RESPONSES = sorted(CHIME_FIXTURES.glob("resp_*.json"))


def as_response(document: dict[str, Any]) -> dict[str, Any]:
    """Bare action objects (the docs show some that way) wrapped into a response."""
    return document if "Actions" in document else {"SchemaVersion": "1.0", "Actions": [document]}


def action_types(path: Path) -> set[str]:
    return {action["Type"] for action in as_response(chime_fixture(path.name))["Actions"]}


COVERED = [p for p in RESPONSES if action_types(p) <= set(ACTIONS)]


def test_the_fixtures_cover_every_action_the_schema_knows() -> None:
    assert set().union(*(action_types(p) for p in COVERED)) == set(ACTIONS)


@pytest.mark.parametrize("path", COVERED, ids=lambda p: p.name)
def test_every_documented_response_of_these_actions_passes(path: Path) -> None:
    validate_response(as_response(chime_fixture(path.name)))


@pytest.mark.parametrize("path", [p for p in RESPONSES if p not in COVERED], ids=lambda p: p.name)
def test_actions_this_product_never_sends_are_outside_the_schema(path: Path) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate_response(as_response(chime_fixture(path.name)))


def test_more_than_ten_transaction_attributes_fail_as_chime_refuses_them() -> None:
    # resp_PlayAudio_6 is the documented response Chime answers with INVALID_LAMBDA_RESPONSE
    # (TransactionAttributesInvalidMapSize): its eleven attributes, on an action this product sends.
    attributes = chime_fixture("resp_PlayAudio_6.json")["TransactionAttributes"]
    assert len(attributes) == 11
    response = copy.deepcopy(chime_fixture("resp_Empty_1.json"))
    response["TransactionAttributes"] = attributes
    with pytest.raises(jsonschema.ValidationError, match="too many properties"):
        validate_response(response)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda a: a["Parameters"].update(SipResponseCode="500"), "a SIP code Hangup does not take"),
        (lambda a: a["Parameters"].update(ParticipantTag="Leg-C"), "a leg that does not exist"),
        (lambda a: a["Parameters"].update(Surprise=1), "a parameter Hangup does not have"),
        (lambda a: a.update(Type="HangUp"), "a misspelt action"),
    ],
)
def test_a_documented_action_with_one_mistake_fails(change: Any, why: str) -> None:
    action = copy.deepcopy(chime_fixture("resp_Hangup_1.json"))
    change(action)
    with pytest.raises(jsonschema.ValidationError):
        validate_response(as_response(action))


def test_a_voice_connector_uri_longer_than_36_characters_fails() -> None:
    response = copy.deepcopy(chime_fixture("resp_CallAndBridge_1.json"))
    response["Actions"][0]["Parameters"]["Endpoints"][0]["Uri"] = "u" * 37
    with pytest.raises(jsonschema.ValidationError):
        validate_response(response)

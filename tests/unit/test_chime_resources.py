"""The Chime custom resources with botocore's Stubber: what they ask chime-sdk-voice, and that CloudFormation
gets exactly one answer on every path (success, refusal, bad properties, timeout)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import chime_resources
from dev.lambda_context import LocalContext

VC = "abcdefghij0123456789ab"
ROUTE = {"Host": "sip.millis.example", "Port": "5060", "Protocol": "TCP", "Priority": "1", "Weight": "1"}
PARSED_ROUTE = {"Host": "sip.millis.example", "Port": 5060, "Protocol": "TCP", "Priority": 1, "Weight": 1}
RULE = {
    "Name": "millis-sip-bridge",
    "PhoneNumber": "+15055550123",
    "SipMediaApplicationId": "sma-1",
    "AwsRegion": "us-east-1",
}
TARGETS = [{"SipMediaApplicationId": "sma-1", "Priority": 1, "AwsRegion": "us-east-1"}]


class Answers:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.urls: list[str] = []

    def __call__(self, url: str, body: bytes) -> None:
        self.urls.append(url)
        self.sent.append(json.loads(body))

    @property
    def only(self) -> dict[str, Any]:
        [answer] = self.sent
        return answer


@pytest.fixture
def chime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client("chime-sdk-voice", region_name="us-east-1")
    monkeypatch.setattr(chime_resources, "_resources", chime_resources.Resources(client))
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def event(request: str, kind: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "RequestType": request,
        "ResponseURL": "https://cloudformation-custom-resource-response.s3.amazonaws.com/signed",
        "StackId": "arn:aws:cloudformation:us-east-1:111122223333:stack/bridge/guid",
        "RequestId": "req-1",
        "ResourceType": kind,
        "LogicalResourceId": "Thing",
        "ServiceToken": "arn:aws:lambda:us-east-1:111122223333:function:ChimeResources",
        "ResourceProperties": {"ServiceToken": "x", **properties},
        **extra,
    }


def run(evt: dict[str, Any], timeout: float = 60.0) -> Answers:
    answers = Answers()
    chime_resources.lambda_handler(evt, LocalContext(timeout_seconds=timeout), send=answers)
    return answers


ORIGINATION = "Custom::VoiceConnectorOrigination"
SIP_RULE = "Custom::SipRule"


def test_origination_create_sets_the_routes(chime: Stubber) -> None:
    chime.add_response(
        "put_voice_connector_origination",
        {"Origination": {"Routes": [PARSED_ROUTE], "Disabled": False}},
        {"VoiceConnectorId": VC, "Origination": {"Routes": [PARSED_ROUTE], "Disabled": False}},
    )
    answer = run(event("Create", ORIGINATION, {"VoiceConnectorId": VC, "Routes": [ROUTE]})).only
    assert (answer["Status"], answer["PhysicalResourceId"]) == ("SUCCESS", f"{VC}/origination")
    assert (answer["RequestId"], answer["LogicalResourceId"]) == ("req-1", "Thing")
    assert answer["Data"] == {"VoiceConnectorId": VC}


def test_origination_update_to_another_connector_gets_a_new_physical_id(chime: Stubber) -> None:
    chime.add_response(
        "put_voice_connector_origination",
        {},
        {"VoiceConnectorId": "other", "Origination": {"Routes": [PARSED_ROUTE], "Disabled": False}},
    )
    answer = run(
        event(
            "Update",
            ORIGINATION,
            {"VoiceConnectorId": "other", "Routes": [ROUTE]},
            PhysicalResourceId=f"{VC}/origination",
        )
    ).only
    assert answer["PhysicalResourceId"] == "other/origination"


@pytest.mark.parametrize("error", [None, "NotFoundException"])
def test_origination_delete_removes_the_routes_even_if_already_gone(chime: Stubber, error: str | None) -> None:
    if error:
        chime.add_client_error("delete_voice_connector_origination", error, expected_params={"VoiceConnectorId": VC})
    else:
        chime.add_response("delete_voice_connector_origination", {}, {"VoiceConnectorId": VC})
    answer = run(event("Delete", ORIGINATION, {"VoiceConnectorId": VC}, PhysicalResourceId=f"{VC}/origination")).only
    assert answer["Status"] == "SUCCESS"


def test_deleting_a_resource_whose_create_failed_touches_nothing(chime: Stubber) -> None:
    for kind in (ORIGINATION, SIP_RULE, "Custom::Unknown"):
        answer = run(event("Delete", kind, {}, PhysicalResourceId="failed-req-0")).only
        assert (answer["Status"], answer["PhysicalResourceId"]) == ("SUCCESS", "failed-req-0")


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ([{**ROUTE, "Protocol": "TLS"}], "Protocol"),
        ([{**ROUTE, "Port": "sip"}], "Port"),
        ([{**ROUTE, "Priority": "0"}], "Priority"),
        ([{**ROUTE, "Host": ""}], "Host"),
        ([], "Routes"),
        ("sip.millis.example", "Routes"),
    ],
)
def test_bad_routes_fail_with_the_reason_and_call_nothing(chime: Stubber, routes: Any, message: str) -> None:
    answer = run(event("Create", ORIGINATION, {"VoiceConnectorId": VC, "Routes": routes})).only
    assert answer["Status"] == "FAILED"
    assert message in answer["Reason"]
    assert answer["PhysicalResourceId"] == "failed-req-1"


def test_sip_rule_create(chime: Stubber) -> None:
    chime.add_response(
        "create_sip_rule",
        {"SipRule": {"SipRuleId": "rule-1"}},
        {
            "Name": "millis-sip-bridge",
            "TriggerType": "ToPhoneNumber",
            "TriggerValue": "+15055550123",
            "Disabled": False,
            "TargetApplications": TARGETS,
        },
    )
    answer = run(event("Create", SIP_RULE, RULE)).only
    assert (answer["Status"], answer["PhysicalResourceId"], answer["Data"]) == (
        "SUCCESS",
        "rule-1",
        {"SipRuleId": "rule-1"},
    )


def test_sip_rule_update_of_the_application_keeps_the_rule(chime: Stubber) -> None:
    chime.add_response(
        "update_sip_rule",
        {},
        {"SipRuleId": "rule-1", "Name": "millis-sip-bridge", "Disabled": False, "TargetApplications": TARGETS},
    )
    answer = run(
        event(
            "Update",
            SIP_RULE,
            RULE,
            PhysicalResourceId="rule-1",
            OldResourceProperties={**RULE, "SipMediaApplicationId": "old"},
        )
    ).only
    assert answer["PhysicalResourceId"] == "rule-1"


def test_sip_rule_for_a_new_number_is_a_new_rule(chime: Stubber) -> None:
    chime.add_response("create_sip_rule", {"SipRule": {"SipRuleId": "rule-2"}})
    answer = run(
        event(
            "Update",
            SIP_RULE,
            RULE,
            PhysicalResourceId="rule-1",
            OldResourceProperties={**RULE, "PhoneNumber": "+15055550999"},
        )
    ).only
    assert answer["PhysicalResourceId"] == "rule-2"


@pytest.mark.parametrize("gone", [False, True])
def test_sip_rule_delete_disables_then_deletes(chime: Stubber, gone: bool) -> None:
    if gone:
        chime.add_client_error("update_sip_rule", "NotFoundException")
    else:
        chime.add_response(
            "update_sip_rule", {}, {"SipRuleId": "rule-1", "Name": "millis-sip-bridge", "Disabled": True}
        )
        chime.add_response("delete_sip_rule", {}, {"SipRuleId": "rule-1"})
    assert run(event("Delete", SIP_RULE, RULE, PhysicalResourceId="rule-1")).only["Status"] == "SUCCESS"


def test_a_number_that_is_not_e164_is_refused(chime: Stubber) -> None:
    answer = run(event("Create", SIP_RULE, {**RULE, "PhoneNumber": "5055550123"})).only
    assert answer["Status"] == "FAILED" and "E.164" in answer["Reason"]


def test_a_refusal_from_chime_fails_the_resource_with_its_code(chime: Stubber) -> None:
    chime.add_client_error("create_sip_rule", "ConflictException", "rule exists for +15055550123")
    answer = run(event("Create", SIP_RULE, RULE)).only
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith("ConflictException")


def test_an_unknown_resource_type_fails_on_create(chime: Stubber) -> None:
    assert run(event("Create", "Custom::Other", {})).only["Status"] == "FAILED"


def test_a_handler_that_runs_out_of_time_still_answers_once(chime: Stubber, monkeypatch: pytest.MonkeyPatch) -> None:
    finished = threading.Event()

    def slow(evt: dict[str, Any]) -> tuple[str, dict[str, str]]:
        time.sleep(0.5)
        finished.set()
        return "late", {}

    monkeypatch.setattr(chime_resources._resources, "handle", slow)
    answers = run(event("Create", ORIGINATION, {}), timeout=chime_resources.TIMEOUT_MARGIN_SECONDS + 0.1)
    assert finished.is_set()
    assert [a["Status"] for a in answers.sent] == ["FAILED"]
    assert "Timed out" in answers.only["Reason"]


def test_an_answer_that_cannot_be_sent_is_logged_and_does_not_raise(
    chime: Stubber, caplog: pytest.LogCaptureFixture
) -> None:
    tried: list[tuple[str, dict[str, Any]]] = []

    def broken(url: str, body: bytes) -> None:
        tried.append((url, json.loads(body)))
        raise OSError("network down")

    request = event("Delete", "Custom::Other", {})
    chime_resources.lambda_handler(request, LocalContext(), send=broken)  # returns: CloudFormation is not blocked
    [(url, body)] = tried
    assert url == request["ResponseURL"]
    assert (body["Status"], body["RequestId"]) == ("SUCCESS", request["RequestId"])
    assert any("Could not send the answer to CloudFormation" in r.getMessage() for r in caplog.records)


def test_answers_go_only_to_https() -> None:
    with pytest.raises(ValueError, match="https"):
        chime_resources.put_response("http://example.com/x", b"{}")

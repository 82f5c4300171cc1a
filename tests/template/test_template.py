"""template.yaml: lint-clean, and the properties the product promises (storage, auth, least privilege)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from dev.template import api_routes, condition, load_template, resource, routes_without_api_key, table_definition
from tests.conftest import EVENTS, ROOT

pytestmark = pytest.mark.template
BIN = Path(sys.executable).parent
TOOL_ENV = {**os.environ, "SAM_CLI_TELEMETRY": "0", "SAM_CLI_DISABLE_CHECK_UPDATE": "1"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=TOOL_ENV, timeout=300, check=False)


# Regions whose CloudFormation has AWS::Chime::VoiceConnector and AWS::Chime::SipMediaApplication (the
# resource schemas shipped with cfn-lint); docs/chime.md lists the same.
CHIME_CFN_REGIONS = (
    "us-east-1",
    "ca-central-1",
    "eu-central-1",
    "eu-west-1",
    "eu-west-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-southeast-1",
    "ap-southeast-2",
)
NESTED = ("templates/voice-connector.yaml", "templates/sip-media-application.yaml")


def test_cfn_lint_is_clean_with_no_warnings() -> None:
    result = run(str(BIN / "cfn-lint"), "template.yaml")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_main_template_lints_in_regions_without_chime_too() -> None:
    # The HTTP API must deploy anywhere: no Chime type may appear outside the nested stacks.
    result = run(
        str(BIN / "cfn-lint"), "--regions", "us-west-2", "us-east-2", "eu-north-1", "sa-east-1", "--", "template.yaml"
    )
    assert (result.returncode, result.stdout) == (0, "")
    types = {r["Type"] for r in load_template()["Resources"].values()}
    assert not any(t.startswith("AWS::Chime::") for t in types)


def test_the_chime_nested_stacks_lint_in_every_region_that_has_the_chime_types() -> None:
    result = run(str(BIN / "cfn-lint"), "--regions", *CHIME_CFN_REGIONS, "--", *NESTED)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_sam_validate_lint_is_clean() -> None:
    result = run(str(BIN / "sam"), "validate", "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_calls_table_keys_index_ttl_and_protection() -> None:
    table = resource("CallsTable")
    props = table["Properties"]
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert props["KeySchema"] == [{"AttributeName": "call_id", "KeyType": "HASH"}]
    [index] = [g for g in table_definition()["GlobalSecondaryIndexes"] if g["IndexName"] == "by-lookup-index"]
    assert index["KeySchema"] == [
        {"AttributeName": "lookup_index", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True


def test_the_code_uses_the_index_the_template_defines() -> None:
    from millis_sip.adapters.dynamodb.store import LOOKUP_ATTRIBUTE, LOOKUP_INDEX

    [index] = [g for g in table_definition()["GlobalSecondaryIndexes"] if g["IndexName"] == LOOKUP_INDEX]
    assert index["KeySchema"][0] == {"AttributeName": LOOKUP_ATTRIBUTE, "KeyType": "HASH"}


def test_the_lookup_index_holds_no_phone_number() -> None:
    # A keyed hash as its key, and only the attributes a claim needs: never lookup_key or a caller's number.
    [index] = [g for g in table_definition()["GlobalSecondaryIndexes"] if g["IndexName"] == "by-lookup-index"]
    projection = index["Projection"]
    assert projection["ProjectionType"] == "INCLUDE"
    assert not {"lookup_key", "caller_number", "dialed_number"} & set(projection["NonKeyAttributes"])


def test_the_listing_index_is_by_day_and_only_the_api_queries_it() -> None:
    from millis_sip.adapters.dynamodb.codec import LIST_DAY
    from millis_sip.adapters.dynamodb.store import LIST_INDEX

    indexes = {g["IndexName"]: g for g in table_definition()["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"by-lookup-index", LIST_INDEX}  # the legacy index only while an upgrade keeps it
    index = indexes[LIST_INDEX]
    assert index["KeySchema"] == [
        {"AttributeName": LIST_DAY, "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}  # a page is answered from the index alone
    defined = {d["AttributeName"]: d["AttributeType"] for d in table_definition()["AttributeDefinitions"]}
    assert defined[LIST_DAY] == "S"
    listers = {
        function_id
        for function_id in all_functions()
        for statement in statements(function_id)
        if f"/index/{LIST_INDEX}" in json.dumps(statement["Resource"])
    }
    assert listers == {"ApiFunction"}


def test_the_old_lookup_index_stays_only_for_an_upgrades_first_deploy() -> None:
    gsis = resource("CallsTable")["Properties"]["GlobalSecondaryIndexes"]
    [legacy] = [g for g in gsis if "Fn::If" in g]
    condition, kept, dropped = legacy["Fn::If"]
    assert condition == "KeepLegacyLookupIndex" and kept["IndexName"] == "by-lookup-key"
    assert dropped == {"Ref": "AWS::NoValue"}
    assert load_template()["Parameters"]["LegacyLookupIndex"]["Default"] == "remove"


def test_only_sip_server_markers_can_be_deleted_by_the_inbound_function() -> None:
    from millis_sip.core.ports import transaction_key

    [release] = [s for s in statements("InboundFunction") if s.get("Sid") == "SipServerRetryRelease"]
    assert release["Action"] == ["dynamodb:DeleteItem"]
    [pattern] = release["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    assert fnmatch.fnmatchcase(transaction_key("sip", "a84b4c76e66710@pbx.example", 1), pattern)
    for other in (transaction_key("twilio", "CA1", 1), transaction_key("chime", "tx", 1), "sim-123"):
        assert not fnmatch.fnmatchcase(other, pattern)
    deletes_calls = [
        (name, statement.get("Sid"))
        for name in ("ApiFunction", "SipMediaAppFunction", "InboundFunction")
        for statement in statements(name)
        if "dynamodb:DeleteItem" in statement["Action"] and "CallsTable" in json.dumps(statement["Resource"])
    ]
    assert deletes_calls == [("InboundFunction", "SipServerRetryRelease")]


def test_chime_speaks_with_a_service_linked_role_created_only_when_asked() -> None:
    role = resource("VoiceConnectorServiceLinkedRole")
    assert role["Condition"] == "CreateVoiceConnectorRole"
    assert role["Properties"]["AWSServiceName"] == "voiceconnector.chime.amazonaws.com"
    assert load_template()["Parameters"]["CreateChimeServiceLinkedRole"]["Default"] == "false"


# Routes that go without the API key, each authenticated by its caller's own signature or secret instead.
SIGNED_ROUTES = {
    ("POST", "/webhooks/millis"),
    *(("POST", f"/carriers/{carrier}/{route}") for carrier in ("twilio", "telnyx") for route in ("voice", "status")),
    ("GET", "/carriers/vonage/answer"),
    ("POST", "/carriers/vonage/answer"),
    ("POST", "/carriers/vonage/event"),
    ("POST", "/carriers/plivo/answer"),
    ("POST", "/carriers/plivo/status"),
    ("POST", "/carriers/twilio/outbound"),  # outbound calls: the answer URL Twilio is given
    ("POST", "/carriers/twilio/outbound/status"),
    ("POST", "/carriers/telnyx/outbound"),
    ("POST", "/carriers/telnyx/outbound/status"),
    ("POST", "/carriers/vonage/outbound"),
    ("POST", "/carriers/vonage/outbound/status"),
    ("POST", "/carriers/twilio/transfer/whisper"),  # transfers: the warm transfer's whisper, the transfer leg
    ("POST", "/carriers/twilio/transfer/status"),
    ("GET", "/carriers/vonage/transfer/whisper"),
    ("POST", "/carriers/vonage/transfer/whisper"),
    ("POST", "/carriers/vonage/transfer/status"),
    ("POST", "/carriers/telnyx/transfer/whisper"),
    ("POST", "/carriers/telnyx/transfer/status"),
    ("POST", "/carriers/signalwire/transfer/whisper"),
    ("POST", "/carriers/signalwire/transfer/status"),
    ("POST", "/carriers/twilio/refer"),
    ("POST", "/carriers/plivo/transfer/answer"),
    ("POST", "/carriers/plivo/transfer/whisper"),
    ("POST", "/carriers/plivo/transfer/status"),
    ("POST", "/carriers/signalwire/outbound"),
    ("POST", "/carriers/signalwire/outbound/status"),
    ("POST", "/carriers/plivo/outbound"),
    ("POST", "/carriers/plivo/outbound/status"),
}


def test_every_route_requires_an_api_key_or_a_signature_and_each_has_a_throttle() -> None:
    api = resource("MillisApi")["Properties"]
    auth = api["Auth"]
    assert auth["ApiKeyRequired"] is True
    assert auth["UsagePlan"]["CreateUsagePlan"] == "PER_API"
    assert set(auth["UsagePlan"]["Throttle"]) == {"RateLimit", "BurstLimit"}
    open_routes = set()
    for function_id in all_functions():
        for event in resource(function_id)["Properties"].get("Events", {}).values():
            if event.get("Type") != "Api":
                continue
            assert event["Properties"]["RestApiId"] == {"Ref": "MillisApi"}
            if event["Properties"].get("Auth", {}).get("ApiKeyRequired", True) is not True:
                open_routes.add((event["Properties"]["Method"].upper(), event["Properties"]["Path"]))
    assert open_routes == SIGNED_ROUTES
    # The usage plan throttles only requests with a key: each open route has a method throttle of its own.
    throttled = {
        (s["HttpMethod"], s["ResourcePath"][1:].replace("~1", "/"))  # "/~1a~1b" is /a/b
        for s in api["MethodSettings"]
        if {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(s)
    }
    assert throttled == SIGNED_ROUTES


def test_sip_servers_have_a_key_of_their_own_in_a_usage_plan_of_their_own_on_the_stage() -> None:
    template = load_template()
    key = resource("SipServerApiKey")
    assert key["Type"] == "AWS::ApiGateway::ApiKey"
    assert key["Properties"]["Enabled"] is True
    assert "StageKeys" not in key["Properties"]  # the usage plan alone binds it to the stage
    plan = resource("SipServerUsagePlan")
    assert plan["Type"] == "AWS::ApiGateway::UsagePlan"
    limits = {"RateLimit": {"Ref": "SipServerThrottleRateLimit"}, "BurstLimit": {"Ref": "SipServerThrottleBurstLimit"}}
    [stage] = plan["Properties"]["ApiStages"]
    assert stage == {
        "ApiId": {"Ref": "MillisApi"},
        "Stage": {"Ref": "MillisApi.Stage"},
        # GET /route and the REFER routes a SIP server asks (docs/sip-servers.md, "REFER")
        "Throttle": {"/route/GET": limits, "/route/refer/GET": limits, "/route/refer/status/GET": limits},
    }
    # Every other method answers the key 403 from ApiFunction, each an invocation: the plan bounds those too.
    assert plan["Properties"]["Throttle"] == limits
    link = resource("SipServerUsagePlanKey")
    assert link["Type"] == "AWS::ApiGateway::UsagePlanKey"
    assert link["Properties"] == {
        "KeyId": {"Ref": "SipServerApiKey"},
        "KeyType": "API_KEY",
        "UsagePlanId": {"Ref": "SipServerUsagePlan"},
    }
    # The throttled methods are the SIP servers' routes, which take an API key.
    keyed = set(api_routes("InboundFunction")) - routes_without_api_key("InboundFunction")
    assert {("GET", "/route"), ("GET", "/route/refer"), ("GET", "/route/refer/status")} == keyed
    for name, default in (("SipServerThrottleRateLimit", 20), ("SipServerThrottleBurstLimit", 40)):
        parameter = template["Parameters"][name]
        assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", default, 1), name


def test_only_the_api_function_learns_the_sip_servers_key_and_the_outputs_name_it_like_the_main_key() -> None:
    # API Gateway cannot bind a key to one method: ApiFunction refuses the SIP servers' key itself. GET /route
    # (InboundFunction) takes both keys, so InboundFunction needs no check.
    holders = {
        f
        for f in all_functions()
        if "SIP_SERVER_API_KEY_ID" in resource(f)["Properties"].get("Environment", {}).get("Variables", {})
    }
    assert holders == {"ApiFunction"}
    env = resource("ApiFunction")["Properties"]["Environment"]["Variables"]
    assert env["SIP_SERVER_API_KEY_ID"] == {"Ref": "SipServerApiKey"}
    outputs = load_template()["Outputs"]
    assert outputs["SipServerApiKeyId"]["Value"] == {"Ref": "SipServerApiKey"}
    main = outputs["ApiKeyValueCommand"]["Value"]["Fn::Sub"]
    assert outputs["SipServerApiKeyValueCommand"]["Value"] == {
        "Fn::Sub": main.replace("${MillisApiApiKey}", "${SipServerApiKey}")
    }


# --- AWS WAF in front of the routes without an API key ----------------------------------------------------------

WAF_ON = {"WafRateLimitPerIp": 100}
WAF_AND_ALLOW_LIST = {**WAF_ON, "CarrierSourceCidrs": "192.0.2.0/24,198.51.100.0/24"}
# The paths a route is reached at: the stage on the execute-api domain, a base path or none on a custom domain.
PREFIXES = ("/v1", "/bridge", "")


def all_routes() -> dict[tuple[str, str], bool]:
    """(METHOD, path) of every route of the API -> whether it takes the API key."""
    routes: dict[tuple[str, str], bool] = {}
    for function_id in all_functions():
        keyless = routes_without_api_key(function_id)
        routes |= {route: route not in keyless for route in api_routes(function_id)}
    return routes


def sample_path(route_path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", route_path)


def waf_matches(statement: dict[str, Any], path: str, from_carrier: bool) -> bool:
    """What AWS WAF decides for ``statement`` on a request for ``path`` (its URI path) from an address inside
    CarrierSourceCidrs or not: the statement types the web ACL uses, each as the WAF developer guide defines it."""
    [(kind, body)] = statement.items()
    if kind in ("AndStatement", "OrStatement"):
        results = [waf_matches(s, path, from_carrier) for s in body["Statements"]]
        return all(results) if kind == "AndStatement" else any(results)
    if kind == "NotStatement":
        return not waf_matches(body["Statement"], path, from_carrier)
    if kind == "IPSetReferenceStatement":
        assert body == {"Arn": {"Fn::GetAtt": ["CarrierSourceIpSet", "Arn"]}}
        return from_carrier
    assert kind == "ByteMatchStatement", kind
    assert body["FieldToMatch"] == {"UriPath": {}}
    assert body["TextTransformations"] == [{"Priority": 0, "Type": "URL_DECODE"}]
    assert body["PositionalConstraint"] == "CONTAINS"
    return str(body["SearchString"]) in unquote(path)


def web_acl_rules(allow_list: bool) -> dict[str, dict[str, Any]]:
    """The web ACL's rules by name, with each Fn::If decided by whether CarrierSourceCidrs is set."""

    def decide(node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"Fn::If"}:
            name, then, otherwise = node["Fn::If"]
            assert name == "HasCarrierAllowList"
            return decide(then if allow_list else otherwise)
        if isinstance(node, dict):
            return {k: decide(v) for k, v in node.items()}
        if isinstance(node, list):
            return [decide(item) for item in node if decide(item) != {"Ref": "AWS::NoValue"}]
        return node

    rules = decide(resource("OpenRoutesWebAcl")["Properties"]["Rules"])
    return {rule["Name"]: rule for rule in rules}


def test_no_web_acl_and_no_allow_list_with_the_defaults() -> None:
    template = load_template()
    limit, cidrs = template["Parameters"]["WafRateLimitPerIp"], template["Parameters"]["CarrierSourceCidrs"]
    assert (limit["Type"], limit["Default"], limit["MinValue"], limit["MaxValue"]) == ("Number", 0, 0, 2000000000)
    assert (cidrs["Type"], cidrs["Default"]) == ("CommaDelimitedList", "")
    waf = {name: body for name, body in template["Resources"].items() if body["Type"].startswith("AWS::WAFv2::")}
    assert {name: body["Condition"] for name, body in waf.items()} == {
        "CarrierSourceIpSet": "HasCarrierAllowList",
        "OpenRoutesWebAcl": "HasWebAcl",
        "OpenRoutesWebAclAssociation": "HasWebAcl",
    }
    assert not condition("HasWebAcl") and not condition("HasCarrierAllowList")
    assert condition("HasWebAcl", WAF_ON) and not condition("HasCarrierAllowList", WAF_ON)
    assert condition("HasCarrierAllowList", WAF_AND_ALLOW_LIST)
    # The allow-list lives in the web ACL: without it nothing enforces the list, and a rule refuses the deploy.
    assert not condition("HasCarrierAllowList", {"CarrierSourceCidrs": WAF_AND_ALLOW_LIST["CarrierSourceCidrs"]})
    rule = template["Rules"]["CarrierSourceCidrsNeedTheWebAcl"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "WafRateLimitPerIp"}, "0"]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::EachMemberEquals": [{"Ref": "CarrierSourceCidrs"}, ""]}
    # Nothing outside them names the WAF resources (an output or a reference would exist without them).
    for section in ("Resources", "Outputs"):
        for name, body in template[section].items():
            if name not in waf and any(w in json.dumps(body) for w in waf):
                raise AssertionError(f"{section}.{name} names a WAF resource")


def test_the_rate_limit_is_one_aws_waf_takes() -> None:
    # AWS WAF's lowest rate limit is 10: 1-9 would fail the deploy at the web ACL, so a rule refuses them first.
    [assertion] = load_template()["Rules"]["WafRateLimitIsZeroOrAtLeastTen"]["Assertions"]
    [(function, (refused, value))] = assertion["Assert"]["Fn::Not"][0].items()
    assert function == "Fn::Contains" and value == {"Ref": "WafRateLimitPerIp"}
    assert refused == [str(n) for n in range(1, 10)]


def test_carrier_ranges_are_ipv4_cidrs_the_user_supplies() -> None:
    parameter = load_template()["Parameters"]["CarrierSourceCidrs"]
    pattern = parameter["AllowedPattern"]  # applies to each member of the list
    for good in ("", "192.0.2.0/24", "198.51.100.7/32", "10.0.0.0/8"):
        assert re.fullmatch(pattern, good), good
    for bad in ("192.0.2.0", "0.0.0.0/0", "192.0.2.0/33", "2001:db8::/32", "twilio"):
        assert not re.fullmatch(pattern, bad), bad
    assert "IPv4 only" in parameter["Description"] and "publishes" in parameter["Description"]
    ip_set = resource("CarrierSourceIpSet")["Properties"]
    assert (ip_set["Scope"], ip_set["IPAddressVersion"]) == ("REGIONAL", "IPV4")
    assert ip_set["Addresses"] == {"Ref": "CarrierSourceCidrs"}  # nothing hard-coded that a carrier may change


def test_the_web_acl_is_regional_allows_by_default_reports_metrics_and_sits_on_the_stage() -> None:
    acl = resource("OpenRoutesWebAcl")["Properties"]
    assert (acl["Scope"], acl["DefaultAction"]) == ("REGIONAL", {"Allow": {}})
    visibility = [acl["VisibilityConfig"]] + [rule["VisibilityConfig"] for rule in web_acl_rules(True).values()]
    assert all(v["CloudWatchMetricsEnabled"] is True and v["SampledRequestsEnabled"] is True for v in visibility)
    assert len({json.dumps(v["MetricName"]) for v in visibility}) == len(visibility)
    association = resource("OpenRoutesWebAclAssociation")["Properties"]
    assert association["WebACLArn"] == {"Fn::GetAtt": ["OpenRoutesWebAcl", "Arn"]}
    # The stage's ARN; MillisApi.Stage is "v1" and makes the association wait for the stage.
    assert association["ResourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${MillisApi}/stages/${MillisApi.Stage}"
    }
    assert resource("MillisApi")["Properties"]["StageName"] == "v1"


@pytest.mark.parametrize("allow_list", [False, True], ids=["rate-limit", "rate-limit-and-allow-list"])
def test_the_rate_based_rule_counts_per_source_ip_the_routes_without_a_key_only(allow_list: bool) -> None:
    rules = web_acl_rules(allow_list)
    rule = rules["OpenRoutesPerSourceIp"]
    assert rule["Action"] == {
        "Block": {"CustomResponse": {"ResponseCode": 429, "CustomResponseBodyKey": "too-many-requests"}}
    }
    bodies = resource("OpenRoutesWebAcl")["Properties"]["CustomResponseBodies"]
    assert json.loads(bodies["too-many-requests"]["Content"]) == {"message": "Too Many Requests"}  # API Gateway's
    rate = rule["Statement"]["RateBasedStatement"]
    assert (rate["Limit"], rate["AggregateKeyType"], rate["EvaluationWindowSec"]) == (
        {"Ref": "WafRateLimitPerIp"},
        "IP",
        60,
    )
    scope = rate["ScopeDownStatement"]
    for (method, path), keyed in all_routes().items():
        for prefix in PREFIXES:
            for sent in (prefix + sample_path(path), prefix + sample_path(path).replace("c", "%63", 1)):
                counted = waf_matches(scope, sent, from_carrier=False)
                assert counted is not keyed, (method, sent)
                # The carriers' listed addresses carry every caller's webhooks: never counted once listed.
                assert waf_matches(scope, sent, from_carrier=True) is (counted and not allow_list), (method, sent)
    assert set(rules) == ({"CarrierRoutesFromCarrierRangesOnly"} if allow_list else set()) | {"OpenRoutesPerSourceIp"}


def test_the_allow_list_blocks_the_carrier_routes_from_anywhere_else_and_nothing_more() -> None:
    rule = web_acl_rules(True)["CarrierRoutesFromCarrierRangesOnly"]
    assert rule["Action"] == {"Block": {}}
    assert rule["Priority"] < web_acl_rules(True)["OpenRoutesPerSourceIp"]["Priority"]
    for (method, path), _keyed in all_routes().items():
        for prefix in PREFIXES:
            sent = prefix + sample_path(path)
            assert not waf_matches(rule["Statement"], sent, from_carrier=True), (method, sent)
            assert waf_matches(rule["Statement"], sent, from_carrier=False) is path.startswith("/carriers/"), sent


def statements(function_id: str) -> list[dict[str, Any]]:
    """Every statement a function may get; a conditional one (Fn::If ... AWS::NoValue) counts as granted."""
    found: list[dict[str, Any]] = []
    for policy in resource(function_id)["Properties"]["Policies"]:
        assert isinstance(policy, dict) and "Statement" in policy, "only inline, scoped statements"
        for statement in policy["Statement"]:
            if "Fn::If" in statement:
                _, granted, otherwise = statement["Fn::If"]
                assert otherwise == {"Ref": "AWS::NoValue"}, "a conditional statement is granted or absent"
                statement = granted
            found.append(statement)
    return found


def test_api_function_has_only_the_table_and_secret_actions_it_uses() -> None:
    granted = {action for s in statements("ApiFunction") for action in s["Action"]}
    assert granted == {
        "dynamodb:PutItem",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",  # idempotency records and number routes only
        "dynamodb:Query",
        "dynamodb:Scan",  # listing number routes only
        "secretsmanager:GetSecretValue",
        "kms:Decrypt",  # only with SecretsKmsKeyArn, only through Secrets Manager
        # Outbound calls through Chime, on the stack's SIP media application only.
        "chime:CreateSipMediaApplicationCall",
        "chime:UpdateSipMediaApplicationCall",
    }
    deleting = [s for s in statements("ApiFunction") if "dynamodb:DeleteItem" in s["Action"]]
    assert [s["Resource"] for s in deleting] == [
        {"Fn::GetAtt": ["IdempotencyTable", "Arn"]},
        {"Fn::GetAtt": ["NumbersTable", "Arn"]},
    ]
    scanning = [s for s in statements("ApiFunction") if "dynamodb:Scan" in s["Action"]]
    assert [s["Resource"] for s in scanning] == [{"Fn::GetAtt": ["NumbersTable", "Arn"]}]
    for statement in statements("ApiFunction"):
        assert statement["Effect"] == "Allow"
        assert all("*" not in action for action in statement["Action"])
        assert statement["Resource"] != "*"
        assert "*" not in json.dumps(statement["Resource"])


def test_runtime_architecture_and_layer_build() -> None:
    template = load_template()
    function_globals = template["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == [{"Ref": "Architecture"}]
    assert template["Parameters"]["Architecture"]["Default"] == "arm64"
    layer = resource("MillisSipLayer")
    # layers/millis_sip/Makefile builds it (hashed lock, bytecode); ContextPath hands it the architecture.
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Metadata"]["BuildArchitecture"] == {"Ref": "Architecture"}
    assert layer["Metadata"]["ContextPath"] == {"Fn::Sub": "layers/millis_sip/arch/${Architecture}"}
    for arch in template["Parameters"]["Architecture"]["AllowedValues"]:
        makefile = (ROOT / "layers" / "millis_sip" / "arch" / arch / "Makefile").read_text()
        assert f"LAMBDA_ARCH := {arch}\n" in makefile and "include " in makefile
    assert re.search(r"^build-MillisSipLayer:", (ROOT / "layers/millis_sip/Makefile").read_text(), flags=re.MULTILINE)
    assert function_globals["Tracing"] == {"Fn::If": ["TracingActive", "Active", "PassThrough"]}
    assert function_globals["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == {
        "Fn::If": ["TracingActive", "false", "true"]
    }


def test_outputs_a_user_needs() -> None:
    outputs = load_template()["Outputs"]
    assert {"ApiUrl", "ApiKeyId", "MillisApiKeySecretArn", "CallsTableName", "ApiFunctionArn"} <= set(outputs)
    assert {"SipMediaAppFunctionArn", "SipMediaApplicationId", "VoiceConnectorUsWestArn"} <= set(outputs)
    assert {"TwilioVoiceUrl", "RouteUrl", "NumbersTableName", "WebhookUrl"} <= set(outputs)


def declared_variables(function_id: str | None = None) -> set[str]:
    template = load_template()
    names = set(template["Globals"]["Function"]["Environment"]["Variables"])
    functions = (
        [function_id]
        if function_id
        else [k for k, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]
    )
    for name in functions:
        names |= set(resource(name)["Properties"].get("Environment", {}).get("Variables", {}))
    return names


def test_every_function_variable_is_documented_in_the_operations_guide() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    variables = declared_variables()
    variables |= {"MILLIS_CONNECT_TIMEOUT", "MILLIS_READ_TIMEOUT", "MILLIS_HTTP_DEADLINE", "MILLIS_API_KEY_MAX_AGE"}
    missing = {name for name in variables if f"`{name}`" not in guide}
    assert not missing


def table_rows(heading: str) -> str:
    """The text of a section of docs/operations.md, from its heading to the next."""
    guide = (ROOT / "docs" / "operations.md").read_text()
    return guide.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_every_parameter_and_output_has_a_row_in_the_operations_guide() -> None:
    template = load_template()
    parameters, outputs = table_rows("Parameters"), table_rows("Outputs")
    assert not {name for name in template["Parameters"] if f"`{name}`" not in parameters}
    assert not {name for name in template["Outputs"] if f"`{name}`" not in outputs}


def test_the_default_agent_has_an_hourly_cap_for_all_numbers_together() -> None:
    template = load_template()
    parameter = template["Parameters"]["DefaultAgentCallsPerHourTotal"]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"], parameter["MaxValue"]) == (
        "Number",
        0,
        0,
        1000000,
    )
    assert "all numbers together" in parameter["Description"]
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["DEFAULT_AGENT_CALLS_PER_HOUR_TOTAL"] == {"Ref": "DefaultAgentCallsPerHourTotal"}
    assert variables["DEFAULT_AGENT_CALLS_PER_HOUR"] == {"Ref": "DefaultAgentCallsPerHour"}
    for function_id in all_functions():  # every function gets the Globals' value
        env = resource(function_id)["Properties"].get("Environment", {}).get("Variables", {})
        assert "DEFAULT_AGENT_CALLS_PER_HOUR_TOTAL" not in env, function_id


def test_sam_local_env_file_sets_only_declared_variables() -> None:
    # SAM CLI overrides only the variables the template declares; anything else would be silently ignored.
    env_file = json.loads((EVENTS / "env.json").read_text())
    for section, values in env_file.items():
        declared = declared_variables(None if section == "Parameters" else section)
        assert set(values) <= declared, section


def test_sip_media_app_function_has_only_the_table_and_secret_actions_it_uses() -> None:
    granted = {action for s in statements("SipMediaAppFunction") for action in s["Action"]}
    assert granted == {
        "dynamodb:PutItem",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "secretsmanager:GetSecretValue",
        "kms:Decrypt",  # only with SecretsKmsKeyArn, only through Secrets Manager
    }
    for statement in statements("SipMediaAppFunction"):
        assert "*" not in json.dumps(statement["Resource"])


SMA_IN_THIS_REGION = {"Fn::Sub": "arn:${AWS::Partition}:chime:${AWS::Region}:${AWS::AccountId}:sma/*"}
VC_IN_THIS_REGION = {"Fn::Sub": "arn:${AWS::Partition}:chime:${AWS::Region}:${AWS::AccountId}:vc/*"}


def test_only_chime_may_invoke_the_sip_media_app_function_and_only_from_this_account() -> None:
    permission = resource("SipMediaAppPermission")
    assert permission["Condition"] == "UseChime"
    props = permission["Properties"]
    assert props["Principal"] == "voiceconnector.chime.amazonaws.com"
    assert props["SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert props["Action"] == "lambda:InvokeFunction"
    assert props["FunctionName"] == {"Ref": "SipMediaAppFunction.Alias"}  # what Chime invokes


def test_only_the_sip_media_application_may_invoke_the_sip_media_app_function() -> None:
    # Your SIP media application's ARN in ChimeMode existing; otherwise (create: its id does not exist yet when
    # the permission must) a SIP media application of this account in this region, never another kind of caller.
    template = load_template()
    assert resource("SipMediaAppPermission")["Properties"]["SourceArn"] == {
        "Fn::If": ["HasSipMediaApplicationArn", {"Ref": "SipMediaApplicationArn"}, SMA_IN_THIS_REGION]
    }
    assert template["Conditions"]["HasSipMediaApplicationArn"] == {
        "Fn::And": [
            {"Fn::Condition": "ExistingChime"},
            {"Fn::Not": [{"Fn::Equals": [{"Ref": "SipMediaApplicationArn"}, ""]}]},
        ]
    }
    parameter = template["Parameters"]["SipMediaApplicationArn"]
    assert parameter["Default"] == ""
    assert re.fullmatch(parameter["AllowedPattern"], "arn:aws:chime:us-east-1:123456789012:sma/0a1b2c3d-4e5f-6789")
    assert not re.fullmatch(parameter["AllowedPattern"], "arn:aws:chime:us-east-1:123456789012:vc/abc")
    # The stack's own application comes from the nested stack, and the permission exists before it.
    assert resource("SipMediaApplicationStack")["DependsOn"] == "SipMediaAppPermission"
    nested = load_template(ROOT / "templates" / "sip-media-application.yaml")["Outputs"]
    assert nested["SipMediaApplicationArn"]["Value"] == {
        "Fn::GetAtt": ["SipMediaApplication", "SipMediaApplicationArn"]
    }


# Conditions under which Chime is in use (UseChime, or one implying it).
CHIME_CONDITIONS = {"UseChime", "CreateChime", "ExistingChime", "CreateUsWestConnector", "CreateEuWestConnector"}


def test_the_phone_call_function_exists_only_when_chime_is_in_use() -> None:
    # It reads the Millis key and the stack's keys: with ChimeMode none nothing may invoke it, so it is not there.
    template = load_template()
    assert resource("SipMediaAppFunction")["Condition"] == "UseChime"
    assert template["Conditions"]["UseChime"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ChimeMode"}, "none"]}]}
    for section in ("Resources", "Outputs"):
        for name, body in template[section].items():
            if name != "SipMediaAppFunction" and "SipMediaAppFunction" in json.dumps(without_chime_choices(body)):
                assert body.get("Condition") in CHIME_CONDITIONS, (section, name)
    assert {"SipMediaAppFunctionLogGroup", "SipMediaAppPermission", "SipMediaApplicationStack"} <= {
        name for name, body in template["Resources"].items() if "SipMediaAppFunction" in json.dumps(body)
    }
    assert template["Outputs"]["SipMediaAppFunctionArn"]["Condition"] == "UseChime"


def without_chime_choices(node: Any) -> Any:
    """``node`` with each ``Fn::If`` on UseChime left out (the dashboard names the function only with Chime)."""
    if isinstance(node, dict):
        if "Fn::If" in node and node["Fn::If"][0] == "UseChime":
            return None
        return {k: without_chime_choices(v) for k, v in node.items()}
    if isinstance(node, list):
        return [without_chime_choices(v) for v in node]
    return node


SECRET_READING_FUNCTIONS = {"ApiFunction", "SipMediaAppFunction", "InboundFunction"}


def test_a_customer_managed_secrets_key_is_decryptable_only_through_secrets_manager() -> None:
    template = load_template()
    parameter = template["Parameters"]["SecretsKmsKeyArn"]
    assert parameter["Default"] == ""
    key = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert re.fullmatch(parameter["AllowedPattern"], key)
    assert not re.fullmatch(parameter["AllowedPattern"], "arn:aws:kms:us-west-2:123456789012:alias/mine")
    assert template["Conditions"]["HasSecretsKmsKey"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "SecretsKmsKeyArn"}, ""]}]
    }
    decrypting = set()
    for function_id in all_functions():
        for policy in resource(function_id)["Properties"].get("Policies", []):
            for statement in policy["Statement"]:
                if "kms:Decrypt" not in json.dumps(statement):
                    continue
                condition, granted, otherwise = statement["Fn::If"]  # granted only when the parameter is set
                assert (condition, otherwise) == ("HasSecretsKmsKey", {"Ref": "AWS::NoValue"})
                assert granted["Action"] == ["kms:Decrypt"]
                assert granted["Resource"] == {"Ref": "SecretsKmsKeyArn"}
                assert granted["Condition"] == {
                    "StringEquals": {"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}
                }
                decrypting.add(function_id)
    readers = {f for f in all_functions() if any("secretsmanager:GetSecretValue" in s["Action"] for s in statements(f))}
    assert decrypting == readers == SECRET_READING_FUNCTIONS


def test_the_functions_a_phone_call_waits_on_can_have_reserved_concurrency() -> None:
    template = load_template()
    parameter = template["Parameters"]["PhoneReservedConcurrency"]
    # 0 would throttle every phone call: the default reserves nothing (the property is left out).
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", -1, -1)
    assert "0 throttles every phone call" in parameter["Description"]
    assert template["Conditions"]["HasPhoneReservedConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "PhoneReservedConcurrency"}, "-1"]}]
    }
    reserved = {
        f: resource(f)["Properties"]["ReservedConcurrentExecutions"]
        for f in all_functions()
        if "ReservedConcurrentExecutions" in resource(f)["Properties"]
    }
    expected = {"Fn::If": ["HasPhoneReservedConcurrency", {"Ref": "PhoneReservedConcurrency"}, {"Ref": "AWS::NoValue"}]}
    assert reserved == {"SipMediaAppFunction": expected, "InboundFunction": expected}


def test_snapstart_is_a_parameter_on_published_versions() -> None:
    template = load_template()
    function_globals = template["Globals"]["Function"]
    assert function_globals["AutoPublishAlias"] == "live"
    assert function_globals["SnapStart"] == {"ApplyOn": {"Ref": "SnapStart"}}
    assert template["Parameters"]["SnapStart"]["AllowedValues"] == ["None", "PublishedVersions"]
    assert resource("SipMediaApplicationStack")["Properties"]["Parameters"]["LambdaArn"] == {
        "Ref": "SipMediaAppFunction.Alias"
    }


def test_the_custom_resource_function_exists_only_to_create_chime_resources() -> None:
    function = resource("ChimeResourcesFunction")
    assert function["Condition"] == "CreateChime"
    # Each action on the resource type the Service Authorization Reference for Amazon Chime gives it, in this
    # account and region; only DeleteSipRule, which has no resource type, on "*".
    granted = {action: s["Resource"] for s in statements("ChimeResourcesFunction") for action in s["Action"]}
    assert granted == {
        "chime:PutVoiceConnectorOrigination": VC_IN_THIS_REGION,
        "chime:DeleteVoiceConnectorOrigination": VC_IN_THIS_REGION,
        "chime:CreateSipRule": SMA_IN_THIS_REGION,
        "chime:UpdateSipRule": SMA_IN_THIS_REGION,
        "chime:DeleteSipRule": "*",
    }
    for logical_id in ("VoiceConnectorUsWestStack", "VoiceConnectorEuWestStack", "SipMediaApplicationStack"):
        stack = resource(logical_id)
        assert stack["Type"] == "AWS::Serverless::Application"
        assert stack["Condition"] in {"CreateChime", "CreateUsWestConnector", "CreateEuWestConnector"}


def test_the_code_handles_the_custom_resource_types_the_templates_use() -> None:
    import chime_resources  # noqa: F401 - the module names the types it serves in its docstring

    used = set()
    for path in NESTED:
        used |= {
            r["Type"] for r in load_template(ROOT / path)["Resources"].values() if r["Type"].startswith("Custom::")
        }
    assert used == {"Custom::VoiceConnectorOrigination", "Custom::SipRule"}
    source = (ROOT / "functions" / "chime_resources" / "chime_resources.py").read_text()
    assert all(f'"{kind}"' in source for kind in used)


def test_events_route_to_the_template_routes() -> None:
    for prefix, function_id in (("api", "ApiFunction"), ("inbound", "InboundFunction")):
        routes = set(api_routes(function_id))
        for path in EVENTS.glob(f"{prefix}-*.json"):
            event = json.loads(path.read_text())
            assert (event["httpMethod"], event["resource"]) in routes, path.name


def test_the_sample_twilio_event_is_signed_for_the_local_token() -> None:
    # `sam local invoke InboundFunction -e events/inbound-twilio-voice.json --env-vars events/env.json` must
    # pass the signature check: Twilio's own validator agrees with the event and the env file's token.
    from urllib.parse import parse_qsl

    from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

    event = json.loads((EVENTS / "inbound-twilio-voice.json").read_text())
    token = json.loads((EVENTS / "env.json").read_text())["InboundFunction"]["TWILIO_AUTH_TOKEN"]
    url = f"https://{event['requestContext']['domainName']}{event['requestContext']['path']}"
    params = dict(parse_qsl(event["body"]))
    assert RequestValidator(token).validate(url, params, event["headers"]["X-Twilio-Signature"])


@pytest.mark.parametrize("doc", ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("docs/*.md"))])
def test_make_commands_in_the_docs_exist_in_the_makefile(doc: str) -> None:
    text = (ROOT / doc).read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"(?:^\s*|`)(?:[A-Z_]+=\S+ )*make ([a-z-]+)", text, flags=re.MULTILINE)):
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), (doc, target)


# --- the security model, asserted over every function the template defines --------------------------------


def all_functions() -> list[str]:
    return [k for k, r in load_template()["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]


# AWS requires "*" here: chime:DeleteSipRule has no resource type in the Service Authorization Reference.
WILDCARD_RESOURCE_ALLOWED = {"ChimeResourcesFunction": {"ChimeSipRuleDelete"}}
# The Chime resources the nested stacks create, which the custom resource function cannot name without a cycle.
SCOPED_WILDCARDS_ALLOWED = {
    "ChimeResourcesFunction": [VC_IN_THIS_REGION, SMA_IN_THIS_REGION],
    # dynamodb:ListStreams names no stream: the calls table's streams (as SAM's DynamoDBStreamReadPolicy).
    "EventsFunction": [{"Fn::Sub": "${CallsTable.Arn}/stream/*"}],
}
SECRET_READERS = {
    "MillisApiKeySecret": {"ApiFunction", "SipMediaAppFunction", "InboundFunction"},
    # Opens only Millis' reports of calls registered before per-call webhook credentials: the phone functions never
    # need it.
    "WebhookSecret": {"ApiFunction"},
    "KeysSecret": {"ApiFunction", "SipMediaAppFunction", "InboundFunction"},
    # ApiFunction places outbound calls with the same account credentials (docs/outbound.md).
    "TwilioAuthTokenSecretArn": {"InboundFunction", "ApiFunction"},
    "TelnyxPublicKeySecretArn": {"InboundFunction"},
    "TelnyxApiKeySecretArn": {"ApiFunction"},  # outbound calls only
    "VonageSignatureSecretArn": {"InboundFunction"},
    "VonagePrivateKeySecretArn": {"ApiFunction"},  # outbound calls only
    "SignalWireApiTokenSecretArn": {"ApiFunction"},  # outbound calls only
    "PlivoAuthTokenSecretArn": {"InboundFunction", "ApiFunction"},
}


def test_no_wildcard_actions_and_no_wildcard_resources_but_where_aws_requires_them() -> None:
    for function_id in all_functions():
        properties = resource(function_id)["Properties"]
        assert all(isinstance(p, dict) for p in properties.get("Policies", [])), "no managed policies"
        for statement in statements(function_id):
            assert statement["Effect"] == "Allow"
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert all("*" not in action for action in actions), (function_id, actions)
            if statement["Resource"] == "*":
                assert statement["Sid"] in WILDCARD_RESOURCE_ALLOWED.get(function_id, set()), function_id
            elif statement["Resource"] not in SCOPED_WILDCARDS_ALLOWED.get(function_id, []):
                assert "*" not in json.dumps(statement["Resource"]), (function_id, statement["Resource"])


def test_each_function_gets_only_the_table_actions_it_uses() -> None:
    used = {
        "ApiFunction": {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"},
        "SipMediaAppFunction": {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"},
        "InboundFunction": {
            "dynamodb:PutItem",
            "dynamodb:GetItem",
            "dynamodb:UpdateItem",
            "dynamodb:Query",
            "dynamodb:DeleteItem",  # SIP servers' markers only (test_only_sip_server_markers_can_be_deleted...)
        },
        "ChimeResourcesFunction": set(),
        # Its stream only (call events).
        "EventsFunction": {
            "dynamodb:DescribeStream",
            "dynamodb:GetRecords",
            "dynamodb:GetShardIterator",
            "dynamodb:ListStreams",
        },
    }
    for function_id in all_functions():
        on_calls = {
            action
            for s in statements(function_id)
            for action in s["Action"]
            if "CallsTable" in json.dumps(s["Resource"])
        }
        assert on_calls == used[function_id], function_id


def test_secrets_are_readable_only_by_the_functions_that_need_them() -> None:
    readers: dict[str, set[str]] = {name: set() for name in SECRET_READERS}
    for function_id in all_functions():
        for statement in statements(function_id):
            if "secretsmanager:GetSecretValue" in statement["Action"]:
                for name in SECRET_READERS:
                    if name in json.dumps(statement["Resource"]):
                        readers[name].add(function_id)
    assert readers == SECRET_READERS
    for function_id in all_functions():
        env = resource(function_id)["Properties"].get("Environment", {}).get("Variables", {})
        assert "MILLIS_API_KEY" not in env, "the key never travels in an environment variable in AWS"
    assert load_template()["Globals"]["Function"]["Environment"]["Variables"]["MILLIS_API_KEY"] == ""


def test_the_keys_secret_is_generated_by_the_stack_and_only_its_arn_travels() -> None:
    template = load_template()
    keys, webhook = resource("KeysSecret"), resource("WebhookSecret")
    assert keys["Type"] == "AWS::SecretsManager::Secret"
    assert "SecretString" not in keys["Properties"]  # generated, never written into the template
    assert keys["Properties"]["GenerateSecretString"] == webhook["Properties"]["GenerateSecretString"]
    description = json.dumps(keys["Properties"]["Description"])
    for use in ("lookup index", "hourly counters", "PINs", "action tokens", "never sent anywhere"):
        assert use in description, use
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["KEYS_SECRET_ARN"] == {"Ref": "KeysSecret"}
    assert variables["KEYS_SECRET"] == ""  # declared for `sam local --env-vars`, empty in AWS
    assert "KEYS_SECRET" in json.loads((EVENTS / "env.json").read_text())["Parameters"]
    assert template["Outputs"]["KeysSecretArn"]["Value"] == {"Ref": "KeysSecret"}
    for function_id in all_functions():
        env = resource(function_id)["Properties"].get("Environment", {}).get("Variables", {})
        assert "KEYS_SECRET_ARN" not in env and "KEYS_SECRET" not in env, function_id


def test_the_phone_functions_neither_read_nor_name_the_webhook_secret() -> None:
    # They never open a Millis report; an empty WEBHOOK_SECRET_ARN overrides the Globals' ARN.
    for function_id in ("SipMediaAppFunction", "InboundFunction"):
        assert resource(function_id)["Properties"]["Environment"]["Variables"]["WEBHOOK_SECRET_ARN"] == ""
        assert not [s for s in statements(function_id) if "WebhookSecret" in json.dumps(s)], function_id
        assert "ReadKeysSecret" in {s.get("Sid") for s in statements(function_id)}
    api = resource("ApiFunction")["Properties"]["Environment"]["Variables"]
    assert "WEBHOOK_SECRET_ARN" not in api  # the Globals' ARN: it still opens reports of older calls
    [reading] = [s for s in statements("ApiFunction") if s.get("Sid") == "ReadWebhookSecret"]
    assert reading["Resource"] == {"Ref": "WebhookSecret"}


def test_no_output_or_parameter_carries_a_secret() -> None:
    template = load_template()
    for name, output in template["Outputs"].items():
        text = json.dumps(output["Value"])
        assert "SecretString" not in text and "resolve:secretsmanager" not in text, name
    for name in template["Parameters"]:
        # A parameter named like a key or secret would invite pasting the value; only ARNs are taken.
        assert not any(word in name.lower() for word in ("key", "secret")) or name.endswith("Arn"), name


def test_samconfig_grants_the_capabilities_the_template_needs() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    capabilities = set(config["default"]["deploy"]["parameters"]["capabilities"].split())
    types = {r["Type"] for r in load_template()["Resources"].values()}
    assert "CAPABILITY_IAM" in capabilities  # the functions' roles
    if "AWS::Serverless::Application" in types:
        assert "CAPABILITY_AUTO_EXPAND" in capabilities


def test_api_function_places_chime_calls_only_through_the_stacks_sip_media_application() -> None:
    [statement] = [s for s in statements("ApiFunction") if "chime:CreateSipMediaApplicationCall" in s["Action"]]
    _, created, existing = statement["Resource"]["Fn::If"]
    assert created["Fn::Sub"].endswith(":sma/${SipMediaApplicationStack.Outputs.SipMediaApplicationId}")
    assert existing == {"Ref": "SipMediaApplicationArn"}
    [condition] = [
        p
        for p in resource("ApiFunction")["Properties"]["Policies"][0]["Statement"]
        if "Fn::If" in p and p["Fn::If"][1] is statement
    ]
    assert condition["Fn::If"][0] == "ChimeOutbound"


# --- call events (docs/events.md) ---------------------------------------------------------------------------


def test_the_calls_table_streams_both_images_to_the_events_function_and_nothing_else_reads_it() -> None:
    assert resource("CallsTable")["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    readers = {
        function_id
        for function_id in all_functions()
        for s in statements(function_id)
        if "dynamodb:GetRecords" in s["Action"]
    }
    assert readers == {"EventsFunction"}


def test_the_events_function_may_put_on_its_bus_read_its_stream_and_write_its_dead_letter_queue_only() -> None:
    granted = {action: s["Resource"] for s in statements("EventsFunction") for action in s["Action"]}
    stream = {"Fn::GetAtt": ["CallsTable", "StreamArn"]}
    assert granted == {
        "events:PutEvents": {
            "Fn::If": [
                "CreateEventBus",
                {"Fn::GetAtt": ["CallEventBus", "Arn"]},
                {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}"},
            ]
        },
        "dynamodb:DescribeStream": stream,
        "dynamodb:GetRecords": stream,
        "dynamodb:GetShardIterator": stream,
        "dynamodb:ListStreams": {"Fn::Sub": "${CallsTable.Arn}/stream/*"},
        "sqs:SendMessage": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]},
    }
    function = resource("EventsFunction")["Properties"]
    assert (function["CodeUri"], function["Handler"]) == ("functions/events", "events_handler.lambda_handler")
    assert function["Environment"]["Variables"] == {
        "EVENT_BUS_NAME": {"Fn::If": ["CreateEventBus", {"Ref": "CallEventBus"}, {"Ref": "EventBusName"}]},
        "EVENTS_PHONE_NUMBERS": {"Ref": "EventsPhoneNumbers"},
    }
    assert resource("CallEventBus")["Condition"] == "CreateEventBus"
    assert load_template()["Parameters"]["EventsPhoneNumbers"]["Default"] == "masked"


def test_the_stream_mapping_batches_retries_isolates_and_dead_letters() -> None:
    entry = (ROOT / "functions" / "events" / "events_handler.py").read_text()
    assert "def lambda_handler(" in entry and '"batchItemFailures"' in entry
    mapping = resource("EventsStreamMapping")["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["CallsTable", "StreamArn"]}
    assert mapping["FunctionName"] == {"Ref": "EventsFunction.Alias"}  # the published version, as the others
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert 0 < mapping["MaximumRetryAttempts"] <= 20 and 60 <= mapping["MaximumRecordAgeInSeconds"] <= 86400
    assert mapping["BatchSize"] <= 1000 and mapping["MaximumBatchingWindowInSeconds"] <= 5
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}
    assert resource("EventsStreamMapping")["DependsOn"] == "EventsFunctionRole"


def test_the_stream_filter_passes_calls_and_drops_markers_counters_and_removals() -> None:
    from millis_sip.adapters.dynamodb.codec import COUNTER_KIND, MARKER_KIND

    [only] = resource("EventsStreamMapping")["Properties"]["FilterCriteria"]["Filters"]
    pattern = json.loads(only["Pattern"])
    assert pattern == {
        "eventName": ["INSERT", "MODIFY"],
        "dynamodb": {"NewImage": {"kind": {"S": [{"exists": False}]}}},
    }

    from dev.stream_events import matches

    def passes(name: str, image: dict[str, Any] | None) -> bool:  # as Lambda's event filtering reads the pattern
        record: dict[str, Any] = {"eventName": name, "dynamodb": {"Keys": {"call_id": {"S": "c1"}}}}
        if image is not None:
            record["dynamodb"]["NewImage"] = image
        return matches(pattern, record)

    call = {"call_id": {"S": "c1"}, "status": {"S": "registered"}}
    assert passes("INSERT", call) and passes("MODIFY", call)
    for kind in (MARKER_KIND, COUNTER_KIND):
        assert not passes("INSERT", {**call, "kind": {"S": kind}})
    assert not passes("REMOVE", None)


def test_the_webhook_is_an_api_destination_with_your_credential_retries_and_a_dead_letter_queue() -> None:
    template = load_template()
    webhook = {name for name, body in template["Resources"].items() if body.get("Condition") == "HasEventsWebhook"}
    assert webhook >= {
        "EventsWebhookConnection",
        "EventsWebhookDestination",
        "EventsWebhookRole",
        "EventsWebhookRule",
        "EventsWebhookDeadLetterQueue",
        "EventsWebhookDeadLetterQueuePolicy",
    }
    assert template["Conditions"]["HasEventsWebhook"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "EventsWebhookUrl"}, ""]}]
    }
    connection = resource("EventsWebhookConnection")["Properties"]
    assert connection["AuthorizationType"] == "API_KEY"
    auth = connection["AuthParameters"]["ApiKeyAuthParameters"]
    assert auth["ApiKeyName"] == {"Ref": "EventsWebhookAuthHeader"}
    # A dynamic reference: the credential is read at deploy time and never written into the template.
    assert auth["ApiKeyValue"] == {"Fn::Sub": "{{resolve:secretsmanager:${EventsWebhookAuthSecretArn}}}"}
    [rule] = [r for r in template["Rules"].values() if "EventsWebhookAuthSecretArn" in json.dumps(r)]
    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "EventsWebhookUrl"}, ""]}]}
    destination = resource("EventsWebhookDestination")["Properties"]
    assert destination["InvocationEndpoint"] == {"Ref": "EventsWebhookUrl"} and destination["HttpMethod"] == "POST"
    events_rule = resource("EventsWebhookRule")["Properties"]
    from millis_sip.edges.events.changes import SOURCE

    assert events_rule["EventPattern"] == {"source": [SOURCE]}
    [target] = events_rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["EventsWebhookDestination", "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["EventsWebhookDeadLetterQueue", "Arn"]}
    role = resource("EventsWebhookRole")["Properties"]
    [policy] = role["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Action": ["events:InvokeApiDestination"],
            "Resource": {"Fn::GetAtt": ["EventsWebhookDestination", "Arn"]},
        }
    ]
    [sending] = resource("EventsWebhookDeadLetterQueuePolicy")["Properties"]["PolicyDocument"]["Statement"]
    assert sending["Principal"] == {"Service": "events.amazonaws.com"} and sending["Action"] == "sqs:SendMessage"
    assert sending["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["EventsWebhookRule", "Arn"]}}}


# --- dashboard and alarms ------------------------------------------------------------------------------------


def emitted_metrics(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> set[tuple[str, frozenset[str]]]:
    """(metric, dimensions) of every line the code's metric writers produce: each EmfMetrics method and each
    module-level count_* of millis_sip.observability, called with placeholder arguments."""
    import inspect

    from millis_sip import observability

    monkeypatch.setattr(observability, "_metrics_enabled", True)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "millis-sip-bridge")
    writers = [getattr(observability.emf_metrics, n) for n in dir(observability.EmfMetrics) if not n.startswith("_")]
    writers += [f for n, f in vars(observability).items() if n.startswith("count_") and callable(f)]
    for writer in writers:
        args = {
            name: (True if p.annotation in ("bool", bool) else 1.0 if p.annotation in ("float", float) else "x")
            for name, p in inspect.signature(writer).parameters.items()
        }
        writer(**args)
    found = set()
    for line in capsys.readouterr().out.splitlines():
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "MillisSipBridge"
            for metric in directive["Metrics"]:
                for dimensions in directive["Dimensions"]:
                    found.add((metric["Name"], frozenset(dimensions)))
    return found


# AWS's own metrics the dashboard and alarms read, with the dimensions they are published under.
AWS_METRICS = {
    ("AWS/Lambda", "Errors"): {"FunctionName"},
    ("AWS/Lambda", "Throttles"): {"FunctionName"},
    ("AWS/Lambda", "Duration"): {"FunctionName"},
    ("AWS/Lambda", "ConcurrentExecutions"): {"FunctionName"},
    ("AWS/Lambda", "IteratorAge"): {"FunctionName"},
    ("AWS/ApiGateway", "5XXError"): {"ApiName", "Stage"},
    ("AWS/ApiGateway", "4XXError"): {"ApiName", "Stage"},
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): {"QueueName"},
    ("AWS/DynamoDB", "ThrottledRequests"): {"TableName", "Operation"},
}
SEARCH = re.compile(r"SEARCH\('\{([^}]*)\} MetricName=\"(\w+)\"")


def dashboard_metrics() -> list[tuple[str, str, frozenset[str]]]:
    body, _ = resource("Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"]
    found = []
    for widget in json.loads(body)["widgets"]:
        for line in widget["properties"]["metrics"]:
            if isinstance(line[0], dict):
                [(schema, name)] = SEARCH.findall(line[0]["expression"])
                namespace, *dimensions = schema.split(",")
                found.append((namespace, name, frozenset(dimensions)))
            else:
                namespace, name, *rest = [part for part in line if not isinstance(part, dict)]
                found.append((namespace, name, frozenset(rest[0::2])))
    return found


def alarm_metrics() -> list[tuple[str, str, str, frozenset[str], dict[str, Any]]]:
    found = []
    for name, body in load_template()["Resources"].items():
        if body["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = body["Properties"]
        if "Metrics" in props:
            for query in props["Metrics"]:
                if "MetricStat" in query:
                    metric = query["MetricStat"]["Metric"]
                    dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
                    found.append((name, metric["Namespace"], metric["MetricName"], frozenset(dims), dims))
        else:
            dims = {d["Name"]: d["Value"] for d in props["Dimensions"]}
            found.append((name, props["Namespace"], props["MetricName"], frozenset(dims), dims))
    return found


def test_every_metric_the_dashboard_and_the_alarms_read_is_one_that_is_written(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = emitted_metrics(monkeypatch, capsys)
    assert {"InboundCalls", "CallFailures", "MillisLatency", "SignatureFailures", "CallEvents"} <= {m for m, _ in ours}
    namespace = load_template()["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    read = [(ns, name, dims) for ns, name, dims in dashboard_metrics()]
    read += [(ns, name, dims) for _, ns, name, dims, _ in alarm_metrics()]
    for ns, name, dims in read:
        if ns == namespace:
            assert (name, dims) in ours, (name, sorted(dims))
        else:
            assert AWS_METRICS.get((ns, name)) == set(dims), (ns, name, sorted(dims))
    shown = {name for _, name, _ in dashboard_metrics()}
    assert {"InboundCalls", "CallEvents", "CallFailures", "MillisLatency", "Failovers", "SignatureFailures"} <= shown
    assert {"Throttles", "Errors", "Duration", "ConcurrentExecutions"} <= shown


def test_the_dashboard_shows_millis_latency_p50_and_p99_per_region() -> None:
    body, variables = resource("Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"]
    expressions = [
        line[0]["expression"]
        for w in json.loads(body)["widgets"]
        for line in w["properties"]["metrics"]
        if isinstance(line[0], dict)
    ]
    for stat in ("p50", "p99"):
        assert any('MetricName="MillisLatency"' in e and f"'{stat}'" in e for e in expressions), stat
    assert variables == {"SmaFunction": {"Fn::If": ["UseChime", {"Ref": "SipMediaAppFunction"}, "none"]}}


def test_the_millis_failures_alarm_counts_codes_the_code_has() -> None:
    from millis_sip.core import errors

    codes = {getattr(c, "code", None) for c in vars(errors).values() if isinstance(c, type)}
    counted = [dims for alarm, _, _, _, dims in alarm_metrics() if alarm == "MillisFailuresAlarm"]
    values = {str(dims.get("ErrorKind") or dims.get("Reason")) for dims in counted}
    assert values and values <= codes and all(v.startswith("millis_") for v in values)
    assert {"millis_unavailable", "millis_key_rejected"} <= values


def test_each_phone_system_has_an_alarm_at_its_deadline_on_the_function_that_answers_it() -> None:
    from millis_sip.patience import PATIENCE

    alarms = {
        name: body for name, body in load_template()["Resources"].items() if name.endswith("AnswerNearDeadlineAlarm")
    }
    assert len(alarms) == len(PATIENCE)
    thresholds = {}
    for name, body in alarms.items():
        props = body["Properties"]
        assert (props["Namespace"], props["MetricName"], props["ExtendedStatistic"]) == (
            "AWS/Lambda",
            "Duration",
            "p99",
        )
        [dimension] = props["Dimensions"]
        function = dimension["Value"]["Ref"]
        assert function == ("SipMediaAppFunction" if name.startswith("Chime") else "InboundFunction"), name
        if function == "SipMediaAppFunction":
            assert body["Condition"] == "UseChime"
        thresholds[name.removesuffix("AnswerNearDeadlineAlarm").lower()] = props["Threshold"]
    names = {"sipserver": "sip"}
    assert {names.get(k, k): v for k, v in thresholds.items()} == {
        carrier: int(patience.answer_within * 1000) for carrier, patience in PATIENCE.items()
    }


def test_alarms_notify_the_topic_only_when_one_is_given() -> None:
    template = load_template()
    assert template["Conditions"]["HasAlarmTopic"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""
    alarms = [b for b in template["Resources"].values() if b["Type"] == "AWS::CloudWatch::Alarm"]
    assert len(alarms) >= 12
    notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    for alarm in alarms:
        props = alarm["Properties"]
        assert props["AlarmActions"] == notify == props["OKActions"]
        assert props["TreatMissingData"] == "notBreaching"
        assert "InsufficientDataActions" not in props
    kinds = {a["Properties"].get("MetricName") for a in alarms}
    assert {"5XXError", "Throttles", "Duration", "ApproximateNumberOfMessagesVisible"} <= kinds
    dead_letters = {
        json.dumps(a["Properties"]["Dimensions"])
        for a in alarms
        if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
    }
    assert any("EventsDeadLetterQueue" in d for d in dead_letters)


def test_the_api_gateway_metrics_name_the_api_as_sam_names_it() -> None:
    # SAM names a REST API without Name or DefinitionBody after the stack (its generated OpenAPI title), which is
    # the ApiName dimension API Gateway publishes under; the dashboard and ApiServerErrorsAlarm read that.
    api = resource("MillisApi")["Properties"]
    assert not {"Name", "DefinitionBody", "DefinitionUri"} & set(api)
    assert api["StageName"] == "v1"
    alarm = {d["Name"]: d["Value"] for d in resource("ApiServerErrorsAlarm")["Properties"]["Dimensions"]}
    assert alarm == {"ApiName": {"Ref": "AWS::StackName"}, "Stage": "v1"}
    body, _ = resource("Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"]
    assert '"ApiName","${AWS::StackName}","Stage","v1"' in body

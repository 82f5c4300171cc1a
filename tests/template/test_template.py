"""template.yaml: lint-clean, and the properties the product promises (storage, auth, least privilege)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dev.template import load_template, resource
from tests.conftest import EVENTS, ROOT

pytestmark = pytest.mark.template
BIN = Path(sys.executable).parent
TOOL_ENV = {**os.environ, "SAM_CLI_TELEMETRY": "0", "SAM_CLI_DISABLE_CHECK_UPDATE": "1"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=TOOL_ENV, timeout=300, check=False)


def test_cfn_lint_is_clean_with_no_warnings() -> None:
    result = run(str(BIN / "cfn-lint"), "template.yaml")
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
    [index] = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by-lookup-key"
    assert index["KeySchema"] == [
        {"AttributeName": "lookup_key", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True


def test_the_code_uses_the_index_the_template_defines() -> None:
    from millis_sip.store import LOOKUP_INDEX

    names = [i["IndexName"] for i in resource("CallsTable")["Properties"]["GlobalSecondaryIndexes"]]
    assert LOOKUP_INDEX in names


def test_every_route_requires_an_api_key_and_the_plan_throttles() -> None:
    auth = resource("MillisApi")["Properties"]["Auth"]
    assert auth["ApiKeyRequired"] is True
    assert auth["UsagePlan"]["CreateUsagePlan"] == "PER_API"
    assert set(auth["UsagePlan"]["Throttle"]) == {"RateLimit", "BurstLimit"}
    for event in resource("ApiFunction")["Properties"]["Events"].values():
        assert event["Properties"]["RestApiId"] == {"Ref": "MillisApi"}
        assert event["Properties"].get("Auth", {}).get("ApiKeyRequired", True) is True


def statements(function_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for policy in resource(function_id)["Properties"]["Policies"]:
        assert isinstance(policy, dict) and "Statement" in policy, "only inline, scoped statements"
        found.extend(policy["Statement"])
    return found


def test_api_function_has_only_the_table_and_secret_actions_it_uses() -> None:
    granted = {action for s in statements("ApiFunction") for action in s["Action"]}
    assert granted == {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query", "secretsmanager:GetSecretValue"}
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
    assert layer["Metadata"]["BuildMethod"] == "python3.13"
    assert function_globals["Tracing"] == "Active"


def test_outputs_a_user_needs() -> None:
    assert {"ApiUrl", "ApiKeyId", "MillisApiKeySecretArn", "CallsTableName", "ApiFunctionArn"} <= set(
        load_template()["Outputs"]
    )


def test_every_function_variable_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    variables = set(load_template()["Globals"]["Function"]["Environment"]["Variables"])
    variables |= {"MILLIS_CONNECT_TIMEOUT", "MILLIS_READ_TIMEOUT", "MILLIS_HTTP_DEADLINE", "MILLIS_API_KEY_MAX_AGE"}
    missing = {name for name in variables if f"`{name}`" not in readme}
    assert not missing


def test_sam_local_env_file_sets_only_declared_variables() -> None:
    # SAM CLI overrides only the variables the template declares; anything else would be silently ignored.
    declared = set(load_template()["Globals"]["Function"]["Environment"]["Variables"])
    env_file = json.loads((EVENTS / "env.json").read_text())
    for values in env_file.values():
        assert set(values) <= declared


def test_events_route_to_the_template_routes() -> None:
    from dev.template import api_routes

    routes = set(api_routes())
    for path in EVENTS.glob("api-*.json"):
        event = json.loads(path.read_text())
        assert (event["httpMethod"], event["resource"]) in routes, path.name


def test_readme_commands_exist_in_the_makefile() -> None:
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"^\s*make ([a-z-]+)", readme, flags=re.MULTILINE)):
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), target

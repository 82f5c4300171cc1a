"""Reads template.yaml (with its CloudFormation short-form tags) so local tooling and tests use the
template's own definitions: the table schema, the API routes, the functions' environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from dev.function_env import Tables

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


@cache
def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return loaded


def resource(logical_id: str, path: Path = TEMPLATE) -> dict[str, Any]:
    found: dict[str, Any] = load_template(path)["Resources"][logical_id]
    return found


def condition(name: str, values: Mapping[str, Any] | None = None) -> bool:
    """A condition of the template, evaluated with ``values`` for the parameters they name and the other parameters'
    defaults: whether a stack deployed with them has what the condition guards."""
    parameters = {
        name: {**parameter, "Default": (values or {}).get(name, parameter.get("Default", ""))}
        for name, parameter in load_template()["Parameters"].items()
    }
    return _condition(name, parameters)


def _condition(name: str, parameters: dict[str, Any]) -> bool:
    """A condition of the template, evaluated on the parameters' defaults (Equals, Not, And, Or, Condition; Join of
    a list parameter)."""

    def value(node: Any) -> Any:
        if isinstance(node, dict) and "Ref" in node:
            return str(parameters[node["Ref"]].get("Default", ""))
        if isinstance(node, dict) and "Fn::Join" in node:
            separator, items = node["Fn::Join"]
            if isinstance(items, dict):  # a CommaDelimitedList parameter
                items = value(items).split(",")
            return str(separator).join(str(value(item)) for item in items)
        return str(node)

    def truth(node: Any) -> bool:
        [(function, args)] = node.items()
        if function == "Fn::Equals":
            return bool(value(args[0]) == value(args[1]))
        if function == "Fn::Not":
            return not truth(args[0])
        if function == "Fn::And":
            return all(truth(a) for a in args)
        if function == "Fn::Or":
            return any(truth(a) for a in args)
        if function in ("Condition", "Fn::Condition"):  # !Condition reads as Fn::Condition
            return _condition(args, parameters)
        raise ValueError(f"condition function {function} is not understood")

    return truth(load_template()["Conditions"][name])


def resolved(node: Any) -> Any:
    """``node`` with every Fn::If decided on the parameters' defaults and AWS::NoValue left out: what a stack
    deployed with the defaults holds."""
    parameters = load_template()["Parameters"]
    if isinstance(node, list):
        items = [resolved(item) for item in node]
        return [item for item in items if item is not _NO_VALUE]
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, then, otherwise = node["Fn::If"]
            return resolved(then if _condition(name, parameters) else otherwise)
        if node == {"Ref": "AWS::NoValue"}:
            return _NO_VALUE
        return {key: resolved(value) for key, value in node.items()}
    return node


_NO_VALUE = object()


def table_definition(logical_id: str = "CallsTable", table_name: str | None = None) -> dict[str, Any]:
    """CreateTable arguments for the template's table (what DynamoDB Local needs of it), as deployed with the
    parameters' defaults."""
    props = resolved(resource(logical_id)["Properties"])
    args: dict[str, Any] = {
        "TableName": table_name or logical_id,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if "GlobalSecondaryIndexes" in props:
        args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if "StreamSpecification" in props:  # CloudFormation's spelling; CreateTable also wants it enabled
        args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    return args


def create_table(client: Any, logical_id: str = "CallsTable", table_name: str | None = None) -> str:
    """Create the template's table (and its TTL setting) through ``client``; returns its name."""
    args = table_definition(logical_id, table_name)
    client.create_table(**args)
    client.get_waiter("table_exists").wait(TableName=args["TableName"], WaiterConfig={"Delay": 0.2})
    ttl = resource(logical_id)["Properties"].get("TimeToLiveSpecification")
    if ttl:
        client.update_time_to_live(TableName=args["TableName"], TimeToLiveSpecification=ttl)
    return str(args["TableName"])


def create_tables(endpoint: str, tables: Tables, region: str = "us-west-2") -> Any:
    """The template's tables in a DynamoDB Local at ``endpoint``; returns the client used."""
    import boto3

    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - DynamoDB Local accepts any credentials
    )
    create_table(client, "CallsTable", table_name=tables.calls)
    create_table(client, "IdempotencyTable", table_name=tables.idempotency)
    create_table(client, "NumbersTable", table_name=tables.numbers)
    return client


def api_routes(function_id: str = "ApiFunction") -> list[tuple[str, str]]:
    """(METHOD, path template) for every Api event of the function, e.g. ("GET", "/calls/{call_id}")."""
    events = resource(function_id)["Properties"].get("Events", {})
    return [
        (str(e["Properties"]["Method"]).upper(), str(e["Properties"]["Path"]))
        for e in events.values()
        if e.get("Type") == "Api"
    ]


def api_key_required(api_id: str = "MillisApi") -> bool:
    return bool(resource(api_id)["Properties"].get("Auth", {}).get("ApiKeyRequired", False))


def routes_without_api_key(function_id: str = "ApiFunction") -> set[tuple[str, str]]:
    """The routes whose event sets Auth.ApiKeyRequired false (the Millis webhook)."""
    events = resource(function_id)["Properties"].get("Events", {})
    return {
        (str(e["Properties"]["Method"]).upper(), str(e["Properties"]["Path"]))
        for e in events.values()
        if e.get("Type") == "Api" and e["Properties"].get("Auth", {}).get("ApiKeyRequired") is False
    }


def _parameter_value(value: Any, parameters: Mapping[str, Any] | None) -> float:
    """A number of the template, or the value of the parameter it names (``parameters`` first, else its default)."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        name = value["Ref"]
        if parameters and name in parameters:
            return float(parameters[name])
        return float(load_template()["Parameters"][name]["Default"])
    return float(value)


def method_throttles(
    api_id: str = "MillisApi", *, parameters: Mapping[str, Any] | None = None
) -> dict[tuple[str, str], tuple[float, float]]:
    """(METHOD, path) -> (rate per second, burst) of each MethodSettings throttle of the stage, e.g.
    ("POST", "/webhooks/millis"): API Gateway's per-method limits, shared by every caller of that route."""
    throttles: dict[tuple[str, str], tuple[float, float]] = {}
    for setting in resource(api_id)["Properties"].get("MethodSettings", []):
        if not {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(setting):
            continue
        path = str(setting["ResourcePath"]).replace("~1", "/")[1:]  # "/~1a~1b" is /a/b
        rate = _parameter_value(setting["ThrottlingRateLimit"], parameters)
        burst = _parameter_value(setting["ThrottlingBurstLimit"], parameters)
        throttles[(str(setting["HttpMethod"]).upper(), path)] = (rate, burst)
    return throttles


def usage_plan_throttle(
    api_id: str = "MillisApi", *, parameters: Mapping[str, Any] | None = None
) -> tuple[float, float] | None:
    """(rate per second, burst) the API's usage plan allows each API key, or None when it sets none."""
    throttle = resource(api_id)["Properties"].get("Auth", {}).get("UsagePlan", {}).get("Throttle")
    if not throttle:
        return None
    return _parameter_value(throttle["RateLimit"], parameters), _parameter_value(throttle["BurstLimit"], parameters)


@dataclass(frozen=True, slots=True)
class UsagePlan:
    """What a usage plan allows each of its API keys: ``throttle`` (rate per second, burst) over the requests the key
    sends, or None; ``methods``: (METHOD, path) -> (rate, burst) of the methods the plan throttles on their own."""

    throttle: tuple[float, float] | None
    methods: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)


def _throttle_limits(throttle: Mapping[str, Any], parameters: Mapping[str, Any] | None) -> tuple[float, float]:
    return _parameter_value(throttle["RateLimit"], parameters), _parameter_value(throttle["BurstLimit"], parameters)


def sam_api_key(api_id: str = "MillisApi") -> str | None:
    """The logical id of the API key SAM creates for the API's ``Auth.UsagePlan``, or None when it creates none."""
    plan = resource(api_id)["Properties"].get("Auth", {}).get("UsagePlan", {}).get("CreateUsagePlan", "NONE")
    return {"PER_API": f"{api_id}ApiKey", "SHARED": "ServerlessApiKey"}.get(str(plan))


def api_keys(api_id: str = "MillisApi", *, parameters: Mapping[str, Any] | None = None) -> dict[str, UsagePlan]:
    """Every API key of the template that opens the API's stage, by logical id, with what its usage plan allows it:
    the key SAM creates for ``Auth.UsagePlan``, and each key an AWS::ApiGateway::UsagePlanKey puts into a usage plan
    of the API (its ``ApiStages``, with their per-method throttles, e.g. "/route/GET")."""
    keys: dict[str, UsagePlan] = {}
    sam_key = sam_api_key(api_id)
    if sam_key is not None:
        keys[sam_key] = UsagePlan(usage_plan_throttle(api_id, parameters=parameters))
    resources = load_template()["Resources"]
    plans: dict[str, UsagePlan] = {}
    for plan_id, plan in resources.items():
        if plan["Type"] != "AWS::ApiGateway::UsagePlan":
            continue
        methods: dict[tuple[str, str], tuple[float, float]] = {}
        stages = [s for s in plan["Properties"].get("ApiStages", []) if s.get("ApiId") == {"Ref": api_id}]
        for stage in stages:
            for method_path, limits in stage.get("Throttle", {}).items():
                path, method = str(method_path).rsplit("/", 1)  # "/route/GET"
                methods[(method.upper(), path)] = _throttle_limits(limits, parameters)
        if stages:
            throttle = plan["Properties"].get("Throttle")
            plans[plan_id] = UsagePlan(_throttle_limits(throttle, parameters) if throttle else None, methods)
    for link in resources.values():
        if link["Type"] != "AWS::ApiGateway::UsagePlanKey":
            continue
        plan_ref, key_ref = link["Properties"]["UsagePlanId"], link["Properties"]["KeyId"]
        if link["Properties"].get("KeyType") == "API_KEY" and plan_ref.get("Ref") in plans:
            keys[str(key_ref["Ref"])] = plans[plan_ref["Ref"]]
    return keys

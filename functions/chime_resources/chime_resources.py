"""ChimeResourcesFunction: CloudFormation custom resources for the Chime settings CloudFormation has no
type for, through the ``chime-sdk-voice`` API (docs/chime.md):

- ``Custom::VoiceConnectorOrigination``: a Voice Connector's origination routes (where it sends calls:
  the Millis SIP host). Properties: VoiceConnectorId, Routes [{Host, Port, Protocol, Priority, Weight}].
- ``Custom::SipRule``: the SIP rule that sends calls to a phone number to the SIP media application.
  Properties: Name, PhoneNumber (E.164), SipMediaApplicationId, AwsRegion.

CloudFormation waits up to an hour for an answer that never comes, so every path answers: success,
failure with the reason, and a FAILED sent just before the function would time out.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from millis_sip.adapters.aws import error_code
from millis_sip.core.calls import E164

if TYPE_CHECKING:
    from mypy_boto3_chime_sdk_voice import ChimeSDKVoiceClient

logger = logging.getLogger("chime_resources")
logger.setLevel(logging.INFO)

TIMEOUT_MARGIN_SECONDS = 5.0  # send FAILED this long before the function's own timeout
ORIGINATION_SUFFIX = "/origination"
FAILED_PREFIX = "failed-"  # physical id of a resource whose create failed: nothing to delete

Sender = Callable[[str, bytes], None]


class InvalidProperties(ValueError):
    """The template passed properties this resource cannot use."""


def put_response(url: str, body: bytes) -> None:
    """PUT the answer to CloudFormation's pre-signed S3 URL (an empty Content-Type, as S3 signed it)."""
    if not url.startswith("https://"):
        raise ValueError("ResponseURL is not https")
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": ""})  # noqa: S310
    for attempt in range(3):
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - https only, checked above
                answer.read()
            return
        except OSError:
            if attempt == 2:
                raise


class Responder:
    """Answers CloudFormation exactly once, and on its own if the handler runs out of time."""

    def __init__(self, event: Mapping[str, Any], context: Any, send: Sender = put_response) -> None:
        self._event = event
        self._send = send
        self._lock = threading.Lock()
        self._sent = False
        seconds = context.get_remaining_time_in_millis() / 1000 - TIMEOUT_MARGIN_SECONDS
        self._timer = threading.Timer(max(seconds, 0.0), self._timed_out)
        self._timer.daemon = True
        self._timer.start()

    def _timed_out(self) -> None:
        self.answer("FAILED", _fallback_physical_id(self._event), reason="Timed out before the change finished")

    def answer(self, status: str, physical_id: str, *, reason: str = "", data: Mapping[str, str] | None = None) -> None:
        with self._lock:
            if self._sent:
                return
            self._sent = True
            self._timer.cancel()
        body = {
            "Status": status,
            "Reason": (reason or "See the function's CloudWatch log")[:1000],
            "PhysicalResourceId": physical_id,
            "StackId": self._event.get("StackId", ""),
            "RequestId": self._event.get("RequestId", ""),
            "LogicalResourceId": self._event.get("LogicalResourceId", ""),
            "NoEcho": False,
            "Data": dict(data or {}),
        }
        try:
            self._send(str(self._event.get("ResponseURL", "")), json.dumps(body).encode())
        except Exception:
            logger.exception("Could not send the answer to CloudFormation")
        logger.info("Answered CloudFormation: %s %s", status, physical_id)


def _fallback_physical_id(event: Mapping[str, Any]) -> str:
    return str(event.get("PhysicalResourceId") or f"{FAILED_PREFIX}{event.get('RequestId', 'unknown')}")


def _text(properties: Mapping[str, Any], name: str) -> str:
    value = properties.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidProperties(f"{name} is required")
    return value.strip()


def _int(value: object, name: str, low: int, high: int) -> int:
    try:
        number = int(str(value))  # CloudFormation passes numbers to custom resources as strings
    except ValueError:
        raise InvalidProperties(f"{name}={value!r} is not a whole number") from None
    if not low <= number <= high:
        raise InvalidProperties(f"{name}={number} must be between {low} and {high}")
    return number


def origination_routes(properties: Mapping[str, Any]) -> list[dict[str, Any]]:
    routes = properties.get("Routes")
    if not isinstance(routes, list) or not 1 <= len(routes) <= 20:
        raise InvalidProperties("Routes must list 1 to 20 routes")
    parsed = []
    for route in routes:
        if not isinstance(route, dict):
            raise InvalidProperties("each route is an object")
        protocol = str(route.get("Protocol", "TCP")).upper()
        if protocol not in ("TCP", "UDP"):
            raise InvalidProperties(f"Protocol={protocol!r}: use TCP or UDP")
        parsed.append(
            {
                "Host": _text(route, "Host"),
                "Port": _int(route.get("Port", 5060), "Port", 1, 65535),
                "Protocol": protocol,
                "Priority": _int(route.get("Priority", 1), "Priority", 1, 100),
                "Weight": _int(route.get("Weight", 1), "Weight", 1, 100),
            }
        )
    return parsed


class Resources:
    """Create, update and delete, per resource type. Each returns the physical id and the Data to output."""

    def __init__(self, chime: ChimeSDKVoiceClient) -> None:
        self._chime = chime

    def handle(self, event: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
        kind, request = event.get("ResourceType"), event.get("RequestType")
        properties = event.get("ResourceProperties") or {}
        if kind == "Custom::VoiceConnectorOrigination":
            return self._origination(str(request), properties, event)
        if kind == "Custom::SipRule":
            return self._sip_rule(str(request), properties, event)
        if request == "Delete":  # never block a stack's deletion on a resource this code does not know
            return _fallback_physical_id(event), {}
        raise InvalidProperties(f"unknown resource type {kind!r}")

    def _origination(
        self, request: str, properties: Mapping[str, Any], event: Mapping[str, Any]
    ) -> tuple[str, dict[str, str]]:
        if request == "Delete":
            physical = str(event.get("PhysicalResourceId", ""))
            if physical.endswith(ORIGINATION_SUFFIX):
                connector = physical.removesuffix(ORIGINATION_SUFFIX)
                try:
                    self._chime.delete_voice_connector_origination(VoiceConnectorId=connector)
                except ClientError as exc:
                    if error_code(exc) != "NotFoundException":
                        raise
            return physical, {}
        connector = _text(properties, "VoiceConnectorId")
        routes = origination_routes(properties)
        origination: Any = {"Routes": routes, "Disabled": False}
        self._chime.put_voice_connector_origination(VoiceConnectorId=connector, Origination=origination)
        # A new VoiceConnectorId means a new physical id: CloudFormation then deletes the old routes.
        return f"{connector}{ORIGINATION_SUFFIX}", {"VoiceConnectorId": connector}

    def _sip_rule(
        self, request: str, properties: Mapping[str, Any], event: Mapping[str, Any]
    ) -> tuple[str, dict[str, str]]:
        physical = str(event.get("PhysicalResourceId", ""))
        if request == "Delete":
            if physical and not physical.startswith(FAILED_PREFIX):
                self._delete_rule(physical, str((properties or {}).get("Name", physical)))
            return physical, {}
        name = _text(properties, "Name")
        number = _text(properties, "PhoneNumber")
        if not E164.match(number):
            raise InvalidProperties(f"PhoneNumber={number!r} is not an E.164 number (+15555550100)")
        targets: Any = [
            {
                "SipMediaApplicationId": _text(properties, "SipMediaApplicationId"),
                "Priority": 1,
                "AwsRegion": _text(properties, "AwsRegion"),
            }
        ]
        old = event.get("OldResourceProperties") or {}
        if request == "Update" and physical and old.get("PhoneNumber") == number:
            self._chime.update_sip_rule(
                SipRuleId=physical,
                Name=name,
                Disabled=False,
                TargetApplications=targets,
            )
            return physical, {"SipRuleId": physical}
        # Create, or a new phone number (a rule's trigger cannot change): a new rule, and CloudFormation
        # deletes the old one once the stack update succeeds.
        created = self._chime.create_sip_rule(
            Name=name,
            TriggerType="ToPhoneNumber",
            TriggerValue=number,
            Disabled=False,
            TargetApplications=targets,
        )
        rule_id = created["SipRule"]["SipRuleId"]
        return rule_id, {"SipRuleId": rule_id}

    def _delete_rule(self, rule_id: str, name: str) -> None:
        try:
            # A rule must be disabled before it can be deleted.
            self._chime.update_sip_rule(SipRuleId=rule_id, Name=name, Disabled=True)
            self._chime.delete_sip_rule(SipRuleId=rule_id)
        except ClientError as exc:
            if error_code(exc) != "NotFoundException":
                raise


_resources: Resources | None = None


def resources() -> Resources:
    global _resources
    if _resources is None:
        _resources = Resources(boto3.client("chime-sdk-voice"))
    return _resources


def lambda_handler(event: dict[str, Any], context: Any, *, send: Sender = put_response) -> None:
    logger.info("%s %s %s", event.get("RequestType"), event.get("ResourceType"), event.get("LogicalResourceId"))
    responder = Responder(event, context, send)
    try:
        physical_id, data = resources().handle(event)
    except InvalidProperties as exc:
        responder.answer("FAILED", _fallback_physical_id(event), reason=f"Invalid properties: {exc}")
    except ClientError as exc:
        logger.exception("chime-sdk-voice refused the change")
        responder.answer("FAILED", _fallback_physical_id(event), reason=f"{error_code(exc)}: {exc}")
    except Exception as exc:
        logger.exception("Unexpected failure")
        responder.answer("FAILED", _fallback_physical_id(event), reason=f"{type(exc).__name__}: {exc}")
    else:
        responder.answer("SUCCESS", physical_id, data=data)

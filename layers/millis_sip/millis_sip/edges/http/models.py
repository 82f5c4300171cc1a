"""The management API's request and response models (pydantic). Requests are validated here, at the edge,
before anything reaches Millis or DynamoDB: unknown fields, wrong types and oversized or over-nested values
are refused. Each request model turns into a plain core command (``to_command``)."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from millis_sip.core.calls import E164, E164_PATTERN, TOKEN, TOKEN_PATTERN, CallerVerification, CallRecord, CallSource
from millis_sip.core.clock import iso
from millis_sip.core.lifecycle import SessionReport
from millis_sip.core.numbers import MAX_CALLS_PER_HOUR, OUTBOUND_CARRIERS, TRANSFER_RULE_PATTERN, NumberRoute
from millis_sip.core.outbound import (
    DEFAULT_RING_SECONDS,
    MAX_RING_SECONDS,
    MIN_RING_SECONDS,
    MachineDetection,
    OutboundRequest,
)
from millis_sip.core.ports import SessionOutcome
from millis_sip.core.registration import RegisterCall, Registered
from millis_sip.core.transfer import (
    MAX_ANNOUNCE,
    MAX_SUMMARY,
    TARGET_PATTERN,
    TransferMode,
    TransferRequest,
    transfer_target,
)

MAX_BODY_BYTES = 64 * 1024
MAX_AGENT_CONFIG_BYTES = 48 * 1024
MAX_METADATA_BYTES = 8 * 1024
MAX_AGENT_CONFIG_DEPTH = 16
MAX_METADATA_DEPTH = 8


class _Token:
    """A 1-128 character visible-ASCII string, with an error message a caller can act on."""

    def __init__(self, what: str, example: str) -> None:
        self.what, self.example = what, example
        self.schema = WithJsonSchema(
            {"type": "string", "minLength": 1, "maxLength": 128, "pattern": TOKEN_PATTERN, "examples": [example]}
        )

    def __call__(self, value: str) -> str:
        if not TOKEN.match(value):
            raise ValueError(
                f"{self.what} must be 1 to 128 visible ASCII characters, no spaces (e.g. {self.example}); "
                f"got {len(value)} characters"
            )
        return value


_LOOKUP_KEY = _Token("lookup_key", "+14155550100")
_CALL_ID = _Token("call_id", "7d9c2c1e-7f7b-4c5e-9b1e-2f4a1d0c9e11")
_AGENT_ID = _Token("agent_id", "my-agent-id")
_IDEMPOTENCY_KEY = _Token("Idempotency-Key", "order-7781")
LookupKey = Annotated[str, AfterValidator(_LOOKUP_KEY), _LOOKUP_KEY.schema]
IdempotencyKey = Annotated[str, AfterValidator(_IDEMPOTENCY_KEY), _IDEMPOTENCY_KEY.schema]
CallId = Annotated[str, AfterValidator(_CALL_ID), _CALL_ID.schema]
AgentId = Annotated[str, AfterValidator(_AGENT_ID), _AGENT_ID.schema]


MAX_SAFE_INTEGER = 2**53 - 1  # I-JSON (RFC 7493): what every JSON reader on the way takes exactly


class OutOfRange:
    """A number JSON allows but nothing downstream takes (NaN, Infinity, 1e999, a 5,000-digit integer): the
    parser leaves this in its place, the models reject it as not a JSON value, and the 400 names the field."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text[:40]

    def __repr__(self) -> str:
        return f"{self.text} (not a finite number within +-2^53)"


def _number(text: str) -> float | OutOfRange:
    value = float(text)
    return value if math.isfinite(value) else OutOfRange(text)


def _integer(text: str) -> int | OutOfRange:
    if len(text) > 17:  # more digits than 2^53 has; int() of thousands of digits is itself refused
        return OutOfRange(text)
    value = int(text)
    return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else OutOfRange(text)


def strict_json(body: str) -> Any:
    """``json.loads`` with every out-of-range number left as an OutOfRange marker for validation to name."""
    return json.loads(body, parse_float=_number, parse_int=_integer, parse_constant=OutOfRange)


def _walk(value: object) -> tuple[int, str | None]:
    """Nesting depth of a JSON value, and the path of its first out-of-range number, iteratively (no recursion
    on hostile input)."""
    deepest, stack = 0, [(value, 1, "")]
    while stack:
        node, level, path = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, level)
            stack.extend((child, level + 1, f"{path}.{key}") for key, child in node.items())
        elif isinstance(node, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1, f"{path}[{i}]") for i, child in enumerate(node))
        elif isinstance(node, OutOfRange):
            return deepest, f"{path} is {node!r}"
    return deepest, None


def _bounded_object(name: str, max_bytes: int, max_depth: int) -> BeforeValidator:
    def check(value: Any) -> Any:
        if value is None or not isinstance(value, dict):
            return value  # the type check after this reports it
        depth, out_of_range = _walk(value)
        if out_of_range is not None:
            raise ValueError(f"{name}{out_of_range[:120]}")
        if depth > max_depth:
            raise ValueError(f"{name} is nested deeper than {max_depth} levels")
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > max_bytes:
            raise ValueError(f"{name} is {size} bytes as JSON; the limit is {max_bytes}")
        return value

    return BeforeValidator(check)


AgentConfig = Annotated[
    dict[str, JsonValue] | None, _bounded_object("agent_config", MAX_AGENT_CONFIG_BYTES, MAX_AGENT_CONFIG_DEPTH)
]
Metadata = Annotated[dict[str, JsonValue] | None, _bounded_object("metadata", MAX_METADATA_BYTES, MAX_METADATA_DEPTH)]
Verification = Literal["attestation", "pin", "trust_caller_id", "dialed_number"]
PHONE_SIDED = ("pin", "dialed_number")  # verifications whose lookup_key must be a phone number


class RegisterCallRequest(BaseModel):
    """Body of ``POST /calls``: the four fields Millis defines, passed through as given, plus ``lookup_key``."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        # The schema says what registration checks: a PIN is asked of the caller from lookup_key, and a
        # dialed_number registration is claimed by calls to it: both need lookup_key, an E.164 number.
        json_schema_extra={
            "if": {
                "required": ["caller_verification"],
                "properties": {"caller_verification": {"enum": list(PHONE_SIDED)}},
            },
            "then": {
                "required": ["lookup_key"],
                "properties": {"lookup_key": {"type": "string", "pattern": E164_PATTERN}},
            },
        },
    )

    agent_id: AgentId | None = Field(default=None, description="Millis agent that handles the call.")
    agent_config: AgentConfig = Field(
        default=None, description="Overrides for the agent, or a whole temporary agent (Millis agent_config)."
    )
    metadata: Metadata = Field(default=None, description="Context for the session; each key becomes a prompt variable.")
    include_metadata_in_prompt: bool | None = Field(default=None, description="Put the metadata in the prompt.")
    lookup_key: LookupKey | None = Field(
        default=None,
        description="What the call is found by: the caller's number, or one of your numbers as dialed (E.164), for "
        "a phone call (caller_verification says which), or a SIP Call-ID or carrier reference for a lookup.",
    )
    caller_verification: Verification = Field(
        default="attestation",
        description="Which side of a phone call lookup_key is, and what the call must show to claim the "
        "registration. The caller's number: attestation (the carrier verified the number, STIR/SHAKEN A), pin (the "
        "caller keys in the pin this answer returns) or trust_caller_id (caller ID alone, which anyone can fake); "
        "never claimed by a call *to* that number. Or dialed_number: one of your numbers, claimed by the first call "
        "to it, with no proof.",
    )

    @model_validator(mode="after")
    def _phone_sided_needs_a_number(self) -> RegisterCallRequest:
        if self.caller_verification in PHONE_SIDED and (self.lookup_key is None or not E164.match(self.lookup_key)):
            whose = "the caller's number" if self.caller_verification == "pin" else "the number dialed"
            raise ValueError(
                f"caller_verification {self.caller_verification} needs lookup_key: {whose}, an E.164 number such "
                "as +14155550100"
            )
        return self

    def to_command(self) -> RegisterCall:
        return RegisterCall(
            agent_id=self.agent_id,
            agent_config=self.agent_config,
            metadata=self.metadata,
            include_metadata_in_prompt=self.include_metadata_in_prompt,
            lookup_key=self.lookup_key,
            caller_verification=CallerVerification(self.caller_verification),
        )


class CallView(BaseModel):
    """What the API answers for a call."""

    call_id: str
    sip_uri: str
    millis_region: str
    lookup_key: str | None
    caller_verification: str = Field(
        description="attestation, pin, trust_caller_id or dialed_number (see caller_verification)."
    )
    status: str
    created_at: str = Field(description="ISO 8601, UTC, milliseconds.")
    expires_at: str = Field(description="When the registration lapses (ISO 8601, UTC).")
    agent_id: str | None = None
    source: str = Field(
        default=CallSource.HTTP,
        description="Who made the registration: http (POST /calls), or the phone system of an inbound call "
        "the router registered (chime, twilio, telnyx, vonage, plivo, sip).",
    )
    reason: str | None = Field(default=None, description="Why a call failed or ended.")
    bridged_at: str | None = Field(default=None, description="When the phone call reached the agent.")
    ended_at: str | None = None
    duration_seconds: int | None = Field(default=None, description="Time connected to the agent.")
    millis_call_status: str | None = Field(default=None, description="How Millis says the session ended.")
    millis_duration_seconds: int | None = Field(default=None, description="Session length as Millis reports it.")
    millis_session_id: str | None = Field(default=None, description="Millis' id of the session.")
    transfer: TransferView | None = Field(default=None, description="The call's transfer to a person, if any.")

    @classmethod
    def of(cls, record: CallRecord) -> CallView:
        if record.direction.value == "outbound" and cls is CallView:
            return OutboundCallView.of(record)
        return cls(
            call_id=record.call_id,
            sip_uri=str(record.sip_uri),
            millis_region=record.millis_region,
            lookup_key=record.lookup_key,
            caller_verification=record.caller_verification.value,
            status=record.status.value,
            created_at=iso(record.created_at),
            expires_at=iso(record.expires_at),
            agent_id=record.agent_id,
            source=record.source,
            reason=record.reason,
            bridged_at=iso(record.bridged_at) if record.bridged_at else None,
            ended_at=iso(record.ended_at) if record.ended_at else None,
            duration_seconds=record.duration_seconds,
            millis_call_status=record.millis_call_status,
            millis_duration_seconds=record.millis_duration_seconds,
            millis_session_id=record.millis_session_id,
            transfer=TransferView.of(record),
            **(_outbound_fields(record) if cls is OutboundCallView else {}),
        )


class TransferView(BaseModel):
    """A call's transfer to a person (docs/transfers.md)."""

    to: str = Field(description="The target: E.164 or a SIP URI.")
    mode: str = Field(description="cold or warm.")
    requested_by: str = Field(description="Who asked: api.")
    status: str = Field(description="in_progress, connected or failed.")
    requested_at: str | None = None
    ended_at: str | None = None

    @classmethod
    def of(cls, record: CallRecord) -> TransferView | None:
        if record.transfer_status is None:
            return None
        return cls(
            to=record.transfer_to or "",
            mode=record.transfer_mode or "",
            requested_by=record.transfer_by or "",
            status=record.transfer_status,
            requested_at=iso(record.transfer_requested_at) if record.transfer_requested_at else None,
            ended_at=iso(record.transfer_ended_at) if record.transfer_ended_at else None,
        )


class TransferCallRequest(BaseModel):
    """Body of ``POST /calls/{call_id}/transfer``: who takes the call, and how."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    to: Annotated[str, StringConstraints(min_length=2, max_length=255, pattern=TARGET_PATTERN)] = Field(
        description="The person: a number (E.164) or a SIP URI (sip:agent@pbx.example.com); it must be an allowed "
        "transfer target (TransferAllowedTargets)."
    )
    mode: Literal["cold", "warm"] = Field(
        default="cold", description="cold: the caller is put through at once; warm: the person hears summary first."
    )
    summary: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SUMMARY)] | None = Field(
        default=None,
        description="What the person hears before the caller is joined (warm); a SIP target also "
        "gets it as X-Transfer-Summary.",
    )
    announce: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ANNOUNCE)] | None = Field(
        default=None, description="What the caller hears before the target rings."
    )

    @field_validator("to")
    @classmethod
    def _target(cls, value: str) -> str:
        target = transfer_target(value)
        if target is None:
            raise ValueError("must be a number in E.164 (+14155550123) or a sip:/sips: URI")
        return target

    def to_command(self) -> TransferRequest:
        return TransferRequest(
            to=self.to, mode=TransferMode(self.mode), summary=self.summary, announce=self.announce, asked_by="api"
        )


class OutboundCallView(CallView):
    """What the API answers for an outbound call: the call, and how it went at the carrier."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    direction: Literal["outbound"] = "outbound"
    carrier: str | None = Field(default=None, description="The carrier the call was placed through.")
    carrier_call_id: str | None = Field(default=None, description="The carrier's id for the call.")
    to: str | None = Field(default=None, description="The number dialed.")
    from_: str | None = Field(default=None, alias="from", description="Your number the call is placed from.")
    ringing_at: str | None = None
    answered_at: str | None = Field(default=None, description="When the person (or a machine) answered.")
    answered_by: str | None = Field(default=None, description="human or machine, as the carrier's detection said.")
    machine_detection: str | None = None
    ring_timeout_seconds: int | None = None


def _outbound_fields(record: CallRecord) -> dict[str, Any]:
    return {
        "carrier": record.carrier,
        "carrier_call_id": record.carrier_call_id,
        "to": record.dialed_number,
        "from_": record.caller_number,
        "ringing_at": iso(record.ringing_at) if record.ringing_at else None,
        "answered_at": iso(record.answered_at) if record.answered_at else None,
        "answered_by": record.answered_by,
        "machine_detection": record.machine_detection,
        "ring_timeout_seconds": record.ring_timeout_seconds,
    }


class RegisteredView(CallView):
    """What POST /calls answers: the call, and its PIN when callers must key one in (shown once, never stored)."""

    pin: str | None = Field(default=None, description="The PIN to give the caller (caller_verification pin only).")

    @classmethod
    def of_registration(cls, registered: Registered) -> dict[str, Any]:
        view = CallView.of(registered.record).model_dump(mode="json")
        return {**view, "pin": registered.pin} if registered.pin is not None else view


def _e164(value: str) -> str:
    if not TOKEN.match(value) or not E164.match(value):
        raise ValueError(f"must be an E.164 number such as +14155550100 (got {len(value)} characters)")
    return value


PhoneNumber = Annotated[
    str,
    AfterValidator(_e164),
    WithJsonSchema({"type": "string", "pattern": E164_PATTERN, "examples": ["+14155550100"]}),
]

# A number in a path: percent-decoded and checked by the core (so %2B works where a client cannot send +).
NumberInPath = Annotated[str, WithJsonSchema({"type": "string", "pattern": E164_PATTERN, "examples": ["+14155550100"]})]


def _whole_number(value: Any) -> Any:
    """30.0 is 30 (JSON has one number type); anything else goes to the type check as it is (30.5, "30": no)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


OutboundCarrier = Literal["twilio", "signalwire", "telnyx", "vonage", "plivo", "chime"]


class OutboundCallRequest(BaseModel):
    """Body of ``POST /calls/outbound``: who to call, from which of your numbers, through which carrier, and the
    Millis fields of ``POST /calls``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    to: PhoneNumber = Field(description="The number to call (E.164); it must start with an allowed prefix.")
    from_: PhoneNumber = Field(
        alias="from",
        description="Your number to call from (E.164): its route must list the carrier in outbound_carriers.",
    )
    carrier: OutboundCarrier = Field(description="The carrier that places the call.")
    agent_id: AgentId | None = Field(default=None, description="Millis agent; left out: the from number's route's.")
    agent_config: AgentConfig = Field(default=None, description="Overrides for the agent (Millis agent_config).")
    metadata: Metadata = Field(default=None, description="Context for the session; each key becomes a prompt variable.")
    include_metadata_in_prompt: bool | None = Field(default=None, description="Put the metadata in the prompt.")
    ring_timeout_seconds: Annotated[int, BeforeValidator(_whole_number)] = Field(
        default=DEFAULT_RING_SECONDS,
        ge=MIN_RING_SECONDS,
        le=MAX_RING_SECONDS,
        description="How long the person's phone rings before the call ends no_answer.",
    )
    machine_detection: Literal["off", "hangup", "message"] = Field(
        default="off",
        description="When a machine answers: off (no detection; whoever answers is bridged at once), hangup (end "
        "the call, status machine) or message (wait for the greeting to end, then the agent speaks).",
    )

    def to_command(self) -> OutboundRequest:
        return OutboundRequest(
            to=self.to,
            from_=self.from_,
            carrier=self.carrier,
            agent_id=self.agent_id,
            agent_config=self.agent_config,
            metadata=self.metadata,
            include_metadata_in_prompt=self.include_metadata_in_prompt,
            ring_timeout_seconds=self.ring_timeout_seconds,
            machine_detection=MachineDetection(self.machine_detection),
        )


class NumberRouteRequest(BaseModel):
    """Body of ``PUT /numbers/{number}``: the agent that takes the number's calls, as Millis' fields."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        # The schema says what _needs_an_agent checks: agent_id or agent_config, not null.
        json_schema_extra={
            "anyOf": [
                {"required": ["agent_id"], "properties": {"agent_id": {"type": "string"}}},
                {"required": ["agent_config"], "properties": {"agent_config": {"type": "object"}}},
            ]
        },
    )

    agent_id: AgentId | None = Field(default=None, description="Millis agent that takes the number's calls.")
    agent_config: AgentConfig = Field(default=None, description="Overrides for the agent, or a temporary agent.")
    metadata: Metadata = Field(
        default=None,
        description="Context for every call to the number (the bridge adds caller_number, dialed_number, carrier, "
        "carrier_call_id).",
    )
    include_metadata_in_prompt: bool | None = Field(default=None, description="Put the metadata in the prompt.")
    max_calls_per_hour: Annotated[int | None, BeforeValidator(_whole_number)] = Field(
        default=None,
        ge=1,
        le=MAX_CALLS_PER_HOUR,
        description="The most Millis sessions calls to the number may start in one clock hour (the rest hear the "
        "failure message); left out: no cap. Registrations a backend made are not counted.",
    )
    outbound_carriers: list[OutboundCarrier] | None = Field(
        default=None,
        max_length=len(OUTBOUND_CARRIERS),
        description="The carriers this number may place outbound calls through (POST /calls/outbound with it as "
        "from); left out: none.",
    )
    max_outbound_calls_per_hour: Annotated[int | None, BeforeValidator(_whole_number)] = Field(
        default=None,
        ge=1,
        le=MAX_CALLS_PER_HOUR,
        description="The most outbound calls this number may place in one clock hour; left out: the stack's "
        "OutboundCallsPerHourPerNumber.",
    )
    transfer_targets: list[Annotated[str, StringConstraints(pattern=TRANSFER_RULE_PATTERN)]] | None = Field(
        default=None,
        max_length=50,
        description="Where this number's calls may be transferred (POST /calls/{call_id}/transfer): E.164 prefixes "
        "(+1415555) and SIP domains (sip:pbx.example.com); left out: the stack's TransferAllowedTargets.",
    )

    @model_validator(mode="after")
    def _needs_an_agent(self) -> NumberRouteRequest:
        if self.agent_id is None and self.agent_config is None:
            raise ValueError("send agent_id or agent_config: the agent that takes the number's calls")
        return self

    def to_route(self, number: str) -> NumberRoute:
        return NumberRoute(
            number=number,
            agent_id=self.agent_id,
            agent_config=self.agent_config,
            metadata=self.metadata or {},
            include_metadata_in_prompt=self.include_metadata_in_prompt,
            max_calls_per_hour=self.max_calls_per_hour,
            outbound_carriers=tuple(self.outbound_carriers or ()),
            max_outbound_calls_per_hour=self.max_outbound_calls_per_hour,
            transfer_targets=tuple(self.transfer_targets or ()),
        )


class NumberRouteView(BaseModel):
    number: str
    agent_id: str | None = None
    agent_config: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    include_metadata_in_prompt: bool | None = None
    max_calls_per_hour: int | None = None
    outbound_carriers: list[str] = Field(default_factory=list)
    max_outbound_calls_per_hour: int | None = None
    transfer_targets: list[str] = Field(default_factory=list)
    created_at: str | None = None
    updated_at: str | None = None

    @classmethod
    def of(cls, route: NumberRoute) -> NumberRouteView:
        return cls(
            number=route.number,
            agent_id=route.agent_id,
            agent_config=dict(route.agent_config) if route.agent_config is not None else None,
            metadata=dict(route.metadata),
            include_metadata_in_prompt=route.include_metadata_in_prompt,
            max_calls_per_hour=route.max_calls_per_hour,
            outbound_carriers=list(route.outbound_carriers),
            max_outbound_calls_per_hour=route.max_outbound_calls_per_hour,
            transfer_targets=list(route.transfer_targets),
            created_at=iso(route.created_at) if route.created_at else None,
            updated_at=iso(route.updated_at) if route.updated_at else None,
        )


class NumberPage(BaseModel):
    numbers: list[NumberRouteView]
    next: str | None = Field(default=None, description="Pass as ?next= for the following page; null on the last.")


class CallPage(BaseModel):
    """GET /calls without a lookup_key: a page of calls, newest first."""

    calls: list[OutboundCallView | CallView] = Field(
        description="Newest first. Outbound calls carry direction outbound and the carrier's fields; a page may "
        "hold fewer than limit calls, even none, while next is not null."
    )
    next: str | None = Field(default=None, description="Pass as ?next= for the following page; null on the last.")


# GET /calls' time range: ISO 8601 with a date, a time and an offset (Z or +hh:mm); a time without one is UTC.
TIME_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,6})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?$"
)
CARRIER_PATTERN = r"^[a-z0-9_-]{1,32}$"
ListedStatus = Literal[
    "registered",
    "claimed",
    "bridged",
    "ended",
    "failed",
    "expired",
    "queued",
    "ringing",
    "answered",
    "no_answer",
    "busy",
    "canceled",
    "machine",
]


class GatewayMessage(BaseModel):
    """API Gateway's own answers (a missing API key, throttling): ``{"message": "Forbidden"}``."""

    message: str


class ErrorBody(BaseModel):
    """Every error the API answers: what went wrong, and what to do about it."""

    error: str = Field(description="Stable machine-readable code.")
    message: str = Field(description="What was wrong.")
    hint: str | None = Field(default=None, description="How to fix it.")
    details: list[dict[str, Any]] | None = None
    request_id: str | None = None


MAX_WEBHOOK_BODY_BYTES = 1024 * 1024  # session data can carry a transcript; the bridge keeps four fields


class SessionDataWebhook(BaseModel):
    """Millis' ``session_data_webhook`` payload: the fields the bridge keeps. Everything else Millis sends
    (metadata, transcript, recording, costs) is ignored and never stored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    call_id: CallId
    session_id: str | None = Field(default=None, max_length=256)
    call_status: str | None = Field(
        default=None, max_length=64, description="user-ended, api-ended, agent-ended, timeout, error, ..."
    )
    duration: float | None = Field(default=None, ge=0, le=7 * 86400, description="Session length in seconds.")
    error_message: str | None = Field(default=None, max_length=10_000)

    def to_report(self) -> SessionReport:
        return SessionReport(
            call_id=self.call_id,
            session_id=self.session_id,
            call_status=self.call_status,
            duration=self.duration,
            error_message=self.error_message,
        )


class WebhookAck(BaseModel):
    received: bool = True
    call_id: str
    outcome: SessionOutcome = Field(
        description="closed (the call was open and is now over), annotated (it was already over: Millis' fields "
        "were added) or unknown (no such call; nothing is created)."
    )

"""Settings: the environment (``millis_sip.environment``: every variable listed once, one reader) read into
typed settings once per execution environment, at import of the entry module."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from millis_sip.core.calls import MAX_CALL_TTL_SECONDS
from millis_sip.core.errors import ConfigurationError
from millis_sip.core.numbers import TRANSFER_RULE
from millis_sip.core.regions import MillisRegion, RegionChoice, choose_millis_region
from millis_sip.environment import Env
from millis_sip.messages import Messages

DEFAULT_MILLIS_URLS: Mapping[MillisRegion, str] = {
    MillisRegion.US_WEST: "https://api-west.millis.ai",
    MillisRegion.EU_WEST: "https://api-eu-west.millis.ai",
}


@dataclass(frozen=True, slots=True)
class Settings:
    calls_table_name: str
    millis_region: RegionChoice
    millis_urls: Mapping[MillisRegion, str]
    api_key_secret_arn: str | None
    default_agent_id: str | None
    call_ttl_seconds: int
    connect_timeout: float
    read_timeout: float
    http_deadline: float
    secret_max_age: int
    webhook_secret_arn: str | None = None
    keys_secret_arn: str | None = None
    session_webhook: bool = True
    webhook_url: str | None = None
    idempotency_table_name: str | None = None
    idempotency_ttl_seconds: int = 86_400
    numbers_table_name: str = ""
    default_agent_calls_per_hour: int | None = None  # per dialed number; None: no cap
    default_agent_calls_per_hour_total: int | None = None  # for every number together; None: no cap
    sip_server_api_key_id: str | None = None  # the API Gateway id of the SIP servers' key (not a secret)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        read = Env(env)
        get, number = read.text, read.number
        table, numbers = get("CALLS_TABLE_NAME"), get("NUMBERS_TABLE_NAME")
        if not table:
            raise ConfigurationError("CALLS_TABLE_NAME is not set: name the DynamoDB table that holds calls")
        if not numbers:
            raise ConfigurationError("NUMBERS_TABLE_NAME is not set: name the DynamoDB table of number routes")
        region_setting = get("MILLIS_REGION", "auto").lower()
        if region_setting not in ("auto", *MillisRegion):
            raise ConfigurationError(f"MILLIS_REGION={region_setting!r}: use auto, us-west or eu-west")
        aws_region = get("AWS_REGION") or get("AWS_DEFAULT_REGION")
        urls = {
            MillisRegion.US_WEST: _base_url("MILLIS_US_WEST_URL", get("MILLIS_US_WEST_URL"), MillisRegion.US_WEST),
            MillisRegion.EU_WEST: _base_url("MILLIS_EU_WEST_URL", get("MILLIS_EU_WEST_URL"), MillisRegion.EU_WEST),
        }
        return cls(
            calls_table_name=table,
            millis_region=choose_millis_region(aws_region, region_setting),
            millis_urls=urls,
            api_key_secret_arn=get("MILLIS_API_KEY_SECRET_ARN") or None,
            default_agent_id=get("DEFAULT_AGENT_ID") or None,
            call_ttl_seconds=int(number("CALL_TTL_SECONDS", 3600, 60, MAX_CALL_TTL_SECONDS)),
            connect_timeout=number("MILLIS_CONNECT_TIMEOUT", 2.0, 0.05, 10),
            read_timeout=number("MILLIS_READ_TIMEOUT", 5.0, 0.1, 25),
            http_deadline=number("MILLIS_HTTP_DEADLINE", 12.0, 0.5, 25),
            secret_max_age=int(number("MILLIS_API_KEY_MAX_AGE", 300, 0, 3600)),
            webhook_secret_arn=get("WEBHOOK_SECRET_ARN") or None,
            keys_secret_arn=get("KEYS_SECRET_ARN") or None,
            session_webhook=read.switch("SESSION_WEBHOOK", "enabled"),
            webhook_url=_webhook_url(get("WEBHOOK_URL")),
            idempotency_table_name=get("IDEMPOTENCY_TABLE_NAME") or None,
            idempotency_ttl_seconds=int(number("IDEMPOTENCY_TTL_SECONDS", 86400, 60, 7 * 86400)),
            numbers_table_name=numbers,
            default_agent_calls_per_hour=int(number("DEFAULT_AGENT_CALLS_PER_HOUR", 0, 0, 1_000_000)) or None,
            default_agent_calls_per_hour_total=int(number("DEFAULT_AGENT_CALLS_PER_HOUR_TOTAL", 0, 0, 1_000_000))
            or None,
            sip_server_api_key_id=get("SIP_SERVER_API_KEY_ID") or None,
        )


def _webhook_url(raw: str) -> str | None:
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"WEBHOOK_URL={raw!r} is not an http(s) URL")
    return raw


def _base_url(name: str, raw: str, region: MillisRegion) -> str:
    url = (raw or DEFAULT_MILLIS_URLS[region]).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{name}={raw!r} is not an http(s) URL")
    return url


VOICE_CONNECTOR_ARN = re.compile(r"arn:aws[a-z-]*:chime:[a-z0-9-]+:[0-9]{12}:vcg?/[A-Za-z0-9]+\Z")


@dataclass(frozen=True, slots=True)
class VoiceRoute:
    """How a phone call reaches one Millis region: the Voice Connector whose origination route points at
    that region's SIP host."""

    region: MillisRegion
    voice_connector_arn: str
    sip_host: str


@dataclass(frozen=True, slots=True)
class ChimeSettings:
    """The SIP media application's settings (docs/chime.md)."""

    routes: Mapping[MillisRegion, VoiceRoute]
    bridge_timeout_seconds: int
    answer_seconds: float
    messages: Messages
    # What the caller hears while Millis answers (CallAndBridge's RingbackTone): an audio file in S3 that the
    # Voice Connector service may read; None: the carrier's own progress tones, or silence.
    ringback: tuple[str, str] | None = None  # (bucket, key)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ChimeSettings:
        read = Env(env)
        get = read.text
        routes: dict[MillisRegion, VoiceRoute] = {}
        for region in MillisRegion:
            suffix = region.name  # US_WEST, EU_WEST
            arn, host = get(f"VOICE_CONNECTOR_ARN_{suffix}"), get(f"MILLIS_SIP_HOST_{suffix}").lower().rstrip(".")
            if not arn:
                continue  # no Voice Connector for this region: phone calls use the other one
            if not VOICE_CONNECTOR_ARN.match(arn):
                raise ConfigurationError(
                    f"VOICE_CONNECTOR_ARN_{suffix}={arn!r} is not a Voice Connector ARN "
                    "(arn:aws:chime:<region>:<account>:vc/<id>)"
                )
            if not host:
                raise ConfigurationError(
                    f"MILLIS_SIP_HOST_{suffix} is empty: name the Millis SIP host that Voice Connector routes to"
                )
            routes[region] = VoiceRoute(region, arn, host)
        bucket, key = get("RINGBACK_TONE_BUCKET"), get("RINGBACK_TONE_KEY")
        if bool(bucket) != bool(key):
            raise ConfigurationError("RINGBACK_TONE_BUCKET and RINGBACK_TONE_KEY go together: set both or neither")
        if bucket and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise ConfigurationError(f"RINGBACK_TONE_BUCKET={bucket!r} is not an S3 bucket name")
        return cls(
            routes=routes,
            bridge_timeout_seconds=int(read.number("BRIDGE_TIMEOUT_SECONDS", 30, 1, 120)),
            answer_seconds=read.number("CHIME_ANSWER_SECONDS", 4.0, 1.0, 4.8),
            messages=Messages.from_env(env),
            ringback=(bucket, key) if bucket else None,
        )


@dataclass(frozen=True, slots=True)
class InboundSettings:
    """The call path's settings for carriers and SIP servers (docs/router.md, docs/carriers/)."""

    answer_seconds: float  # the whole answer (signature, router, Millis, DynamoDB) is ready within this
    public_base_url: str | None  # the URL carriers call this API at; None: rebuilt from each request
    twilio_auth_token_secret_arn: str | None
    telnyx_public_key_secret_arn: str | None
    vonage_signature_secret_arn: str | None
    vonage_application_id: str | None  # when set, Vonage webhooks of any other application are refused
    plivo_auth_token_secret_arn: str | None
    messages: Messages
    transfer_allowed_targets: tuple[str, ...] = ()  # where a REFER may send a call (docs/transfers.md)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InboundSettings:
        read = Env(env)
        base = read.text("PUBLIC_BASE_URL").rstrip("/")
        if base:
            parts = urlsplit(base)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
                raise ConfigurationError(f"PUBLIC_BASE_URL={base!r} is not an http(s) base URL (no query, no #)")
        return cls(
            answer_seconds=read.number("INBOUND_ANSWER_SECONDS", 8.0, 1.0, 13.0),
            public_base_url=base or None,
            twilio_auth_token_secret_arn=read.optional("TWILIO_AUTH_TOKEN_SECRET_ARN"),
            telnyx_public_key_secret_arn=read.optional("TELNYX_PUBLIC_KEY_SECRET_ARN"),
            vonage_signature_secret_arn=read.optional("VONAGE_SIGNATURE_SECRET_ARN"),
            vonage_application_id=read.optional("VONAGE_APPLICATION_ID"),
            plivo_auth_token_secret_arn=read.optional("PLIVO_AUTH_TOKEN_SECRET_ARN"),
            messages=Messages.from_env(env),
            transfer_allowed_targets=transfer_targets(read.text("TRANSFER_ALLOWED_TARGETS")),
        )


OUTBOUND_PREFIX = re.compile(r"\+[1-9][0-9]{0,14}\Z")


def transfer_targets(text: str) -> tuple[str, ...]:
    """TRANSFER_ALLOWED_TARGETS: E.164 prefixes (+1) and SIP domains (sip:pbx.example.com), comma-separated."""
    rules = tuple(rule.strip() for rule in text.split(",") if rule.strip())
    for rule in rules:
        if not TRANSFER_RULE.fullmatch(rule):
            raise ConfigurationError(
                f"TRANSFER_ALLOWED_TARGETS: {rule!r} is neither an E.164 prefix (+1) nor a SIP domain "
                "(sip:pbx.example.com)"
            )
    return rules


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    """ApiFunction's outbound calls (docs/outbound.md): the guards, and the carriers' call-control accounts."""

    allowed_prefixes: tuple[str, ...]
    calls_per_hour_per_number: int | None
    calls_per_hour: int | None
    max_ringing: int | None
    public_base_url: str | None
    twilio_account_sid: str | None
    twilio_api_url: str
    twilio_auth_token_secret_arn: str | None
    telnyx_account_sid: str | None
    telnyx_application_id: str | None
    telnyx_api_key_secret_arn: str | None
    telnyx_api_url: str
    vonage_application_id: str | None
    vonage_private_key_secret_arn: str | None
    vonage_api_url: str
    chime_sip_media_application_id: str | None
    transfer_allowed_targets: tuple[str, ...]
    signalwire_space_url: str | None
    signalwire_project_id: str | None
    signalwire_api_token_secret_arn: str | None
    plivo_auth_id: str | None
    plivo_api_url: str
    plivo_auth_token_secret_arn: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OutboundSettings:
        read = Env(env)
        prefixes = tuple(p.strip() for p in read.text("OUTBOUND_ALLOWED_PREFIXES").split(",") if p.strip())
        for prefix in prefixes:
            if not OUTBOUND_PREFIX.match(prefix):
                raise ConfigurationError(
                    f"OUTBOUND_ALLOWED_PREFIXES: {prefix!r} is not an E.164 prefix (a + and 1 to 15 digits, e.g. +1)"
                )

        def cap(name: str) -> int | None:
            return int(read.number(name, 0, 0, 1_000_000)) or None

        def url(name: str, default: str) -> str:
            value = read.text(name, default).rstrip("/")
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigurationError(f"{name}={value!r} is not an http(s) URL")
            return value

        base = read.text("PUBLIC_BASE_URL").rstrip("/")
        return cls(
            allowed_prefixes=prefixes,
            calls_per_hour_per_number=cap("OUTBOUND_CALLS_PER_HOUR_PER_NUMBER"),
            calls_per_hour=cap("OUTBOUND_CALLS_PER_HOUR"),
            max_ringing=cap("OUTBOUND_MAX_RINGING"),
            public_base_url=base or None,
            twilio_account_sid=read.optional("TWILIO_ACCOUNT_SID"),
            twilio_api_url=url("TWILIO_API_URL", "https://api.twilio.com/2010-04-01"),
            twilio_auth_token_secret_arn=read.optional("TWILIO_AUTH_TOKEN_SECRET_ARN"),
            telnyx_account_sid=read.optional("TELNYX_ACCOUNT_SID"),
            telnyx_application_id=read.optional("TELNYX_APPLICATION_ID"),
            telnyx_api_key_secret_arn=read.optional("TELNYX_API_KEY_SECRET_ARN"),
            telnyx_api_url=url("TELNYX_API_URL", "https://api.telnyx.com/v2"),
            vonage_application_id=read.optional("VONAGE_APPLICATION_ID"),
            vonage_private_key_secret_arn=read.optional("VONAGE_PRIVATE_KEY_SECRET_ARN"),
            vonage_api_url=url("VONAGE_API_URL", "https://api.nexmo.com"),
            chime_sip_media_application_id=read.optional("CHIME_SIP_MEDIA_APPLICATION_ID"),
            transfer_allowed_targets=transfer_targets(read.text("TRANSFER_ALLOWED_TARGETS")),
            signalwire_space_url=url("SIGNALWIRE_SPACE_URL", "") if read.optional("SIGNALWIRE_SPACE_URL") else None,
            signalwire_project_id=read.optional("SIGNALWIRE_PROJECT_ID"),
            signalwire_api_token_secret_arn=read.optional("SIGNALWIRE_API_TOKEN_SECRET_ARN"),
            plivo_auth_id=read.optional("PLIVO_AUTH_ID"),
            plivo_api_url=url("PLIVO_API_URL", "https://api.plivo.com/v1/Account"),
            plivo_auth_token_secret_arn=read.optional("PLIVO_AUTH_TOKEN_SECRET_ARN"),
        )

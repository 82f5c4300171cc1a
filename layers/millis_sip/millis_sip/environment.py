"""Every environment variable the functions read, listed once (``VARIABLES``), and the one reader of them
(``Env``). A variable that is not in the table cannot be read (``Env`` raises), so the list stays true;
``tests/unit/test_config.py`` checks it against the template and the code, and docs/configuration.md is the
same list for people. Standard library only: every entry module imports it before anything else."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from millis_sip.core.errors import ConfigurationError

ALL, API, PHONE, CHIME, INBOUND = "all", "ApiFunction", "phone", "SipMediaAppFunction", "InboundFunction"
CARRIER_APIS = "carriers"  # InboundFunction (the webhooks) and ApiFunction (outbound calls)
EVENTS = "EventsFunction"  # the calls table's stream to EventBridge (docs/events.md)


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    read_by: str  # ALL, API, PHONE (the SIP media application and InboundFunction), CHIME or INBOUND
    meaning: str
    secret: bool = False  # a secret's value (local runs only; in AWS the *_SECRET_ARN names the secret)


VARIABLES: tuple[Variable, ...] = (
    Variable("AWS_REGION", ALL, "the region the function runs in (set by Lambda): the nearest Millis region"),
    Variable("AWS_DEFAULT_REGION", ALL, "read when AWS_REGION is not set"),
    Variable("CALLS_TABLE_NAME", ALL, "the DynamoDB table of calls"),
    Variable("NUMBERS_TABLE_NAME", ALL, "the DynamoDB table of number routes"),
    Variable("MILLIS_REGION", ALL, "auto (nearest), us-west or eu-west"),
    Variable("MILLIS_US_WEST_URL", ALL, "Millis' us-west base URL (the simulator locally)"),
    Variable("MILLIS_EU_WEST_URL", ALL, "Millis' eu-west base URL"),
    Variable("MILLIS_API_KEY_SECRET_ARN", ALL, "the secret holding the Millis private key"),
    Variable("MILLIS_API_KEY", ALL, "the Millis private key, locally", secret=True),
    Variable("MILLIS_API_KEY_MAX_AGE", ALL, "seconds a secret read from Secrets Manager is reused (0-3600)"),
    Variable("MILLIS_CONNECT_TIMEOUT", ALL, "seconds to connect to Millis (0.05-10)"),
    Variable("MILLIS_READ_TIMEOUT", ALL, "seconds Millis may take to answer (0.1-25)"),
    Variable("MILLIS_HTTP_DEADLINE", ALL, "seconds a POST /calls registration may take in all (0.5-25)"),
    Variable("DEFAULT_AGENT_ID", ALL, "the agent of calls no route or registration names"),
    Variable("DEFAULT_AGENT_CALLS_PER_HOUR", ALL, "the default agent's fresh sessions per dialed number and hour"),
    Variable("DEFAULT_AGENT_CALLS_PER_HOUR_TOTAL", ALL, "the default agent's fresh sessions per hour, in all"),
    Variable("CALL_TTL_SECONDS", ALL, "how long a registration waits to be used (60-86400)"),
    Variable("WEBHOOK_SECRET_ARN", ALL, "the stack secret that opens Millis' reports of older calls"),
    Variable("WEBHOOK_SECRET", ALL, "the stack secret, locally", secret=True),
    Variable("KEYS_SECRET_ARN", ALL, "the keys secret (lookup index, counters, PINs, action tokens)"),
    Variable("KEYS_SECRET", ALL, "the keys secret, locally", secret=True),
    Variable("SESSION_WEBHOOK", ALL, "enabled or disabled: registrations carry Millis' session webhook"),
    Variable("WEBHOOK_URL", ALL, "where Millis sends session reports (empty: the API's URL, as each request saw it)"),
    Variable("MASK_PHONE_NUMBERS", ALL, "true or false: phone numbers masked in logs"),
    Variable("POWERTOOLS_SERVICE_NAME", ALL, "the service name in logs and metrics"),
    Variable("POWERTOOLS_METRICS_NAMESPACE", ALL, "the CloudWatch metrics namespace"),
    Variable("POWERTOOLS_LOG_LEVEL", ALL, "the log level"),
    Variable("POWERTOOLS_TRACE_DISABLED", ALL, "true: no X-Ray tracing (Tracing=PassThrough)"),
    Variable("AWS_ENDPOINT_URL_DYNAMODB", ALL, "DynamoDB's endpoint (DynamoDB Local); empty in AWS"),
    Variable("IDEMPOTENCY_TABLE_NAME", API, "the table of Idempotency-Key answers (empty: the header is ignored)"),
    Variable("IDEMPOTENCY_TTL_SECONDS", API, "how long an Idempotency-Key's answer is kept (60-604800)"),
    Variable("SIP_SERVER_API_KEY_ID", API, "the SIP servers' API key id: refused on every route but GET /route"),
    Variable("FAILURE_MESSAGE", PHONE, "what a caller hears when no agent can take the call (- for nothing)"),
    Variable("FAILURE_MESSAGE_VOICE", PHONE, "the Amazon Polly voice of what callers hear"),
    Variable("FAILURE_MESSAGE_LANGUAGE", PHONE, "its language"),
    Variable("FAILURE_MESSAGE_ENGINE", PHONE, "standard or neural"),
    Variable("PIN_PROMPT", PHONE, "what a caller asked for a PIN hears"),
    Variable("PIN_RETRY_PROMPT", PHONE, "what a caller hears after a wrong PIN"),
    Variable("VOICE_CONNECTOR_ARN_US_WEST", CHIME, "the Voice Connector that reaches Millis us-west"),
    Variable("VOICE_CONNECTOR_ARN_EU_WEST", CHIME, "the Voice Connector that reaches Millis eu-west"),
    Variable("MILLIS_SIP_HOST_US_WEST", CHIME, "the Millis SIP host that Voice Connector routes to"),
    Variable("MILLIS_SIP_HOST_EU_WEST", CHIME, "the Millis SIP host that Voice Connector routes to"),
    Variable("BRIDGE_TIMEOUT_SECONDS", CHIME, "how long Chime rings the Millis leg (1-120)"),
    Variable("CHIME_ANSWER_SECONDS", CHIME, "the SIP media application's answer time (1-4.8)"),
    Variable("RINGBACK_TONE_BUCKET", CHIME, "the S3 bucket of the ringback tone (with RINGBACK_TONE_KEY)"),
    Variable("RINGBACK_TONE_KEY", CHIME, "the ringback tone's key in that bucket"),
    Variable("OUTBOUND_ALLOWED_PREFIXES", API, "where outbound calls may go: E.164 prefixes, e.g. +1,+44 (empty: off)"),
    Variable(
        "OUTBOUND_CALLS_PER_HOUR_PER_NUMBER", API, "outbound calls one from number may place per hour (0: no cap)"
    ),
    Variable("OUTBOUND_CALLS_PER_HOUR", API, "outbound calls the stack may place per hour, in all (0: no cap)"),
    Variable("OUTBOUND_MAX_RINGING", API, "outbound calls placed and not answered yet, at once (0: no cap)"),
    Variable("TWILIO_ACCOUNT_SID", API, "the Twilio account that places outbound calls (with its auth token)"),
    Variable("TWILIO_API_URL", API, "Twilio's REST API (a local stand-in in tests and the demo)"),
    Variable("TELNYX_ACCOUNT_SID", API, "the Telnyx account whose TeXML API places outbound calls"),
    Variable("TELNYX_APPLICATION_ID", API, "the TeXML application outbound calls through Telnyx are placed with"),
    Variable("TELNYX_API_KEY_SECRET_ARN", API, "the secret with a Telnyx API key (outbound calls)"),
    Variable("TELNYX_API_KEY", API, "a Telnyx API key, locally", secret=True),
    Variable("TELNYX_API_URL", API, "Telnyx's REST API (a local stand-in in tests and the demo)"),
    Variable("VONAGE_PRIVATE_KEY_SECRET_ARN", API, "the secret with the Vonage application's private key (outbound)"),
    Variable("VONAGE_PRIVATE_KEY", API, "the Vonage application's private key (PEM), locally", secret=True),
    Variable("VONAGE_API_URL", API, "Vonage's REST API (a local stand-in in tests and the demo)"),
    Variable(
        "TRANSFER_ALLOWED_TARGETS",
        CARRIER_APIS,
        "where calls may be transferred (the API, and REFER): E.164 prefixes, SIP domains (empty: off)",
    ),
    Variable("CHIME_SIP_MEDIA_APPLICATION_ID", API, "the SIP media application outbound calls through Chime use"),
    Variable("SIGNALWIRE_SPACE_URL", API, "the SignalWire space whose Compatibility API places outbound calls"),
    Variable("SIGNALWIRE_PROJECT_ID", API, "the SignalWire project outbound calls are placed as"),
    Variable("SIGNALWIRE_API_TOKEN_SECRET_ARN", API, "the secret with the SignalWire project's API token"),
    Variable("SIGNALWIRE_API_TOKEN", API, "the SignalWire project's API token, locally", secret=True),
    Variable("PLIVO_AUTH_ID", API, "the Plivo account that places outbound calls (with its auth token)"),
    Variable("PLIVO_API_URL", API, "Plivo's REST API (a local stand-in in tests and the demo)"),
    Variable("INBOUND_ANSWER_SECONDS", INBOUND, "the carriers' and SIP servers' answer time at most (1-13)"),
    Variable("PUBLIC_BASE_URL", CARRIER_APIS, "the URL carriers call this API at (empty: rebuilt from each request)"),
    Variable("TWILIO_AUTH_TOKEN_SECRET_ARN", CARRIER_APIS, "the secret with Twilio's auth token"),
    Variable("TWILIO_AUTH_TOKEN", CARRIER_APIS, "Twilio's auth token, locally", secret=True),
    Variable("TELNYX_PUBLIC_KEY_SECRET_ARN", INBOUND, "the secret with Telnyx's public key"),
    Variable("TELNYX_PUBLIC_KEY", INBOUND, "Telnyx's public key, locally", secret=True),
    Variable("VONAGE_SIGNATURE_SECRET_ARN", INBOUND, "the secret with Vonage's signature secret"),
    Variable("VONAGE_SIGNATURE_SECRET", INBOUND, "Vonage's signature secret, locally", secret=True),
    Variable("VONAGE_APPLICATION_ID", CARRIER_APIS, "the Vonage application whose webhooks are answered"),
    Variable("PLIVO_AUTH_TOKEN_SECRET_ARN", CARRIER_APIS, "the secret with Plivo's auth token"),
    Variable("PLIVO_AUTH_TOKEN", CARRIER_APIS, "Plivo's auth token, locally", secret=True),
    Variable("EVENT_BUS_NAME", EVENTS, "the EventBridge bus call events are put on"),
    Variable("EVENTS_PHONE_NUMBERS", EVENTS, "masked (default) or full: phone numbers in call events"),
)
KNOWN = frozenset(v.name for v in VARIABLES)


class Env:
    """The one reader of the environment: each value stripped, an empty value the same as an unset one, and only
    the variables in ``VARIABLES`` (asking for another is a programming error)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if env is None else env

    def text(self, name: str, default: str = "") -> str:
        if name not in KNOWN:
            raise KeyError(f"{name} is not in config.VARIABLES (millis_sip.environment)")
        return self._env.get(name, "").strip() or default

    def optional(self, name: str) -> str | None:
        return self.text(name) or None

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.text(name) or str(default)
        try:
            value = float(raw)
        except ValueError:
            raise ConfigurationError(f"{name}={raw!r} is not a number") from None
        if not low <= value <= high:
            raise ConfigurationError(f"{name}={raw} must be between {low:g} and {high:g}")
        return value

    def switch(self, name: str, default: str) -> bool:
        raw = self.text(name, default)
        value = raw.lower()
        if value not in ("enabled", "disabled", "true", "false"):
            raise ConfigurationError(f"{name}={raw!r}: use enabled or disabled")
        return value in ("enabled", "true")

    def flag(self, name: str, default: bool) -> bool:
        """A true/false flag that is on unless it says false, 0 or no (or off unless it says true, 1, yes)."""
        value = self.text(name).lower()
        if not value:
            return default
        return value not in ("false", "0", "no") if default else value in ("true", "1", "yes")

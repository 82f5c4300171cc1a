"""The composition root of every function: which adapter serves each port, built once per execution environment
from the settings. The entry modules in ``functions/`` only call these and run their handlers; tests build the
same graphs with fakes in place of the adapters (each builder takes the ports it would otherwise make).

- ``management_api``: ApiFunction's resolver and core services (``compose_management`` over given ports);
- ``call_path``: the phone functions' router and call lifecycle (SipMediaAppFunction, InboundFunction).

The few decisions every function shares are made here once: the Millis region warning, the session webhook
(``session_webhook``), the keys secret."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from millis_sip import snapstart
from millis_sip.adapters import threads
from millis_sip.adapters.dynamodb.clients import API_CONFIG, PHONE_CONFIG, dynamodb_client
from millis_sip.adapters.dynamodb.store import DynamoCallStore, DynamoNumberRoutes
from millis_sip.adapters.millis_http import HttpMillisGateway
from millis_sip.adapters.secrets import keys_secret_source, webhook_secret_source
from millis_sip.config import OutboundSettings, Settings
from millis_sip.core.clock import SystemClock
from millis_sip.core.keys import StackKeys
from millis_sip.core.lifecycle import PhoneCalls, SessionReports
from millis_sip.core.lookup import CallDirectory
from millis_sip.core.numbers import OUTBOUND_CARRIERS, CachedNumberRoutes, NumberDirectory
from millis_sip.core.outbound import OutboundAnswers, OutboundCalls, OutboundPolicy
from millis_sip.core.ports import CallStore, Clock, Dialer, MillisGateway, NumberRoutes, OutboundStore, Secret
from millis_sip.core.registration import MillisRegistrations, Registrar, SessionWebhook
from millis_sip.core.router import CallRouter
from millis_sip.core.transfer import CallTransfers, Transferer, TransferPolicy, TransferReports, TransferStore
from millis_sip.observability import emf_metrics, logger

if TYPE_CHECKING:
    from millis_sip.edges.http.app import ManagementServices
    from millis_sip.edges.http.idempotency import Idempotency
    from millis_sip.edges.http.resolver import BridgeResolver


def session_webhook(settings: Settings) -> SessionWebhook | None:
    """Millis' session webhook on every registration, unless SESSION_WEBHOOK is disabled: to WEBHOOK_URL, or,
    where that is empty, to the URL the request that registers came in on (only ApiFunction has one: the phone
    functions are deployed with WEBHOOK_URL set, and without it their registrations carry no webhook)."""
    return SessionWebhook(settings.webhook_url) if settings.session_webhook else None


def _warn_about_region(settings: Settings) -> None:
    if settings.millis_region.warning:
        logger.warning(settings.millis_region.warning)


# --- ApiFunction ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Api:
    app: BridgeResolver
    services: ManagementServices
    settings: Settings
    gateway: HttpMillisGateway
    store: DynamoCallStore
    idempotency: Idempotency | None
    dynamodb: Any = None
    secrets: Sequence[Secret] = field(default_factory=tuple)  # to read again after a SnapStart restore

    @property
    def hooks(self) -> snapstart.Hooks:
        return snapstart.Hooks(gateway=self.gateway, secrets=self.secrets)


def compose_management(
    settings: Settings,
    *,
    gateway: MillisGateway,
    store: CallStore,
    numbers: NumberRoutes,
    stack_secret: Secret | None,
    idempotency: Idempotency | None,
    keys: StackKeys,
    clock: Clock | None = None,
    outbound: OutboundSettings | None = None,
    dialers: Mapping[str, Dialer] | None = None,
) -> tuple[BridgeResolver, ManagementServices]:
    """The management API over the given ports. ``stack_secret`` opens only the Millis reports of calls
    registered before per-call credentials; ``keys`` (under the keys secret) key the lookup index and derive the
    PINs. A request made with the SIP servers' API key (for GET /route only) is answered 403 before anything
    else runs."""
    from millis_sip.edges.http.app import ManagementServices, create_app

    clock = clock or SystemClock()
    millis = MillisRegistrations(gateway, webhook=session_webhook(settings), metrics=emf_metrics)
    outbound_calls = None
    if outbound is not None:  # the store must then be an OutboundStore (DynamoCallStore, MemoryStore)
        outbound_calls = OutboundCalls(
            millis,
            cast(OutboundStore, store),
            numbers,
            dict(dialers or {}),
            policy=OutboundPolicy(
                allowed_prefixes=outbound.allowed_prefixes,
                calls_per_hour_per_number=outbound.calls_per_hour_per_number,
                calls_per_hour_total=outbound.calls_per_hour,
                max_ringing=outbound.max_ringing,
            ),
            clock=clock,
            ttl_seconds=settings.call_ttl_seconds,
            keys=keys,
            metrics=emf_metrics,
            carriers=OUTBOUND_CARRIERS,
            unconfigured=unconfigured_carriers(outbound),
        )
    transfers = None
    if outbound is not None:  # the carriers whose call control moves a live call (their Transferer)
        transferers = {name: d for name, d in (dialers or {}).items() if callable(getattr(d, "transfer", None))}
        transfers = CallTransfers(
            cast(TransferStore, store),
            cast(Mapping[str, Transferer], transferers),
            numbers=numbers,
            policy=TransferPolicy(outbound.transfer_allowed_targets),
            clock=clock,
            keys=keys,
        )
    services = ManagementServices(
        registrar=Registrar(
            millis,
            store,
            clock=clock,
            ttl_seconds=settings.call_ttl_seconds,
            default_agent_id=settings.default_agent_id,
            keys=keys,
        ),
        directory=CallDirectory(store, clock=clock, ttl_seconds=settings.call_ttl_seconds),
        sessions=SessionReports(store, clock=clock, ttl_seconds=settings.call_ttl_seconds, stack_secret=stack_secret),
        numbers=NumberDirectory(numbers, clock=clock),
        http_deadline=settings.http_deadline,
        outbound=outbound_calls,
        transfers=transfers,
        public_base_url=outbound.public_base_url if outbound is not None else None,
    )
    app = create_app(services, idempotency=idempotency, refused_api_key_ids=[settings.sip_server_api_key_id or ""])
    return app, services


def management_api(settings: Settings, *, millis_key: Callable[[], str] | None = None) -> Api:
    """ApiFunction's graph over the AWS adapters (``millis_key``: the Millis key's source, instead of the one the
    settings name)."""
    from millis_sip.edges.http.idempotency import Idempotency

    _warn_about_region(settings)
    dynamodb = dynamodb_client(API_CONFIG)
    gateway = HttpMillisGateway.from_settings(settings, api_key=millis_key)
    stack_secret = webhook_secret_source(settings.webhook_secret_arn, settings.secret_max_age)
    keys_secret = keys_secret_source(settings.keys_secret_arn, settings.secret_max_age)
    keys = StackKeys(keys_secret)
    idempotency = (
        Idempotency(settings.idempotency_table_name, client=dynamodb, ttl_seconds=settings.idempotency_ttl_seconds)
        if settings.idempotency_table_name
        else None
    )
    store = DynamoCallStore(dynamodb, settings.calls_table_name, keys=keys)
    outbound = OutboundSettings.from_env()
    dialers, carrier_secrets = outbound_dialers(outbound, settings.secret_max_age)
    app, services = compose_management(
        settings,
        gateway=gateway,
        store=store,
        numbers=DynamoNumberRoutes(dynamodb, settings.numbers_table_name),
        stack_secret=stack_secret,
        idempotency=idempotency,
        keys=keys,
        outbound=outbound,
        dialers=dialers,
    )
    secrets = tuple(s for s in (stack_secret, keys_secret, *carrier_secrets) if s is not None)
    return Api(app, services, settings, gateway, store, idempotency, dynamodb, secrets)


# --- outbound calls ---------------------------------------------------------------------------------------


def unconfigured_carriers(outbound: OutboundSettings) -> dict[str, str]:
    """What each carrier without a call-control client is refused with: what to configure for it."""
    twilio = (
        "Outbound calls through Twilio need the account: set TwilioAccountSid beside TwilioAuthTokenSecretArn "
        "(TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN locally)."
    )
    plivo = (
        "Outbound calls through Plivo need the account: set PlivoAuthId beside PlivoAuthTokenSecretArn "
        "(PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN locally)."
    )
    telnyx = (
        "Outbound calls through Telnyx need the account: set TelnyxApiKeySecretArn, TelnyxAccountSid and "
        "TelnyxApplicationId (TELNYX_API_KEY, TELNYX_ACCOUNT_SID and TELNYX_APPLICATION_ID locally)."
    )
    vonage = (
        "Outbound calls through Vonage need the application: set VonagePrivateKeySecretArn beside "
        "VonageApplicationId (VONAGE_PRIVATE_KEY and VONAGE_APPLICATION_ID locally)."
    )
    chime = (
        "Outbound calls through Chime need the stack's SIP media application: deploy with ChimeMode create, or "
        "existing with SipMediaApplicationArn (CHIME_SIP_MEDIA_APPLICATION_ID locally)."
    )
    signalwire = (
        "Outbound calls through SignalWire need the project: set SignalWireSpaceUrl, SignalWireProjectId and "
        "SignalWireApiTokenSecretArn (SIGNALWIRE_SPACE_URL, SIGNALWIRE_PROJECT_ID and SIGNALWIRE_API_TOKEN locally)."
    )
    return {
        "twilio": twilio,
        "plivo": plivo,
        "telnyx": telnyx,
        "vonage": vonage,
        "chime": chime,
        "signalwire": signalwire,
    }


def outbound_dialers(outbound: OutboundSettings, max_age: int) -> tuple[dict[str, Dialer], list[Secret]]:
    """The carriers' call-control clients whose accounts are configured (and their secrets, for SnapStart).
    Imported here, on ApiFunction's first build only: the phone functions never load them."""
    from millis_sip.adapters.call_control import chime, http, plivo, telnyx, twilio, vonage
    from millis_sip.adapters.secrets import carrier_credential_source

    dialers: dict[str, Dialer] = {}
    secrets: list[Secret] = []
    clients: list[Any] = []  # one pooled httpx client, made for the first carrier configured

    def api(carrier: str, describe: Callable[[Any], tuple[str | None, str | None]], secret: Secret) -> Any:
        """The carrier's REST API over the shared client; its secret kept for SnapStart."""
        clients[:] = clients or [http.new_client()]
        secrets.append(secret)
        return http.CarrierApi(carrier, clients[0], describe=describe)

    twilio_token = carrier_credential_source(outbound.twilio_auth_token_secret_arn, "TWILIO_AUTH_TOKEN", max_age)
    if outbound.twilio_account_sid and twilio_token is not None:
        dialers["twilio"] = twilio.TwilioCalls(
            api("twilio", twilio.describe, twilio_token),
            account_sid=outbound.twilio_account_sid,
            secret=twilio_token,
            base_url=outbound.twilio_api_url,
        )
    plivo_token = carrier_credential_source(outbound.plivo_auth_token_secret_arn, "PLIVO_AUTH_TOKEN", max_age)
    if outbound.plivo_auth_id and plivo_token is not None:
        dialers["plivo"] = plivo.PlivoCalls(
            api("plivo", plivo.describe, plivo_token),
            auth_id=outbound.plivo_auth_id,
            secret=plivo_token,
            base_url=outbound.plivo_api_url,
        )
    telnyx_key = carrier_credential_source(outbound.telnyx_api_key_secret_arn, "TELNYX_API_KEY", max_age)
    if outbound.telnyx_account_sid and outbound.telnyx_application_id and telnyx_key is not None:
        dialers["telnyx"] = telnyx.TelnyxCalls(
            api("telnyx", telnyx.describe, telnyx_key),
            account_sid=outbound.telnyx_account_sid,
            application_id=outbound.telnyx_application_id,
            secret=telnyx_key,
            base_url=outbound.telnyx_api_url,
        )
    vonage_key = carrier_credential_source(outbound.vonage_private_key_secret_arn, "VONAGE_PRIVATE_KEY", max_age)
    if outbound.vonage_application_id and vonage_key is not None:
        dialers["vonage"] = vonage.VonageCalls(
            api("vonage", vonage.describe, vonage_key),
            application_id=outbound.vonage_application_id,
            private_key=vonage_key,
            base_url=outbound.vonage_api_url,
        )
    signalwire_token = carrier_credential_source(
        outbound.signalwire_api_token_secret_arn, "SIGNALWIRE_API_TOKEN", max_age
    )
    if outbound.signalwire_space_url and outbound.signalwire_project_id and signalwire_token is not None:
        dialers["signalwire"] = twilio.TwilioCalls(  # the Compatibility API: Twilio's Calls resource at the space
            api("signalwire", twilio.describe, signalwire_token),
            account_sid=outbound.signalwire_project_id,
            secret=signalwire_token,
            base_url=f"{outbound.signalwire_space_url}/api/laml/2010-04-01",
        )
    if outbound.chime_sip_media_application_id:  # its client is made on the first call placed
        dialers["chime"] = chime.ChimeCalls(outbound.chime_sip_media_application_id, chime.chime_voice_client)
    return dialers, secrets


# --- the phone functions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallPath:
    settings: Settings
    clock: SystemClock
    router: CallRouter
    calls: PhoneCalls
    gateway: HttpMillisGateway
    store: DynamoCallStore
    dynamodb: Any
    keys: StackKeys  # under the keys secret: the edges' action tokens
    secrets: list[Secret]  # to read again after a SnapStart restore
    outbound: OutboundAnswers  # outbound calls answered and reported at the carriers' edges
    transfers: TransferReports  # transfer legs reported at the carriers' edges
    refers: CallTransfers  # transfers the agent's leg asks for with SIP REFER (carried out by the phone system)

    def hooks(self, *more: Secret | None) -> snapstart.Hooks:
        """What a SnapStart restore renews: the Millis client, these secrets and ``more`` (an edge's own)."""
        return snapstart.Hooks(gateway=self.gateway, secrets=[*self.secrets, *(s for s in more if s is not None)])


def call_path(settings: Settings, *, transfer_targets: tuple[str, ...] = ()) -> CallPath:
    """The phone path's use cases; ``transfer_targets``: where a REFER may send a call (none: nowhere)."""
    _warn_about_region(settings)
    clock = SystemClock()
    gateway = HttpMillisGateway.from_settings(settings)
    dynamodb = dynamodb_client(PHONE_CONFIG)
    secret = keys_secret_source(settings.keys_secret_arn, settings.secret_max_age)
    keys = StackKeys(secret)
    store = DynamoCallStore(dynamodb, settings.calls_table_name, keys=keys)
    numbers = CachedNumberRoutes(DynamoNumberRoutes(dynamodb, settings.numbers_table_name), clock=clock)
    router = CallRouter(
        MillisRegistrations(gateway, webhook=session_webhook(settings), metrics=emf_metrics),
        store,
        numbers,
        clock=clock,
        region_order=settings.millis_region.order,
        ttl_seconds=settings.call_ttl_seconds,
        default_agent_id=settings.default_agent_id,
        default_agent_calls_per_hour=settings.default_agent_calls_per_hour,
        default_agent_calls_per_hour_total=settings.default_agent_calls_per_hour_total,
        keys=keys,
        metrics=emf_metrics,
        parallel=threads.parallel,
    )
    calls = PhoneCalls(
        store, clock=clock, ttl_seconds=settings.call_ttl_seconds, metrics=emf_metrics, parallel=threads.parallel
    )
    outbound = OutboundAnswers(
        store, clock=clock, ttl_seconds=settings.call_ttl_seconds, metrics=emf_metrics, parallel=threads.parallel
    )
    transfers = TransferReports(store, clock=clock, parallel=threads.parallel)
    refers = CallTransfers(
        cast(TransferStore, store),
        {},
        numbers=numbers,
        policy=TransferPolicy(transfer_targets),
        clock=clock,
        keys=keys,
    )
    secrets: list[Secret] = [secret] if secret else []
    return CallPath(
        settings, clock, router, calls, gateway, store, dynamodb, keys, secrets, outbound, transfers, refers
    )


# --- EventsFunction -------------------------------------------------------------------------------------


def call_events(bus: Any = None) -> Any:
    """EventsFunction's publisher (docs/events.md): the calls table's stream records to events on EVENT_BUS_NAME,
    phone numbers masked unless EVENTS_PHONE_NUMBERS is ``full``. ``bus``: an EventBridge client (or the local
    stand-in); by default botocore's, from the environment."""
    from botocore.config import Config

    from millis_sip.adapters import aws
    from millis_sip.core.errors import ConfigurationError
    from millis_sip.edges.events.changes import CallChanges
    from millis_sip.edges.events.publisher import EventPublisher
    from millis_sip.environment import Env
    from millis_sip.observability import count_call_event, mask_phone_numbers

    env = Env()
    bus_name = env.text("EVENT_BUS_NAME")
    if not bus_name:
        raise ConfigurationError("EVENT_BUS_NAME is not set")
    numbers = env.text("EVENTS_PHONE_NUMBERS", "masked").lower()
    if numbers not in ("masked", "full"):
        raise ConfigurationError(f"EVENTS_PHONE_NUMBERS={numbers!r}: use masked or full")
    if bus is None:
        config = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=5)
        bus = aws.client("events", config)
    changes = CallChanges(number=mask_phone_numbers if numbers == "masked" else str)
    return EventPublisher(bus, bus_name=bus_name, changes=changes, counted=count_call_event)

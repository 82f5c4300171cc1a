"""Domain exceptions. Each carries a stable ``code`` (the JSON error code and the metric dimension)
and a ``message`` that is safe to show a caller: no secret ever goes into one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class BridgeError(Exception):
    """Base of every error this package raises on purpose."""

    code = "bridge_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(BridgeError):
    """The function's environment is wrong; raised once, at start-up."""

    code = "configuration_error"


# --- Millis -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try against one Millis region, for logs, metrics and error bodies."""

    region: str
    outcome: str  # "ok", "timeout", "connect_error", "http_503", ...
    elapsed_ms: float


class MillisError(BridgeError):
    code = "millis_error"

    def __init__(self, message: str, attempts: Sequence[Attempt] = ()) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)


class MillisUnavailable(MillisError):
    """Every region tried failed with a retryable error (connection, timeout, 5xx, 429)
    or the deadline left no time to try."""

    code = "millis_unavailable"

    def __init__(
        self, message: str, attempts: Sequence[Attempt] = (), *, rate_limited: bool = False, retry_after: int = 2
    ) -> None:
        super().__init__(message, attempts)
        self.rate_limited = rate_limited
        self.retry_after = retry_after


class MillisAuthError(MillisError):
    """Millis answered 401/403: the private key is wrong, revoked or the public key."""

    code = "millis_key_rejected"


class MillisRejectedRequest(MillisError):
    """Millis refused the request itself (unknown agent, invalid body): the caller must change it."""

    code = "millis_rejected_request"

    def __init__(self, message: str, *, status: int, detail: object, attempts: Sequence[Attempt] = ()) -> None:
        super().__init__(message, attempts)
        self.status = status
        self.detail = detail


class MillisBadResponse(MillisError):
    """Millis answered 2xx with something that is not a usable registration."""

    code = "millis_bad_response"


class MillisKeyUnavailable(MillisError):
    """The private key could not be read (Secrets Manager down, access denied, not set yet)."""

    code = "millis_key_unavailable"


# --- storage and calls ------------------------------------------------------------------------


class StoreUnavailable(BridgeError):
    """DynamoDB could not be reached or refused the operation after the SDK's retries."""

    code = "store_unavailable"


class WebhookUnauthorized(BridgeError):
    """A session report without the credential of the call it reports on."""

    code = "unauthorized"


class LeaseLost(BridgeError):
    """This invocation outlived its lease on a phone call and a retry took the call over: nothing was written."""

    code = "lease_lost"


class CallAlreadyExists(BridgeError):
    """A conditional put found an item with the same call_id: nothing was overwritten."""

    code = "call_already_exists"


class CallNotFound(BridgeError):
    code = "call_not_found"


class InvalidRequest(BridgeError):
    """The request is well-formed but cannot be served as it stands (e.g. no agent to use)."""

    code = "invalid_request"


class Unroutable(BridgeError):
    """The call's SIP URI cannot go the way this edge sends calls (e.g. through a Voice Connector)."""

    code = "uri_not_routable"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeysSecretUnavailable(BridgeError):
    """The keys secret could not be read: no lookup index key, PIN or action token can be made now."""

    code = "keys_secret_unavailable"


class WebhookSecretUnavailable(BridgeError):
    """The webhook secret could not be read: the webhook cannot be authenticated now."""

    code = "webhook_secret_unavailable"


class CredentialUnavailable(BridgeError):
    """A carrier's credential (auth token, public key, signature secret) could not be read: its webhooks cannot
    be authenticated now."""

    code = "credential_unavailable"


# --- outbound calls (docs/outbound.md) -----------------------------------------------------------------


class OutboundRefused(BridgeError):
    """An outbound call the stack will not place: nothing was sent to Millis or to the carrier."""

    code = "outbound_refused"


class OutboundDisabled(OutboundRefused):
    """No destination is allowed (OUTBOUND_ALLOWED_PREFIXES is empty): outbound calls are off."""

    code = "outbound_disabled"


class DestinationNotAllowed(OutboundRefused):
    """``to`` does not start with any of the allowed prefixes."""

    code = "destination_not_allowed"


class FromNotAllowed(OutboundRefused):
    """``from`` is not a number the user declared outbound-capable for that carrier (its number route)."""

    code = "from_not_allowed"


class MachineDetectionUnavailable(OutboundRefused):
    """``machine_detection`` asked of a carrier that cannot tell a person from a machine."""

    code = "machine_detection_unavailable"


class CarrierNotConfigured(OutboundRefused):
    """The carrier's call-control credentials are not configured."""

    code = "carrier_not_configured"


class OverOutboundCap(OutboundRefused):
    """An hourly cap or the cap on calls ringing at once is reached."""

    code = "over_outbound_cap"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CarrierError(BridgeError):
    """The carrier's call-control API did not place (or cancel) the call. ``carrier_code`` and ``carrier_message``
    are what the carrier answered (its error code and text: never a credential), for the error body."""

    code = "carrier_error"

    def __init__(self, message: str, *, carrier_status: int | None = None, carrier_code: str | None = None) -> None:
        super().__init__(message)
        self.carrier_status = carrier_status
        self.carrier_code = carrier_code


class CarrierRefusedCall(CarrierError):
    """The carrier refused this call (a number it will not dial, a from number not on the account, ...)."""

    code = "carrier_refused_call"


class CarrierCredentialsRejected(CarrierError):
    """The carrier rejected the stack's credentials (401/403): the stored secret is wrong."""

    code = "carrier_credentials_rejected"


class CarrierUnavailable(CarrierError):
    """The carrier answered 429 or 5xx (after one retry), or did not answer in time."""

    code = "carrier_unavailable"

    def __init__(
        self,
        message: str,
        *,
        carrier_status: int | None = None,
        carrier_code: str | None = None,
        retry_after: int = 2,
        maybe_placed: bool = False,
    ) -> None:
        super().__init__(message, carrier_status=carrier_status, carrier_code=carrier_code)
        self.retry_after = retry_after
        # The request may have reached the carrier (a read timed out): the call may ring after all.
        self.maybe_placed = maybe_placed


class CallNotTransferable(BridgeError):
    """Only a call connected to its agent (through a carrier that can move it) can be transferred."""

    code = "call_not_transferable"


class TransferInProgress(BridgeError):
    """The call has a transfer under way: one at a time."""

    code = "transfer_in_progress"


class TransferTargetNotAllowed(BridgeError):
    """The target is not among the allowed transfer targets (TRANSFER_ALLOWED_TARGETS)."""

    code = "transfer_target_not_allowed"


class TransferUnavailable(BridgeError):
    """The call's carrier cannot transfer calls through the stack (yet), or its account is not configured."""

    code = "transfer_unavailable"


class CallNotCancelable(BridgeError):
    """Only an outbound call not answered yet can be canceled."""

    code = "call_not_cancelable"

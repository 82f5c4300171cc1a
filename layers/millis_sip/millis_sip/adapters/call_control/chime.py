"""Amazon Chime SDK PSTN audio: ``CreateSipMediaApplicationCall`` places a call from a phone number of the account
through the stack's SIP media application, which then gets ``NEW_OUTBOUND_CALL``, ``RINGING`` and
``CALL_ANSWERED`` and bridges the person to Millis through the Voice Connector, as it bridges inbound calls
(edges/chime/outbound.py). ``UpdateSipMediaApplicationCall`` asks it to hang up a call not answered yet (it gets
``CALL_UPDATE_REQUESTED``), or to transfer a live call (``transfer``: the application hangs up the Millis leg
and bridges the caller to the target, edges/chime/transfer.py). The parameters are validated against botocore's
model of ``chime-sdk-voice`` in the tests (``Stubber``). The client is made on the first call placed, never at
the function's start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from millis_sip.core.errors import (
    CallNotTransferable,
    CarrierCredentialsRejected,
    CarrierError,
    CarrierRefusedCall,
    CarrierUnavailable,
)
from millis_sip.core.ports import PlaceCall, Placed
from millis_sip.core.transfer import TransferMode, TransferPlan, TransferRequest

CALL_ARGUMENT = "millis_call_id"  # the ArgumentsMap key the SIP media application finds its record by
ACTION_ARGUMENT, CANCEL = "millis_action", "cancel"  # UpdateSipMediaApplicationCall's Arguments
# A transfer's Arguments (edges/chime/transfer.py reads the same names; at most 20 pairs, strings)
TRANSFER, TRANSFER_TO, TRANSFER_ANNOUNCE, TRANSFER_CALLER_ID = "transfer", "transfer_to", "announce", "caller_id"
SIP_TARGETS_REFUSED = (
    "Chime reaches a SIP URI only through a Voice Connector, whose origination routes fix the host (the stack's "
    "route to Millis): a call through Chime can be transferred to a phone number (E.164) only."
)
WARM_REFUSED = (
    "Chime's CallAndBridge joins the caller the moment the person answers, with no way to speak to the new leg "
    "first: a call through Chime can be transferred cold only (announce still speaks to the caller)."
)
_REJECTED = {"ForbiddenException", "UnauthorizedClientException", "AccessDeniedException"}
_UNAVAILABLE = {"ThrottledClientException", "ServiceUnavailableException", "ServiceFailureException"}


def chime_voice_client(region: str | None = None) -> Any:
    """A chime-sdk-voice client with the stack's deadlines: botocore's standard retry mode, two tries in all."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
    return boto3.client("chime-sdk-voice", region_name=region, config=config)


class ChimeCalls:
    """The Dialer port over the Chime SDK's SIP media application calls."""

    carrier = "chime"
    detects_machines = False  # the PSTN audio service has no answering-machine detection

    def __init__(self, sip_media_application_id: str, client: Callable[[], Any]) -> None:
        self._application = sip_media_application_id
        self._client_factory = client
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def place(self, call: PlaceCall, *, budget: float) -> Placed:
        answer = self._send(
            "create_sip_media_application_call",
            FromPhoneNumber=call.from_,
            ToPhoneNumber=call.to,
            SipMediaApplicationId=self._application,
            ArgumentsMap={CALL_ARGUMENT: call.call_id},
        )
        transaction = (answer.get("SipMediaApplicationCall") or {}).get("TransactionId")
        if not transaction:
            raise CarrierUnavailable("chime accepted the call but named no TransactionId.", maybe_placed=True)
        return Placed(str(transaction))

    def cancel(self, carrier_call_id: str, *, budget: float) -> None:
        """The SIP media application hangs the call up on CALL_UPDATE_REQUESTED; a transaction that is over is
        NotFoundException, which is nothing to do here."""
        try:
            self._send(
                "update_sip_media_application_call",
                SipMediaApplicationId=self._application,
                TransactionId=carrier_call_id,
                Arguments={ACTION_ARGUMENT: CANCEL},
            )
        except CarrierRefusedCall as exc:
            if exc.carrier_code != "NotFoundException":
                raise

    # --- transfers (docs/transfers.md, "What happens at Chime") --------------------------------------------

    def refusal(self, request: TransferRequest) -> str | None:
        """Chime's CallAndBridge dials the PSTN or a Voice Connector, and cannot whisper before it bridges."""
        if not request.to.startswith("+"):
            return SIP_TARGETS_REFUSED
        if request.mode is TransferMode.WARM:
            return WARM_REFUSED
        return None

    def transfer(self, plan: TransferPlan, *, budget: float) -> None:
        """Ask the SIP media application to move the call (``CALL_UPDATE_REQUESTED``): it hangs up the Millis leg,
        speaks ``announce`` to the caller and bridges the caller to the target (CallAndBridge, PSTN); the
        bridge's ACTION_SUCCESSFUL or ACTION_FAILED closes the record's transfer. The TransactionId is the call's
        (an inbound call's, kept as the record's ``transaction_id``; an outbound call's, its ``carrier_call_id``).
        A transaction that is over is NotFoundException: the call is no longer there to move (409)."""
        arguments = {ACTION_ARGUMENT: TRANSFER, CALL_ARGUMENT: plan.call_id, TRANSFER_TO: plan.to}
        if plan.announce:
            arguments[TRANSFER_ANNOUNCE] = plan.announce
        if plan.caller_id:
            arguments[TRANSFER_CALLER_ID] = plan.caller_id
        try:
            self._send(
                "update_sip_media_application_call",
                SipMediaApplicationId=self._application,
                TransactionId=plan.carrier_call_id,
                Arguments=arguments,
            )
        except CarrierRefusedCall as exc:
            if exc.carrier_code == "NotFoundException":
                gone = f"Call {plan.call_id} is over at Chime: it can no longer be transferred."
                raise CallNotTransferable(gone) from None
            raise

    def _send(self, operation: str, **parameters: Any) -> Any:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
        )

        try:
            return getattr(self.client, operation)(**parameters)
        except ClientError as exc:
            raise _carrier_error(exc) from None
        except (EndpointConnectionError, ConnectTimeoutError):
            raise CarrierUnavailable("Amazon Chime could not be reached.") from None
        except BotoCoreError as exc:  # a read that timed out: the request may have been acted on
            raise CarrierUnavailable(
                f"Amazon Chime did not answer in time ({type(exc).__name__}).", maybe_placed=True
            ) from None


def _carrier_error(exc: Any) -> CarrierError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    said = f"Amazon Chime answered {code or 'an error'}" + (f": {error.get('Message')}" if error.get("Message") else "")
    if code in _REJECTED:
        return CarrierCredentialsRejected(
            f"{said}; check ApiFunction's permission on the SIP media application.",
            carrier_status=status,
            carrier_code=code,
        )
    if code in _UNAVAILABLE:
        return CarrierUnavailable(f"{said}; retry later.", carrier_status=status, carrier_code=code)
    return CarrierRefusedCall(f"{said}.", carrier_status=status, carrier_code=code)

"""Telnyx's TeXML Calls API: initiate a call whose ``Url`` is the stack's answer URL, with status callbacks and,
when asked, Telnyx's answering-machine detection; end one that has not been answered. Each request is compared
in the tests with the request Telnyx's own SDK (``telnyx``, generated from Telnyx's OpenAPI description) sends
for the same operation. docs/outbound.md names each field and its source."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from millis_sip.adapters.call_control.http import CarrierApi, first_line
from millis_sip.adapters.call_control.twilio import transfer_twiml
from millis_sip.core.errors import CarrierError
from millis_sip.core.ports import PlaceCall, Placed
from millis_sip.core.transfer import TransferPlan

TELNYX_API = "https://api.telnyx.com/v2"
# StatusCallbackEvent: "The call events for which Telnyx should send a webhook. Multiple events can be defined
# when separated by a space" (initiated, ringing, answered, completed).
STATUS_EVENTS = "initiated ringing answered completed"
# machine_detection -> Telnyx's MachineDetection (Enable, Disable, DetectMessageEnd), synchronous: the results
# come as AnsweredBy with the status callback, and its answer is the TeXML the call goes on with
# (developers.telnyx.com/docs/voice/programmable-voice/texml-answering-machine).
MACHINE_DETECTION = {"hangup": "Enable", "message": "DetectMessageEnd"}


def describe(body: Any) -> tuple[str | None, str | None]:
    """Telnyx's error body: {"errors": [{"code": "10006", "title": "...", "detail": "..."}]}."""
    errors = body.get("errors") if isinstance(body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code, detail = first.get("code"), first.get("detail") or first.get("title")
    return (str(code)[:40] if code not in (None, "") else None), (str(detail)[:300] if detail else None)


class TelnyxCalls:
    """The Dialer port over Telnyx's TeXML REST API (Bearer: an API key of the account), placing calls through
    one TeXML application (its ``ApplicationSid``)."""

    detects_machines = True

    def __init__(
        self,
        api: CarrierApi,
        *,
        account_sid: str,
        application_id: str,
        secret: Callable[[], str],
        base_url: str = TELNYX_API,
    ) -> None:
        self._api = api
        self._calls = f"{base_url.rstrip('/')}/texml/Accounts/{account_sid}/Calls"
        self._application = application_id
        self._secret = secret  # the API key, read when a request is made
        self.carrier = api.carrier

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {first_line(self._secret())}", "Accept": "application/json"}

    def place(self, call: PlaceCall, *, budget: float) -> Placed:
        """Telnyx's answer names no call id ({"from", "to", "status"}): the call's CallSid comes with its first
        status callback (``initiated``), which stores it."""
        body: dict[str, Any] = {
            "ApplicationSid": self._application,
            "To": call.to,
            "From": call.from_,
            "Url": call.answer_url,
            "UrlMethod": "POST",
            "StatusCallback": call.status_url,
            "StatusCallbackMethod": "POST",
            "StatusCallbackEvent": STATUS_EVENTS,
            "Timeout": call.ring_timeout_seconds,
        }
        if call.machine_detection in MACHINE_DETECTION:
            body["MachineDetection"] = MACHINE_DETECTION[call.machine_detection]
        self._api.send("POST", self._calls, budget=budget, headers=self._headers, json_body=body)
        return Placed(None)

    def cancel(self, carrier_call_id: str, *, budget: float) -> None:
        """``Status=completed`` ends the call ("Setting the status to completed ends the call"); a call that is
        over already answers 404 or 422, which is nothing to do here."""
        try:
            self._api.send(
                "POST",
                f"{self._calls}/{carrier_call_id}",
                budget=budget,
                headers=self._headers,
                json_body={"Status": "completed"},
            )
        except CarrierError as exc:
            if exc.carrier_status not in (404, 422):
                raise

    # --- transfers (docs/transfers.md) -----------------------------------------------------------------

    def transfer(self, plan: TransferPlan, *, budget: float) -> None:
        """Move the caller's leg: the TeXML call is updated with new TeXML (``Texml``: "TeXML to replace the
        current one with"), the same TwiML dialect Twilio takes."""
        self._api.send(
            "POST",
            f"{self._calls}/{plan.carrier_call_id}",
            budget=budget,
            headers=self._headers,
            json_body={"Texml": transfer_twiml(plan)},
        )

"""Plivo's Call API: make a call whose ``answer_url`` is the stack's answer URL, its ``ring_url`` and
``hangup_url`` the status URL, with Plivo's machine detection when asked; cancel one not answered yet; transfer
a live call (its A leg) to the stack's transfer answer URL (docs/transfers.md). Each
request is compared in the tests with the request Plivo's own SDK (``plivo``) sends for the same operation.
docs/outbound.md names each field and its source."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from millis_sip.adapters.call_control.http import CarrierApi, first_line, text_of
from millis_sip.core.errors import CarrierError, CarrierUnavailable
from millis_sip.core.ports import PlaceCall, Placed
from millis_sip.core.transfer import TransferPlan

PLIVO_API = "https://api.plivo.com/v1/Account"
# machine_detection -> Plivo's: "hangup" ends the call when a machine answers (the hangup URL's request carries
# Machine=true); "true" reports it in the answer URL's request (Machine=true) and the call goes on, so the agent
# can leave a message. No machine_detection_url: Plivo's detection then runs before the answer URL is requested,
# as Twilio's MachineDetection does, so the answer already says who picked up.
MACHINE_DETECTION = {"hangup": "hangup", "message": "true"}


def describe(body: Any) -> tuple[str | None, str | None]:
    """Plivo's error body: {"api_id": "...", "error": "..."} (the error is text, sometimes an object)."""
    return None, text_of(body, "error", "message")


def plivo_number(number: str) -> str:
    """Plivo writes numbers with the country code and no + (15055550100)."""
    return number.removeprefix("+")


class PlivoCalls:
    """The Dialer port over Plivo's REST API (Basic auth: the account's Auth ID and Auth Token)."""

    detects_machines = True

    def __init__(self, api: CarrierApi, *, auth_id: str, secret: Callable[[], str], base_url: str = PLIVO_API) -> None:
        self._api = api
        self._account = f"{base_url.rstrip('/')}/{auth_id}"
        self._auth_id = auth_id
        self._secret = secret  # the auth token, read when a request is made
        self.carrier = api.carrier

    @property
    def _auth(self) -> tuple[str, str]:
        return self._auth_id, first_line(self._secret())

    def place(self, call: PlaceCall, *, budget: float) -> Placed:
        body: dict[str, Any] = {
            "from": plivo_number(call.from_),
            "to": plivo_number(call.to),
            "answer_url": call.answer_url,
            "answer_method": "POST",
            "ring_url": call.status_url,
            "ring_method": "POST",
            "hangup_url": call.status_url,
            "hangup_method": "POST",
            "ring_timeout": call.ring_timeout_seconds,
        }
        if call.machine_detection in MACHINE_DETECTION:
            body["machine_detection"] = MACHINE_DETECTION[call.machine_detection]
        answer = self._api.send("POST", f"{self._account}/Call/", budget=budget, auth=self._auth, json_body=body)
        request_uuid = text_of(answer, "request_uuid")
        if request_uuid is None:
            raise CarrierUnavailable("plivo accepted the call but its answer named no request_uuid.", maybe_placed=True)
        return Placed(request_uuid)

    def cancel(self, carrier_call_id: str, *, budget: float) -> None:
        """A call Plivo has not connected yet is canceled by its request_uuid; 404 means it is not queued or
        ringing any more (answered, or over), which is the caller's to sort out from the record."""
        try:
            self._api.send("DELETE", f"{self._account}/Request/{carrier_call_id}/", budget=budget, auth=self._auth)
        except CarrierError as exc:
            if exc.carrier_status != 404:
                raise

    def transfer(self, plan: TransferPlan, *, budget: float) -> None:
        """Move the caller's leg (the A leg: Plivo's CallUUID) to the stack's transfer answer URL, whose Plivo XML
        ends its <Dial> to Millis and dials the target (plivo.com/docs/voice/api/call/transfer-a-call)."""
        self._api.send(
            "POST",
            f"{self._account}/Call/{plan.carrier_call_id}/",
            budget=budget,
            auth=self._auth,
            json_body={"legs": "aleg", "aleg_url": plan.answer_url, "aleg_method": "POST"},
        )

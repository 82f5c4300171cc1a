"""Vonage's Voice API: create a call whose ``answer_url`` is the stack's answer URL and ``event_url`` its status
URL, with Vonage's machine detection when asked; hang up one not answered yet. Authenticated with a JWT of the
application, signed RS256 with its private key (``rs256``), made for each request as Vonage's SDKs make it
(``application_id``, ``iat``, ``jti``, ``exp``). The requests are validated against Vonage's own OpenAPI
description of the Voice API in the tests (``tests/contract``). docs/outbound.md names each field and its
source."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from millis_sip.adapters.call_control import rs256
from millis_sip.adapters.call_control.http import CarrierApi, text_of
from millis_sip.core.errors import CarrierCredentialsRejected, CarrierError, CarrierUnavailable
from millis_sip.core.ports import PlaceCall, Placed
from millis_sip.core.transfer import TransferPlan

VONAGE_API = "https://api.nexmo.com"
TOKEN_SECONDS = 900  # the exp of each request's JWT (Vonage's SDKs use 15 minutes)
# machine_detection -> Vonage's: "hangup" ends the call when a machine answers; "continue" sends the event
# ``machine`` to event_url and the call goes on (the agent leaves a message).
MACHINE_DETECTION = {"hangup": "hangup", "message": "continue"}


def describe(body: Any) -> tuple[str | None, str | None]:
    """Vonage's error body (RFC 7807): {"type": "https://...", "title": "...", "detail": "...", ...}."""
    kind = text_of(body, "type")
    return (kind.rsplit("#", 1)[-1].rsplit("/", 1)[-1] if kind else None), text_of(body, "detail", "title")


def vonage_number(number: str) -> str:
    """Vonage writes numbers in E.164 without the + (14155550100)."""
    return number.removeprefix("+")


class VonageCalls:
    """The Dialer port over Vonage's Voice API (``Authorization: Bearer`` an application JWT)."""

    detects_machines = True

    def __init__(
        self,
        api: CarrierApi,
        *,
        application_id: str,
        private_key: Callable[[], str],
        base_url: str = VONAGE_API,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = api
        self._calls = f"{base_url.rstrip('/')}/v1/calls"
        self._application = application_id
        self._private_key = private_key  # the application's private key (PEM), read when a request is made
        self._clock = clock
        self.carrier = api.carrier

    def token(self) -> str:
        try:
            key = rs256.load_pem(self._private_key())
        except rs256.UnreadableKey as exc:  # nothing sent; the record closes failed, the caller learns why
            raise CarrierCredentialsRejected(f"The stack cannot use Vonage's private key: {exc}.") from None
        now = int(self._clock())
        claims = {"application_id": self._application, "iat": now, "jti": str(uuid.uuid4()), "exp": now + TOKEN_SECONDS}
        return rs256.jwt(claims, key)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}

    def place(self, call: PlaceCall, *, budget: float) -> Placed:
        body: dict[str, Any] = {
            "to": [{"type": "phone", "number": vonage_number(call.to)}],
            "from": {"type": "phone", "number": vonage_number(call.from_)},
            "answer_url": [call.answer_url],
            "answer_method": "POST",
            "event_url": [call.status_url],
            "event_method": "POST",
            "ringing_timer": call.ring_timeout_seconds,
        }
        if call.machine_detection in MACHINE_DETECTION:
            body["machine_detection"] = MACHINE_DETECTION[call.machine_detection]
        answer = self._api.send("POST", self._calls, budget=budget, headers=self._headers(), json_body=body)
        leg = text_of(answer, "uuid")
        if leg is None:
            raise CarrierUnavailable("vonage accepted the call but its answer named no uuid.", maybe_placed=True)
        return Placed(leg)

    def cancel(self, carrier_call_id: str, *, budget: float) -> None:
        """``{"action": "hangup"}`` ends the call; Vonage answers 404 for one it no longer has (over), which is
        nothing to do here."""
        try:
            self._api.send(
                "PUT",
                f"{self._calls}/{carrier_call_id}",
                budget=budget,
                headers=self._headers(),
                json_body={"action": "hangup"},
            )
        except CarrierError as exc:
            if exc.carrier_status != 404:
                raise

    # --- transfers (docs/transfers.md) -----------------------------------------------------------------

    def transfer(self, plan: TransferPlan, *, budget: float) -> None:
        """Move the caller's leg to a new NCCO (``{"action": "transfer", "destination": {"type": "ncco"}}``): what
        the caller hears first, then a connect to the target whose eventUrl is the stack's transfer status URL;
        warm, the person who answers a phone target first gets the whisper URL's NCCO (``onAnswer``), and a SIP
        target gets the summary as ``X-Transfer-Summary``."""
        self._api.send(
            "PUT",
            f"{self._calls}/{plan.carrier_call_id}",
            budget=budget,
            headers=self._headers(),
            json_body={"action": "transfer", "destination": {"type": "ncco", "ncco": transfer_ncco(plan)}},
        )


def transfer_ncco(plan: TransferPlan) -> list[dict[str, Any]]:
    warm = plan.mode == "warm"
    endpoint: dict[str, Any]
    if plan.to.startswith("+"):
        endpoint = {"type": "phone", "number": vonage_number(plan.to)}
        if warm:
            endpoint["onAnswer"] = {"url": plan.whisper_url}
    else:
        endpoint = {"type": "sip", "uri": plan.to}
        if warm and plan.summary:
            endpoint["headers"] = {"Transfer-Summary": plan.summary[:1000]}  # Vonage adds the X- prefix
    connect: dict[str, Any] = {
        "action": "connect",
        "endpoint": [endpoint],
        "eventUrl": [plan.status_url],
        "eventMethod": "POST",
        "eventType": "synchronous",  # a failed transfer's event answers with what the caller hears
    }
    if plan.caller_id:
        connect["from"] = vonage_number(plan.caller_id)
    ncco: list[dict[str, Any]] = [{"action": "talk", "text": plan.announce}] if plan.announce else []
    return [*ncco, connect]

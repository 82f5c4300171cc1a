"""Twilio's Calls resource (and SignalWire's compatible API, at its own base URL): create a call whose ``Url``
is the stack's answer URL, with status callbacks and, when asked, Twilio's answering-machine detection; cancel
one that has not been answered. The requests are validated against Twilio's own OpenAPI description in the
tests (``tests/contract``). docs/outbound.md names each field and its source."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

from millis_sip.adapters.call_control.http import CarrierApi, first_line, text_of
from millis_sip.core.errors import CarrierError, CarrierUnavailable
from millis_sip.core.ports import PlaceCall, Placed
from millis_sip.core.transfer import TransferPlan

TWILIO_API = "https://api.twilio.com/2010-04-01"
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
# machine_detection -> Twilio's MachineDetection: Enable answers as soon as it knows human or machine (the
# person waits a little longer to hear the agent); DetectMessageEnd waits for a machine's greeting to end.
MACHINE_DETECTION = {"hangup": "Enable", "message": "DetectMessageEnd"}


def describe(body: Any) -> tuple[str | None, str | None]:
    """Twilio's error body: {"code": 21211, "message": "...", "more_info": "...", "status": 400}."""
    return text_of(body, "code"), text_of(body, "message")


class TwilioCalls:
    """The Dialer port over Twilio's REST API, authenticated as the account (its SID and auth token) or with an
    API key (its SID and secret) for that account."""

    detects_machines = True

    def __init__(
        self,
        api: CarrierApi,
        *,
        account_sid: str,
        secret: Callable[[], str],
        username: str | None = None,
        base_url: str = TWILIO_API,
    ) -> None:
        self._api = api
        self._calls = f"{base_url.rstrip('/')}/Accounts/{account_sid}/Calls"
        self._username = username or account_sid  # an API key's SID, or the account's own
        self._secret = secret  # the auth token (or the API key's secret), read when a request is made
        self.carrier = api.carrier

    @property
    def _auth(self) -> tuple[str, str]:
        return self._username, first_line(self._secret())

    def place(self, call: PlaceCall, *, budget: float) -> Placed:
        form: dict[str, str | list[str]] = {
            "To": call.to,
            "From": call.from_,
            "Url": call.answer_url,
            "Method": "POST",
            "StatusCallback": call.status_url,
            "StatusCallbackMethod": "POST",
            "StatusCallbackEvent": list(STATUS_EVENTS),  # repeated, as Twilio's form takes a list
            "Timeout": str(call.ring_timeout_seconds),
        }
        if call.machine_detection in MACHINE_DETECTION:
            form["MachineDetection"] = MACHINE_DETECTION[call.machine_detection]
        body = self._api.send("POST", f"{self._calls}.json", budget=budget, auth=self._auth, data=form)
        sid = text_of(body, "sid")
        if sid is None:
            raise CarrierUnavailable(
                f"{self.carrier} accepted the call but its answer named no sid.", maybe_placed=True
            )
        return Placed(sid)

    def cancel(self, carrier_call_id: str, *, budget: float) -> None:
        """``Status=canceled`` ends a call that is queued or ringing; Twilio answers 400 (21220) for one that is
        over already, which is nothing to do here."""
        try:
            self._api.send(
                "POST",
                f"{self._calls}/{carrier_call_id}.json",
                budget=budget,
                auth=self._auth,
                data={"Status": "canceled"},
            )
        except CarrierError as exc:
            if exc.carrier_code != "21220":  # "Invalid call state for the operation": the call is over already
                raise

    # --- transfers (docs/transfers.md) -----------------------------------------------------------------

    def transfer(self, plan: TransferPlan, *, budget: float) -> None:
        """Move the caller's leg: the call is updated with new TwiML (``Twiml``), which ends its <Dial> to Millis
        and dials the target; the <Dial>'s action reports how the transfer leg went."""
        self._api.send(
            "POST",
            f"{self._calls}/{plan.carrier_call_id}.json",
            budget=budget,
            auth=self._auth,
            data={"Twiml": transfer_twiml(plan)},
        )


MAX_SIP_URI = 255  # Twilio's limit on a <Sip> URI, headers included
TRANSFER_RING_SECONDS = "30"


def transfer_twiml(plan: TransferPlan) -> str:
    """The TwiML of a transfer: what the caller hears first (``announce``), then a <Dial> to the target whose
    action is the stack's transfer status URL; warm, the person who answers first hears the summary (the
    noun's ``url``, the stack's whisper URL) and a SIP target gets it as ``X-Transfer-Summary`` too."""
    root = ET.Element("Response")
    if plan.announce:
        ET.SubElement(root, "Say").text = plan.announce
    dial = ET.SubElement(root, "Dial", {"action": plan.status_url, "method": "POST", "timeout": TRANSFER_RING_SECONDS})
    warm = plan.mode == "warm"
    noun = {"url": plan.whisper_url, "method": "POST"} if warm else {}
    if plan.to.startswith("+"):
        ET.SubElement(dial, "Number", noun).text = plan.to
    else:
        uri = plan.to
        if warm and plan.summary:
            room = MAX_SIP_URI - len(uri) - len("?X-Transfer-Summary=")
            summary = quote(plan.summary, safe="")
            while len(summary) > room and summary:  # cut whole characters, never a %XX in half
                plan_text = unquote(summary)[:-1]
                summary = quote(plan_text, safe="")
            if summary:
                uri = f"{uri}?X-Transfer-Summary={summary}"
        ET.SubElement(dial, "Sip", noun).text = uri
    return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")

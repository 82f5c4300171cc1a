"""Local stand-ins for the carriers' call-control APIs, for `make demo` and the tests. Each accepts the REST request
as its carrier documents it (its authentication, its fields), answers as the carrier answers, then plays the call
the way that carrier reports one: the ringing callback, the answer URL requested when the person answers (signed
as the carrier signs, through dev/carrier_signing.py), the dial's action when the leg to Millis ends, and the
final callback. No SIP is sent: the leg to Millis is reported as the carrier would report it (connected for
``talk_seconds``).

    TwilioStandIn   Twilio's Calls resource (form fields of twilio-oai's CreateCallRequest, X-Twilio-Signature)
    SignalWireStandIn  SignalWire's Compatibility API (Twilio's resource at the space, X-SignalWire-Signature)
    PlivoStandIn    Plivo's Call API (JSON, answer_url / ring_url / hangup_url, X-Plivo-Signature-V3)
    TelnyxStandIn   Telnyx's TeXML Calls API (JSON, Bearer; Url and StatusCallback signed with Ed25519)
    VonageStandIn   Vonage's Voice API (JSON, an RS256 application JWT; answer_url and event_url signed HS256)
    ChimeStandIn    the Chime SDK's SIP media application calls (chime-sdk-voice over REST-JSON, SigV4), which
                    invoke SipMediaAppFunction with the documented events

What the person does depends on the number called (its last four digits):

    ....0000  nobody answers          -> no-answer
    ....1111  busy                    -> busy
    ....2222  a machine answers       -> reported as a machine when detection was asked for, else as a person
    ....3333  rings until canceled    -> canceled through the carrier's cancel request
    anything else: a person answers, the agent talks for ``talk_seconds``, the person hangs up.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode
from xml.etree import ElementTree

import httpx
from nacl.signing import SigningKey

from dev.carrier_signing import plivo_headers, telnyx_headers, twilio_signature, vonage_token


def xml_dial(answer: str, noun: str) -> tuple[str, str] | None:
    """The target of an XML answer's <Dial><noun> (TwiML's Sip, Plivo's User) and its action URL; None: no dial."""
    dial = ElementTree.fromstring(answer).find("Dial")  # noqa: S314 - the local stack's own answer
    target = None if dial is None else dial.find(noun)
    if dial is None or target is None:
        return None
    return target.text or "", dial.attrib["action"]


@dataclass
class PlacedCall:
    sid: str
    request: dict[str, Any]  # the fields the stack placed the call with (a form's values are lists)
    events: list[str] = field(default_factory=list)  # what happened, in order
    canceled: threading.Event = field(default_factory=threading.Event)
    answer: str = ""  # the document the stack answered

    @property
    def to(self) -> str:
        return self.field("To") or self.field("to")

    def field(self, name: str) -> str:
        value = self.request.get(name)
        return str(value[0] if isinstance(value, list) else value or "")


class CallControlStandIn:
    """What every stand-in shares: the HTTP server, the call's script, the record of what was asked and answered."""

    def __init__(self, *, talk_seconds: int = 7, pause: float = 0.05) -> None:
        self.talk_seconds = talk_seconds
        self.pause = pause
        self.calls: dict[str, PlacedCall] = {}
        self.requests: list[tuple[str, str, dict[str, Any]]] = []  # method, path, fields
        self.answers: list[tuple[str, int, str]] = []  # what the stack answered each request the carrier made
        self.redirects: list[tuple[str, str]] = []  # the calls moved to new TwiML (transfers), and the TwiML
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    @property
    def origin(self) -> str:
        if self._server is None:
            raise RuntimeError("not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[Any]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self._answer("POST")

            def do_DELETE(self) -> None:
                self._answer("DELETE")

            def do_PUT(self) -> None:
                self._answer("PUT")

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length).decode()
                fields: dict[str, Any]
                if "json" in (self.headers.get("content-type") or ""):
                    fields = json.loads(raw or "{}")
                else:
                    fields = parse_qs(raw, keep_blank_values=True)
                stand_in.requests.append((method, self.path, fields))
                status, body = stand_in.handle(method, self.path, self.headers.get("authorization", ""), fields)
                payload = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            for played in self._threads:
                played.join(timeout=10)

    def handle(
        self, method: str, path: str, authorization: str, fields: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None]:
        raise NotImplementedError

    def requests_of(self, sid: str) -> dict[str, Any]:
        """The fields the stack placed call ``sid`` with."""
        return self.calls[sid].request

    def _redirect(self, sid: str, twiml: str) -> tuple[int, dict[str, Any]]:
        """Twilio's call update with ``Twiml``: the call's current verb ends and the new TwiML runs (here: the
        <Dial> of a transfer, its noun's ``url`` requested when the target answers, then its action)."""
        call = self.calls.get(sid) or PlacedCall(sid, {"From": "+14155550123", "To": "+15055550100"})
        self.calls[sid] = call
        call.events.append("redirected")
        self.redirects.append((sid, twiml))
        played = threading.Thread(target=self._play_redirect, args=(call, twiml), daemon=True)
        self._threads.append(played)
        played.start()
        return 200, {"sid": sid, "status": "in-progress"}

    def _play_redirect(self, call: PlacedCall, twiml: str) -> None:
        try:
            time.sleep(self.pause)
            dial = ElementTree.fromstring(twiml).find("Dial")  # noqa: S314 - the local stack's own TwiML
            if dial is None:
                return
            noun = next(iter(dial), None)
            target = (noun.text or "").strip() if noun is not None else ""
            params = self._live_params(call)
            if target.split("?")[0].endswith("0000"):
                call.events.append(f"transfer to {target}: no answer")
                self._post(dial.attrib["action"], {**params, "DialCallStatus": "no-answer", "DialCallDuration": "0"})
                return
            if noun is not None and noun.get("url"):  # the target answered: it hears the whisper first
                whisper = self._post(noun.attrib["url"], params)
                call.events.append(f"whispered: {whisper.text}")
            call.events.append(f"transferred to {target}")
            time.sleep(self.pause)
            self._post(
                dial.attrib["action"],
                {**params, "DialCallStatus": "completed", "DialCallDuration": "12", "DialCallSid": uuid.uuid4().hex},
            )
        except httpx.HTTPError as exc:
            call.events.append(f"stopped: {type(exc).__name__}")

    def _live_params(self, call: PlacedCall) -> dict[str, str]:
        """The fields of a request about a live call (a transfer's whisper and its <Dial>'s action)."""
        raise NotImplementedError

    def _post(self, url: str, params: dict[str, str]) -> httpx.Response:
        raise NotImplementedError

    def _start(self, call: PlacedCall) -> None:
        self.calls[call.sid] = call
        played = threading.Thread(target=self._play, args=(call,), daemon=True)
        self._threads.append(played)
        played.start()

    @staticmethod
    def _basic(user: str, secret: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()

    # --- the call, as the carrier plays it ----------------------------------------------------------------

    def _play(self, call: PlacedCall) -> None:
        try:
            self._play_call(call)
        except httpx.HTTPError as exc:  # the stack stopped before the call was over
            call.events.append(f"stopped: {type(exc).__name__}")

    def _play_call(self, call: PlacedCall) -> None:
        time.sleep(self.pause)
        self._ringing(call)
        time.sleep(self.pause)
        to = call.to
        if to.endswith("0000"):
            return self._ended(call, "no-answer")
        if to.endswith("1111"):
            return self._ended(call, "busy")
        if to.endswith("3333"):
            call.canceled.wait(timeout=10)
            return self._ended(call, "canceled")
        call.events.append("answered")
        answer = self._answered(call, machine=to.endswith("2222"))
        if answer is None:  # the carrier hung up itself (its machine detection)
            return
        call.answer = answer
        dialed = self._dial_target(answer)
        if dialed is None:
            call.events.append("hung up by the answer")
            return self._ended(call, "completed", 0)
        uri, action = dialed
        call.events.append("dialed " + uri.split(";")[0].split("?")[0])
        time.sleep(self.pause)
        self._dial_ended(call, action)
        self._ended(call, "completed", self.talk_seconds + 1)

    def _ringing(self, call: PlacedCall) -> None:
        raise NotImplementedError

    def _answered(self, call: PlacedCall, *, machine: bool) -> str | None:
        raise NotImplementedError

    def _dial_target(self, answer: str) -> tuple[str, str] | None:
        raise NotImplementedError

    def _dial_ended(self, call: PlacedCall, action: str) -> None:
        raise NotImplementedError

    def _ended(self, call: PlacedCall, how: str, duration: int = 0) -> None:
        raise NotImplementedError


class TwilioStandIn(CallControlStandIn):
    """Twilio's Calls resource: HTTP Basic with the account SID and auth token, the form fields of twilio-oai's
    CreateCallRequest; 201 with the call's sid; cancel by ``Status=canceled``."""

    base_path = "/2010-04-01"
    signature_header = "X-Twilio-Signature"

    def __init__(self, account_sid: str, auth_token: str, **play: Any) -> None:
        super().__init__(**play)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.signing_key = auth_token  # what the callbacks are signed with (Twilio: the auth token)

    @property
    def url(self) -> str:
        """The base URL, as TWILIO_API_URL takes it (Twilio's is https://api.twilio.com/2010-04-01)."""
        return f"{self.origin}{self.base_path}"

    def new_sid(self) -> str:
        return "CA" + uuid.uuid4().hex

    def handle(
        self, method: str, path: str, authorization: str, fields: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None]:
        if authorization != self._basic(self.account_sid, self.auth_token):
            return 401, {
                "code": 20003,
                "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401,
            }
        calls = f"{self.base_path}/Accounts/{self.account_sid}/Calls"
        if method == "POST" and path == f"{calls}.json":
            missing = [name for name in ("To", "From", "Url") if not fields.get(name)]
            if missing:
                return 400, {"code": 21205, "message": f"{missing[0]} is required", "status": 400}
            sid = self.new_sid()
            self._start(PlacedCall(sid, fields))
            return 201, {"sid": sid, "status": "queued", "to": fields["To"][0], "from": fields["From"][0]}
        if method == "POST" and path.startswith(f"{calls}/") and path.endswith(".json"):
            sid = path.removeprefix(f"{calls}/").removesuffix(".json")
            if fields.get("Twiml"):  # a live call (one the stack answered, or placed) moved to new TwiML
                return self._redirect(sid, fields["Twiml"][0])
            found = self.calls.get(sid)
            if found is None:
                return 404, {"code": 20404, "message": "The requested resource was not found", "status": 404}
            if fields.get("Status") == ["canceled"]:
                if "answered" in found.events:
                    return 400, {"code": 21220, "message": "Invalid call state for the operation", "status": 400}
                found.canceled.set()
            return 200, {"sid": found.sid, "status": "canceled"}
        return 404, {"code": 20404, "message": "The requested resource was not found", "status": 404}

    def refer(self, sid: str, refer_url: str, refer_to: str) -> httpx.Response:
        """The Millis leg of call ``sid``'s <Dial> sends SIP REFER (twilio.com/docs/voice/api/refer-to-twilio):
        Twilio requests the <Dial>'s ``referUrl`` with the ``Refer-To`` header's contents in
        ``ReferTransferTarget``, and runs the TwiML it answers on the call (here: a transfer's <Dial>, played as a
        call update's is). The answer, as the stack gave it."""
        call = self.calls.get(sid) or PlacedCall(sid, {"From": "+14155550123", "To": "+15055550100"})
        self.calls[sid] = call
        params = {**self._live_params(call), "ReferTransferTarget": refer_to}
        answer = self._post(refer_url, params)
        call.events.append(f"refer to {refer_to}: HTTP {answer.status_code}")
        if answer.status_code == 200 and "<Dial" in answer.text:
            self.redirects.append((sid, answer.text))
            played = threading.Thread(target=self._play_redirect, args=(call, answer.text), daemon=True)
            self._threads.append(played)
            played.start()
        return answer

    def _post(self, url: str, params: dict[str, str]) -> httpx.Response:
        signature = twilio_signature(url, params, self.signing_key)
        answer = httpx.post(url, data=params, headers={self.signature_header: signature}, timeout=15)
        self.answers.append((url, answer.status_code, answer.text[:300]))
        return answer

    def _base(self, call: PlacedCall) -> dict[str, str]:
        return {
            "CallSid": call.sid,
            "AccountSid": self.account_sid,
            "From": call.field("From"),
            "To": call.field("To"),
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
        }

    def _live_params(self, call: PlacedCall) -> dict[str, str]:
        return {**self._base(call), "CallStatus": "in-progress"}

    def _status(self, call: PlacedCall, status: str, duration: int = 0) -> None:
        call.events.append(status)
        params = {**self._base(call), "CallStatus": status}
        if status == "completed":
            params["CallDuration"] = str(duration)
        self._post(call.field("StatusCallback"), params)

    def _ringing(self, call: PlacedCall) -> None:
        self._status(call, "initiated")
        self._status(call, "ringing")

    def _answered(self, call: PlacedCall, *, machine: bool) -> str | None:
        params = {**self._base(call), "CallStatus": "in-progress"}
        if call.field("MachineDetection"):
            params["AnsweredBy"] = "machine_start" if machine else "human"
        return self._post(call.field("Url"), params).text

    def _dial_target(self, answer: str) -> tuple[str, str] | None:
        return xml_dial(answer, "Sip")

    def _dial_ended(self, call: PlacedCall, action: str) -> None:
        self._post(
            action,
            {
                **self._base(call),
                "CallStatus": "in-progress",
                "DialCallStatus": "completed",
                "DialCallDuration": str(self.talk_seconds),
                "DialCallSid": "CA" + uuid.uuid4().hex,
            },
        )

    def _ended(self, call: PlacedCall, how: str, duration: int = 0) -> None:
        self._status(call, how, duration)


class SignalWireStandIn(TwilioStandIn):
    """SignalWire's Compatibility API (developer.signalwire.com/compatibility-api): Twilio's Calls resource at the
    project's space (``/api/laml/2010-04-01/Accounts/{ProjectId}/Calls.json``, HTTP Basic with the project id and
    an API token), UUID call sids, and callbacks signed the Twilio way under ``X-SignalWire-Signature`` with the
    project's signing key."""

    base_path = "/api/laml/2010-04-01"
    signature_header = "X-SignalWire-Signature"

    def __init__(self, project_id: str, api_token: str, signing_key: str, **play: Any) -> None:
        super().__init__(project_id, api_token, **play)
        self.signing_key = signing_key

    @property
    def url(self) -> str:
        """The space, as SIGNALWIRE_SPACE_URL takes it (https://<space>.signalwire.com)."""
        return self.origin

    def new_sid(self) -> str:
        return str(uuid.uuid4())


class PlivoStandIn(CallControlStandIn):
    """Plivo's Call API (plivo.com/docs/voice/api/call/make-a-call): HTTP Basic with the Auth ID and auth token,
    a JSON body; 201 with ``request_uuid``; a call not answered yet canceled by
    ``DELETE /v1/Account/{auth_id}/Request/{request_uuid}/`` (204). The callbacks are signed with Plivo's own V3
    signer: ring_url (``CallStatus=ringing``), answer_url (``in-progress``, with ``Machine`` when machine
    detection was asked for), the <Dial> action (``DialStatus``), hangup_url (``CallStatus``, ``Duration``,
    ``HangupCauseCode``/``HangupCauseName`` as plivo.com/docs/voice/troubleshooting/hangup-causes lists them)."""

    _ENDS: ClassVar[dict[str, tuple[str, str, str]]] = {  # how -> CallStatus, HangupCauseCode, HangupCauseName
        "completed": ("completed", "4000", "Normal Hangup"),
        "no-answer": ("no-answer", "3010", "No Answer"),
        "busy": ("busy", "3000", "Busy Line"),
        "canceled": ("completed", "1000", "Canceled"),
        "machine": ("completed", "4000", "Normal Hangup"),
    }

    def __init__(self, auth_id: str, auth_token: str, **play: Any) -> None:
        super().__init__(**play)
        self.auth_id = auth_id
        self.auth_token = auth_token

    @property
    def url(self) -> str:
        """The base URL, as PLIVO_API_URL takes it (Plivo's is https://api.plivo.com/v1/Account)."""
        return f"{self.origin}/v1/Account"

    def handle(
        self, method: str, path: str, authorization: str, fields: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None]:
        api_id = str(uuid.uuid4())
        if authorization != self._basic(self.auth_id, self.auth_token):
            return 401, {"api_id": api_id, "error": "Authentication credentials invalid."}
        account = f"/v1/Account/{self.auth_id}"
        if method == "POST" and path == f"{account}/Call/":
            missing = [name for name in ("from", "to", "answer_url") if not fields.get(name)]
            if missing:
                return 400, {"api_id": api_id, "error": f"{missing[0]} parameter must be present"}
            request_uuid = str(uuid.uuid4())
            self._start(PlacedCall(request_uuid, fields))
            return 201, {"api_id": api_id, "message": "call fired", "request_uuid": request_uuid}
        if method == "POST" and path.startswith(f"{account}/Call/") and path != f"{account}/Call/":
            return self._transfer(api_id, path.removeprefix(f"{account}/Call/").strip("/"), fields)
        if method == "DELETE" and path.startswith(f"{account}/Request/"):
            found = self.calls.get(path.removeprefix(f"{account}/Request/").strip("/"))
            if found is None or "answered" in found.events:
                return 404, {"api_id": api_id, "error": "not found"}
            found.canceled.set()
            return 204, None
        return 404, {"api_id": api_id, "error": "not found"}

    def _transfer(self, api_id: str, call_uuid: str, fields: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Transfer a call (plivo.com/docs/voice/api/call/transfer-a-call): ``legs=aleg`` with ``aleg_url``; 202.
        Plivo then requests the URL and runs its XML on the caller's leg (here: the <Speak>, the <Dial>'s
        ``confirmSound`` requested when the target answers, then its action)."""
        if fields.get("legs") not in ("aleg", "both") or not fields.get("aleg_url"):
            return 400, {"api_id": api_id, "error": "aleg_url parameter must be present"}
        # A call the stand-in placed is known by its CallUUID too; any other is an inbound call.
        call = self.calls.setdefault(call_uuid, PlacedCall(call_uuid, {"from": "14155550123", "to": "15055550100"}))
        call.request.setdefault("call_uuid", call_uuid)
        call.events.append("redirected")
        played = threading.Thread(target=self._play_transfer, args=(call, str(fields["aleg_url"])), daemon=True)
        self._threads.append(played)
        played.start()
        return 202, {"api_id": api_id, "message": "call transferred"}

    def _play_transfer(self, call: PlacedCall, url: str) -> None:
        try:
            time.sleep(self.pause)
            document = self._post(url, self._base(call, "in-progress")).text
            self.redirects.append((call.request["call_uuid"], document))
            dial = ElementTree.fromstring(document).find("Dial")  # noqa: S314 - the local stack's own XML
            if dial is None:
                return
            noun = next(iter(dial), None)
            target = (noun.text or "").strip() if noun is not None else ""
            params = {**self._base(call, "in-progress"), "DialALegUUID": call.request["call_uuid"]}
            if target.endswith("0000"):
                call.events.append(f"transfer to {target}: no answer")
                self._post(dial.attrib["action"], {**params, "DialStatus": "no-answer", "DialRingStatus": "false"})
                return
            if dial.get("confirmSound"):  # the target answered: it hears the confirm sound's XML first
                whisper = self._post(dial.attrib["confirmSound"], params)
                call.events.append(f"whispered: {whisper.text}")
            call.events.append(f"transferred to {target}")
            time.sleep(self.pause)
            ended = {"DialStatus": "completed", "DialRingStatus": "true", "DialBLegUUID": str(uuid.uuid4())}
            self._post(dial.attrib["action"], {**params, **ended, "DialHangupCause": "NORMAL_CLEARING"})
        except httpx.HTTPError as exc:
            call.events.append(f"stopped: {type(exc).__name__}")

    def _post(self, url: str, params: dict[str, str]) -> httpx.Response:
        answer = httpx.post(url, data=params, headers=plivo_headers(url, params, self.auth_token), timeout=15)
        self.answers.append((url, answer.status_code, answer.text[:300]))
        return answer

    def _base(self, call: PlacedCall, status: str) -> dict[str, str]:
        if "call_uuid" not in call.request:
            call.request["call_uuid"] = str(uuid.uuid4())
            self.calls[call.request["call_uuid"]] = call  # known by its CallUUID too once it has one
        return {
            "CallUUID": call.request["call_uuid"],
            "RequestUUID": call.sid,
            "ALegUUID": call.request["call_uuid"],
            "ALegRequestUUID": call.sid,
            "From": call.field("from"),
            "To": call.field("to"),
            "Direction": "outbound",
            "CallStatus": status,
            "Event": "StartApp" if status == "in-progress" else ("Ring" if status == "ringing" else "Hangup"),
        }

    def _ringing(self, call: PlacedCall) -> None:
        call.events.append("ringing")
        self._post(call.field("ring_url"), self._base(call, "ringing"))

    def _answered(self, call: PlacedCall, *, machine: bool) -> str | None:
        params = self._base(call, "in-progress")
        detection = call.field("machine_detection")
        if machine and detection == "hangup":  # Plivo hangs up on the machine itself, and says so at hangup
            call.events.append("machine: hung up by Plivo")
            self._ended(call, "machine", 3)
            return None
        if detection:
            params["Machine"] = "true" if machine else "false"
        return self._post(call.field("answer_url"), params).text

    def _dial_target(self, answer: str) -> tuple[str, str] | None:
        return xml_dial(answer, "User")

    def _dial_ended(self, call: PlacedCall, action: str) -> None:
        self._post(
            action,
            {
                **self._base(call, "in-progress"),
                "DialStatus": "completed",
                "DialRingStatus": "true",
                "DialHangupCause": "NORMAL_CLEARING",
                "DialALegUUID": call.request["call_uuid"],
                "DialBLegUUID": str(uuid.uuid4()),
            },
        )

    def _ended(self, call: PlacedCall, how: str, duration: int = 0) -> None:
        call.events.append(how)
        status, code, name = self._ENDS[how]
        params = {
            **self._base(call, status),
            "HangupCauseCode": code,
            "HangupCauseName": name,
            "Duration": str(duration),
            "BillDuration": str(duration),
        }
        if how == "machine":
            params["Machine"] = "true"
        self._post(call.field("hangup_url"), params)


class TelnyxStandIn(CallControlStandIn):
    """Telnyx's TeXML Calls API (developers.telnyx.com/api-reference/texml-rest-commands): ``Authorization:
    Bearer`` with an API key, a JSON body; 200 with ``{"from", "to", "status": "queued"}`` (no call id: the
    CallSid comes with the first status callback); a call ended by ``POST .../Calls/{CallSid}`` with
    ``Status=completed``. The callbacks are form posts signed as Telnyx signs them (Ed25519 over
    ``timestamp|body``): ``initiated`` and ``ringing`` to StatusCallback, the Url when the person answers, and,
    with machine detection, the result as ``AnsweredBy`` with an ``in-progress`` status callback whose answer the
    call goes on with (docs/voice/programmable-voice/texml-answering-machine: "the TeXML instructions are not
    executed until the results of AMD process are provided in the status callback"); the <Dial>'s action
    (``DialCallStatus``, ``DialCallDuration``), then ``completed`` with ``CallDuration``."""

    def __init__(self, account_sid: str, api_key: str, signing_key: SigningKey, **play: Any) -> None:
        super().__init__(**play)
        self.account_sid = account_sid
        self.api_key = api_key
        self.signing_key = signing_key
        self.connection_id = "1568109700606592442"

    @property
    def url(self) -> str:
        """The base URL, as TELNYX_API_URL takes it (Telnyx's is https://api.telnyx.com/v2)."""
        return f"{self.origin}/v2"

    def handle(
        self, method: str, path: str, authorization: str, fields: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None]:
        if authorization != f"Bearer {self.api_key}":
            return 401, {"errors": [{"code": "10009", "title": "Authentication failed", "detail": "Bad API key"}]}
        calls = f"/v2/texml/Accounts/{self.account_sid}/Calls"
        if method == "POST" and path == calls:
            missing = [name for name in ("ApplicationSid", "To", "From") if not fields.get(name)]
            if missing:
                return 422, {"errors": [{"code": "10015", "title": "Bad Request", "detail": f"{missing[0]} missing"}]}
            sid = "v3:" + secrets.token_urlsafe(40)
            self._start(PlacedCall(sid, fields))
            return 200, {"from": fields["From"], "to": fields["To"], "status": "queued"}
        if method == "POST" and path.startswith(f"{calls}/") and fields.get("Texml"):
            return self._redirect(path.removeprefix(f"{calls}/"), fields["Texml"])
        if method == "POST" and path.startswith(f"{calls}/"):
            found = self.calls.get(path.removeprefix(f"{calls}/"))
            if found is None:
                return 404, {"errors": [{"code": "10005", "title": "Resource not found", "detail": "no call"}]}
            if fields.get("Status") == "completed":
                found.canceled.set()
            return 200, {"call_sid": found.sid, "status": "completed"}
        return 404, {"errors": [{"code": "10005", "title": "Resource not found", "detail": path}]}

    def _post(self, url: str, params: dict[str, str]) -> httpx.Response:
        body = urlencode(params).encode()
        headers = {"content-type": "application/x-www-form-urlencoded", **telnyx_headers(body, self.signing_key)}
        answer = httpx.post(url, content=body, headers=headers, timeout=15)
        self.answers.append((url, answer.status_code, answer.text[:300]))
        return answer

    def _live_params(self, call: PlacedCall) -> dict[str, str]:
        return self._base(call, "in-progress")

    def _base(self, call: PlacedCall, status: str) -> dict[str, str]:
        return {
            "AccountSid": self.account_sid,
            "CallSid": call.sid,
            "CallSidLegacy": call.sid,
            "ConnectionId": self.connection_id,
            "From": call.field("From"),
            "To": call.field("To"),
            "CallStatus": status,
            "ApiVersion": "2010-04-01",
        }

    def _status(self, call: PlacedCall, status: str, **extra: str) -> httpx.Response:
        call.events.append(status)
        return self._post(call.field("StatusCallback"), {**self._base(call, status), **extra})

    def _ringing(self, call: PlacedCall) -> None:
        self._status(call, "initiated", CallbackSource="call-progress-events")
        self._status(call, "ringing", CallbackSource="call-progress-events")

    def _answered(self, call: PlacedCall, *, machine: bool) -> str | None:
        answer = self._post(call.field("Url"), self._base(call, "in-progress")).text
        if call.field("MachineDetection"):
            verdict = self._status(call, "in-progress", AnsweredBy="machine" if machine else "human").text
            if verdict.strip():
                answer = verdict  # the status callback's answer is what the call goes on with
        if "<Hangup" in answer and "<Dial" not in answer:
            call.events.append("hung up by the answer")
            self._ended(call, "completed", 2)
            return None
        return answer

    def _dial_target(self, answer: str) -> tuple[str, str] | None:
        return xml_dial(answer, "Sip")

    def _dial_ended(self, call: PlacedCall, action: str) -> None:
        self._post(
            action,
            {
                **self._base(call, "in-progress"),
                "DialCallStatus": "completed",
                "DialCallDuration": str(self.talk_seconds),
                "DialCallSid": "v3:" + secrets.token_urlsafe(40),
            },
        )

    def _ended(self, call: PlacedCall, how: str, duration: int = 0) -> None:
        extra = {"CallDuration": str(duration)} if how == "completed" else {}
        self._status(call, how, CallbackSource="call-progress-events", **extra)


class VonageStandIn(CallControlStandIn):
    """Vonage's Voice API (developer.vonage.com/api/voice; Nexmo/api-specification ``definitions/voice.yml``):
    ``Authorization: Bearer`` an application JWT, checked with PyJWT against the application's public key (RS256,
    its ``application_id``, unexpired); a JSON body; 201 with ``uuid`` and ``conversation_uuid``; a call hung up
    by ``PUT /v1/calls/{uuid}`` ``{"action": "hangup"}`` (204). The webhooks are JSON, each with Vonage's signed
    JWT (HS256 with the signature secret, the body's hash): the events ``started``, ``ringing``; the answer_url
    when the person answers, then ``answered``; with machine detection, the event ``machine`` (or ``human``), and
    for ``hangup`` Vonage ends the call itself; the connect action's eventUrl gets the leg to Millis' ``answered``
    and ``completed`` (its duration); the call's own ``completed`` (its duration) ends it."""

    def __init__(self, application_id: str, public_key: Any, signature_secret: str, **play: Any) -> None:
        super().__init__(**play)
        self.application_id = application_id
        self.public_key = public_key  # the application's (cryptography's RSAPublicKey, or its PEM)
        self.signature_secret = signature_secret

    @property
    def url(self) -> str:
        """The base URL, as VONAGE_API_URL takes it (Vonage's is https://api.nexmo.com)."""
        return self.origin

    def _authorized(self, authorization: str) -> bool:
        import jwt

        try:
            claims = jwt.decode(
                authorization.removeprefix("Bearer "),
                self.public_key,
                algorithms=["RS256"],
                options={"require": ["exp", "iat", "jti"]},
            )
        except jwt.PyJWTError:
            return False
        return bool(claims.get("application_id") == self.application_id)

    def handle(
        self, method: str, path: str, authorization: str, fields: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None]:
        if not self._authorized(authorization):
            return 401, {
                "type": "https://developer.nexmo.com/api-errors#unauthorized",
                "title": "Unauthorized",
                "detail": "You did not provide correct credentials.",
            }
        if method == "POST" and path == "/v1/calls":
            if not fields.get("to") or not fields.get("answer_url"):
                return 400, {"type": "https://developer.nexmo.com/api-errors#bad-request", "title": "Bad Request"}
            leg = str(uuid.uuid4())
            conversation = "CON-" + str(uuid.uuid4())
            self._start(PlacedCall(leg, {**fields, "conversation_uuid": conversation}))
            return 201, {"uuid": leg, "status": "started", "direction": "outbound", "conversation_uuid": conversation}
        if method == "PUT" and path.startswith("/v1/calls/") and fields.get("action") == "transfer":
            ncco = (fields.get("destination") or {}).get("ncco") or []
            return self._transfer(path.removeprefix("/v1/calls/"), ncco)
        if method == "PUT" and path.startswith("/v1/calls/"):
            found = self.calls.get(path.removeprefix("/v1/calls/"))
            if found is None or "answered" in found.events:
                return 404, {"type": "https://developer.nexmo.com/api-errors#not-found", "title": "Not Found"}
            if fields.get("action") == "hangup":
                found.canceled.set()
            return 204, None
        return 404, {"type": "https://developer.nexmo.com/api-errors#not-found", "title": "Not Found"}

    def _transfer(self, leg: str, ncco: list[dict[str, Any]]) -> tuple[int, dict[str, Any] | None]:
        """The call's leg moved to a new NCCO: its connect is played (the endpoint's onAnswer NCCO fetched with GET
        when the target answers, then the connect's eventUrl gets the transfer leg's events)."""
        call = self.calls.get(leg) or PlacedCall(
            leg,
            {"from": {"number": "15055550100"}, "to": [{"number": "14155550100"}], "conversation_uuid": "CON-" + leg},
        )
        self.calls[leg] = call
        self.redirects.append((leg, json.dumps(ncco)))
        played = threading.Thread(target=self._play_transfer, args=(call, ncco), daemon=True)
        self._threads.append(played)
        played.start()
        return 204, None

    def _play_transfer(self, call: PlacedCall, ncco: list[dict[str, Any]]) -> None:
        try:
            time.sleep(self.pause)
            connect = next((a for a in ncco if a.get("action") == "connect"), None)
            if connect is None:
                return
            endpoint = connect["endpoint"][0]
            target = endpoint.get("number") or endpoint.get("uri") or ""
            event_url = connect["eventUrl"][0]
            leg = {
                "uuid": str(uuid.uuid4()),
                "conversation_uuid": call.request["conversation_uuid"],
                "direction": "outbound",
            }
            if str(target).endswith("0000"):
                call.events.append(f"transfer to {target}: no answer")
                self._post(event_url, {**leg, "status": "unanswered", "timestamp": _now()})
                return
            whisper = (endpoint.get("onAnswer") or {}).get("url")
            if whisper:  # the target answered: it hears the onAnswer NCCO first
                answered = self._get(whisper)
                call.events.append(f"whispered: {answered.text}")
            call.events.append(f"transferred to {target}")
            self._post(event_url, {**leg, "status": "answered", "timestamp": _now()})
            time.sleep(self.pause)
            self._post(event_url, {**leg, "status": "completed", "duration": "12", "timestamp": _now()})
        except httpx.HTTPError as exc:
            call.events.append(f"stopped: {type(exc).__name__}")

    def _get(self, url: str) -> httpx.Response:
        """A GET webhook, signed as Vonage signs one: the JWT's payload_hash over the query as compact JSON."""
        from urllib.parse import parse_qsl, urlsplit

        query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
        hashed = json.dumps(dict(query), separators=(",", ":"), ensure_ascii=False).encode()
        token = vonage_token(hashed, self.signature_secret, self.application_id)
        answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=15)
        self.answers.append((url, answer.status_code, answer.text[:300]))
        return answer

    def _post(self, url: str, payload: dict[str, Any]) -> httpx.Response:
        body = json.dumps(payload).encode()
        token = vonage_token(body, self.signature_secret, self.application_id)
        headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
        answer = httpx.post(url, content=body, headers=headers, timeout=15)
        self.answers.append((url, answer.status_code, answer.text[:300]))
        return answer

    def _base(self, call: PlacedCall) -> dict[str, Any]:
        return {
            "from": call.request["from"]["number"],
            "to": call.request["to"][0]["number"],
            "uuid": call.sid,
            "conversation_uuid": call.request["conversation_uuid"],
        }

    def _event(self, call: PlacedCall, status: str, **extra: Any) -> httpx.Response:
        call.events.append(status)
        payload = {**self._base(call), "status": status, "direction": "outbound", "timestamp": _now(), **extra}
        return self._post(call.request["event_url"][0], payload)

    def _ringing(self, call: PlacedCall) -> None:
        self._event(call, "started")
        self._event(call, "ringing")

    def _play_call(self, call: PlacedCall) -> None:
        call.request["To"] = call.request["to"][0]["number"]  # the script reads the number called
        super()._play_call(call)

    def _answered(self, call: PlacedCall, *, machine: bool) -> str | None:
        answer = self._post(call.request["answer_url"][0], self._base(call)).text
        self._event(call, "answered")
        detection = call.request.get("machine_detection")
        if detection:
            verdict = "machine" if machine else "human"
            self._post(
                call.request["event_url"][0],
                {
                    "call_uuid": call.sid,
                    "conversation_uuid": call.request["conversation_uuid"],
                    "status": verdict,
                    "timestamp": _now(),
                },
            )
            call.events.append(verdict)
            if machine and detection == "hangup":  # Vonage ends the call itself
                self._ended(call, "completed", 2)
                return None
        return answer

    def _dial_target(self, answer: str) -> tuple[str, str] | None:
        actions = json.loads(answer or "[]")
        connect = next((a for a in actions if a.get("action") == "connect"), None)
        if connect is None:
            return None
        return connect["endpoint"][0]["uri"], connect["eventUrl"][0]

    def _dial_ended(self, call: PlacedCall, action: str) -> None:
        leg = {
            "uuid": str(uuid.uuid4()),
            "conversation_uuid": call.request["conversation_uuid"],
            "direction": "outbound",
        }
        self._post(action, {**leg, "status": "answered", "timestamp": _now()})
        self._post(action, {**leg, "status": "completed", "duration": str(self.talk_seconds), "timestamp": _now()})

    def _ended(self, call: PlacedCall, how: str, duration: int = 0) -> None:
        status = {"no-answer": "unanswered", "canceled": "cancelled"}.get(how, how)
        extra = {"duration": str(duration)} if status == "completed" else {}
        self._event(call, status, **extra)
        if status == "cancelled":
            call.events.append("canceled")


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class ChimeStandIn(CallControlStandIn):
    """The Chime SDK's ``CreateSipMediaApplicationCall`` and ``UpdateSipMediaApplicationCall`` (chime-sdk-voice,
    REST-JSON, as botocore sends them: point the client at it with ``AWS_ENDPOINT_URL_CHIME_SDK_VOICE``), and the
    SIP media application's invocations they cause, made to ``sma`` (SipMediaAppFunction's handler) in the shapes
    of the documented events (tests/fixtures/chime-events: NEW_OUTBOUND_CALL with ``ActionData.Parameters.
    Arguments``, RINGING, CALL_ANSWERED, ACTION_SUCCESSFUL for CallAndBridge, HANGUP, CALL_UPDATE_REQUESTED), each
    carrying the TransactionAttributes the function's previous answer set, as Chime carries them. A request
    without a SigV4 signature for the ``chime`` service is refused (403) as AWS refuses it.

    Chime says no more of a call nobody answered than its HANGUP: numbers ending 0000 and 1111 alike are not
    answered, 3333 rings until canceled (UpdateSipMediaApplicationCall, then the function's Hangup), and 2222 stays
    with its agent until it is transferred (or 10 seconds pass).

    Transfers (UpdateSipMediaApplicationCall with ``millis_action=transfer``) play as Chime plays them, after the
    202, in the shapes of the documented events: CALL_UPDATE_REQUESTED (ActionData ``CallUpdateRequest``); the
    function's Hangup of the Millis leg is reported done (ACTION_SUCCESSFUL ``Hangup``), then its leg gone (HANGUP);
    the function's CallAndBridge then rings the target: a number ending 0000 does not answer (ACTION_FAILED
    ``CallNotAnswered``, with LEG-A only, as documented), any other answers (ACTION_SUCCESSFUL with the new LEG-B)
    and hangs up after a pause (HANGUP of LEG-B). ``ring_in`` plays an inbound call to the stack's number
    (NEW_INBOUND_CALL, then its bridge's ACTION_SUCCESSFUL), so that its transaction can be updated too."""

    def __init__(self, sip_media_application_id: str, sma: Any, **play: Any) -> None:
        super().__init__(**play)
        self.application = sip_media_application_id
        self.sma = sma  # (event, context) -> response
        self.invocations: list[tuple[str, dict[str, Any]]] = []  # the event type, and the function's answer
        self.refusing = False  # True: every request is refused as the role without the permission is (403)

    @property
    def url(self) -> str:
        """The endpoint, as AWS_ENDPOINT_URL_CHIME_SDK_VOICE takes it."""
        return self.origin

    def handle(
        self, method: str, path: str, authorization: str, fields: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None]:
        if not authorization.startswith("AWS4-HMAC-SHA256 ") or "/chime/aws4_request" not in authorization:
            return 403, {"Code": "ForbiddenException", "Message": "Missing Authentication Token"}
        if self.refusing:
            return 403, {"Code": "AccessDeniedException", "Message": "not authorized to perform this action"}
        calls = f"/sip-media-applications/{self.application}/calls"
        if method == "POST" and path == calls:
            for name in ("FromPhoneNumber", "ToPhoneNumber"):
                if not str(fields.get(name, "")).startswith("+"):
                    return 400, {"Code": "BadRequestException", "Message": f"{name} is not E.164"}
            tx = str(uuid.uuid4())
            self._start(PlacedCall(tx, {**fields, "To": fields["ToPhoneNumber"]}))
            return 201, {"SipMediaApplicationCall": {"TransactionId": tx}}
        if method == "POST" and path.startswith(f"{calls}/"):
            found = self.calls.get(path.removeprefix(f"{calls}/"))
            if found is None or "hung up" in found.events:
                return 404, {"Code": "NotFoundException", "Message": "The transaction is over"}
            arguments = fields.get("Arguments", {})
            update = {"Type": "CallUpdateRequest", "Parameters": {"Arguments": arguments}}
            if arguments.get("millis_action") == "transfer":  # Chime invokes the function after its 202
                moving = threading.Thread(target=self._transfer, args=(found, update), daemon=True)
                self._threads.append(moving)
                moving.start()
                return 202, {"SipMediaApplicationCall": {"TransactionId": found.sid}}
            answer = self._invoke(found, "CALL_UPDATE_REQUESTED", action=update, agent=found.request.get("agent"))
            if any(a["Type"] == "Hangup" for a in answer.get("Actions", [])):
                found.canceled.set()
            return 202, {"SipMediaApplicationCall": {"TransactionId": found.sid}}
        return 404, {"Code": "NotFoundException", "Message": path}

    # --- the invocations ------------------------------------------------------------------------------

    def _participants(self, call: PlacedCall, *, person: str = "Connected", agent: str | None = None) -> list[Any]:
        legs: list[dict[str, str]] = [
            {
                "CallId": call.request.setdefault("leg_a", str(uuid.uuid4())),
                "ParticipantTag": "LEG-A",
                "To": call.request["ToPhoneNumber"],
                "From": call.request["FromPhoneNumber"],
                "Direction": call.request.get("direction", "Outbound"),
                "StartTimeInMilliseconds": str(int(time.time() * 1000)),
                "Status": person,
            }
        ]
        if agent is not None:
            legs.append(
                {
                    "CallId": call.request.setdefault("leg_b", str(uuid.uuid4())),
                    "ParticipantTag": "LEG-B",
                    "To": call.request.get("bridged_to", ""),
                    "From": call.request["FromPhoneNumber"],
                    "Direction": "Outbound",
                    "StartTimeInMilliseconds": str(int(time.time() * 1000)),
                    "Status": agent,
                }
            )
        return legs

    def _invoke(
        self,
        call: PlacedCall,
        kind: str,
        *,
        action: dict[str, Any] | None = None,
        person: str = "Connected",
        agent: str | None = None,
    ) -> dict[str, Any]:
        from dev.lambda_context import LocalContext

        call.request["sequence"] = call.request.get("sequence", 0) + 1
        details: dict[str, Any] = {
            "TransactionId": call.sid,
            "AwsAccountId": "111122223333",
            "AwsRegion": "us-west-2",
            "SipMediaApplicationId": self.application,
            "Participants": self._participants(call, person=person, agent=agent),
        }
        if call.request.get("attributes"):
            details["TransactionAttributes"] = call.request["attributes"]
        event: dict[str, Any] = {
            "SchemaVersion": "1.0",
            "Sequence": call.request["sequence"],
            "InvocationEventType": kind,
            "CallDetails": details,
        }
        if action is not None:
            event["ActionData"] = action
        answer: dict[str, Any] = self.sma(event, LocalContext(function_name="SipMediaAppFunction"))
        if answer.get("TransactionAttributes"):
            call.request["attributes"] = answer["TransactionAttributes"]
        self.invocations.append((kind, answer))
        self.answers.append((kind, 200, json.dumps(answer)[:300]))
        return answer

    def _ringing(self, call: PlacedCall) -> None:
        arguments = {"Type": "CallCreateRequest", "Parameters": {"Arguments": call.request.get("ArgumentsMap", {})}}
        answer = self._invoke(call, "NEW_OUTBOUND_CALL", action=arguments, person="Connecting")
        if any(a["Type"] == "Hangup" for a in answer.get("Actions", [])):
            call.events.append("hung up")
            call.canceled.set()
            return
        call.events.append("ringing")
        self._invoke(call, "RINGING", person="Connecting")

    def _play_call(self, call: PlacedCall) -> None:
        time.sleep(self.pause)
        self._ringing(call)
        if "hung up" in call.events:
            return
        time.sleep(self.pause)
        to = call.to
        if to.endswith(("0000", "1111")):  # Chime tells nothing but the hang-up
            return self._ended(call, "no-answer")
        if to.endswith("3333"):
            call.canceled.wait(timeout=10)
            call.events.append("canceled")
            return self._ended(call, "canceled")
        call.events.append("answered")
        answer = self._invoke(call, "CALL_ANSWERED")
        bridge = next((a for a in answer.get("Actions", []) if a["Type"] == "CallAndBridge"), None)
        if bridge is None:
            call.events.append("hung up by the answer")
            return self._ended(call, "completed")
        endpoint = bridge["Parameters"]["Endpoints"][0]
        call.request["bridged_to"] = endpoint["Uri"]
        call.events.append("dialed " + endpoint["Uri"])
        success = {"Type": "CallAndBridge", "Parameters": bridge["Parameters"]}
        call.request["agent"] = "Connected"
        transferred = call.request.setdefault("transferred", threading.Event())
        self._invoke(call, "ACTION_SUCCESSFUL", action=success, agent="Connected")
        time.sleep(self.pause)
        if to.endswith("2222") and transferred.wait(timeout=10):  # the agent talks until the call is transferred
            return
        # The agent hangs up at the end of the conversation; the function hangs the person up.
        gone = {"Type": "Hangup", "Parameters": {"CallId": call.request["leg_b"], "ParticipantTag": "LEG-B"}}
        answer = self._invoke(call, "HANGUP", action=gone, agent="Disconnected")
        if any(a["Type"] == "Hangup" for a in answer.get("Actions", [])):
            call.events.append("hung up")

    # --- inbound calls and transfers --------------------------------------------------------------------

    def ring_in(self, caller: str, number: str) -> str:
        """A caller rings the stack's ``number``: NEW_INBOUND_CALL, then the bridge to Millis succeeds. The call's
        TransactionId (the transaction UpdateSipMediaApplicationCall then finds)."""
        tx = str(uuid.uuid4())
        call = PlacedCall(tx, {"ToPhoneNumber": number, "FromPhoneNumber": caller, "direction": "Inbound"})
        self.calls[tx] = call
        answer = self._invoke(call, "NEW_INBOUND_CALL")
        bridge = next((a for a in answer.get("Actions", []) if a["Type"] == "CallAndBridge"), None)
        if bridge is None:
            raise AssertionError(f"the stack did not bridge the call: {answer}")
        call.request["bridged_to"] = bridge["Parameters"]["Endpoints"][0]["Uri"]
        call.request["agent"] = "Connected"
        success = {"Type": "CallAndBridge", "Parameters": {**bridge["Parameters"], "CallId": call.request["leg_a"]}}
        self._invoke(call, "ACTION_SUCCESSFUL", action=success, agent="Connected")
        return tx

    def _transfer(self, call: PlacedCall, update: dict[str, Any]) -> None:
        """CALL_UPDATE_REQUESTED, then what the function's answers ask for, as Chime reports each."""
        answer = self._invoke(call, "CALL_UPDATE_REQUESTED", action=update, agent=call.request.get("agent"))
        millis = next((a for a in answer.get("Actions", []) if a["Type"] == "Hangup"), None)
        if millis is None:
            return
        call.events.append("millis leg hung up")
        call.request["agent"] = "Disconnected"
        done = {"Type": "Hangup", "Parameters": millis["Parameters"]}
        answer = self._invoke(call, "ACTION_SUCCESSFUL", action=done, agent="Disconnected")
        self._invoke(call, "HANGUP", action=done, agent="Disconnected")  # Chime reports the leg gone too
        bridge = next((a for a in answer.get("Actions", []) if a["Type"] == "CallAndBridge"), None)
        if bridge is None:
            return
        target = bridge["Parameters"]["Endpoints"][0]["Uri"]
        call.events.append("transferred to " + target)
        call.request.update({"leg_b": str(uuid.uuid4()), "bridged_to": target})
        parameters = {**bridge["Parameters"], "CallId": call.request["leg_a"]}
        time.sleep(self.pause)
        if target.endswith("0000"):  # the person does not answer: the documented failure, LEG-A only
            failed = {
                "Type": "CallAndBridge",
                "Parameters": parameters,
                "ErrorType": "CallNotAnswered",
                "ErrorMessage": "Call not answered",
            }
            answer = self._invoke(call, "ACTION_FAILED", action=failed)
            call.events.extend(a["Type"] for a in answer.get("Actions", []))
            if any(a["Type"] == "Hangup" for a in answer.get("Actions", [])):
                self._ended(call, "transfer failed")
        else:
            call.request["agent"] = "Connected"
            self._invoke(
                call, "ACTION_SUCCESSFUL", action={"Type": "CallAndBridge", "Parameters": parameters}, agent="Connected"
            )
            call.events.append("person answered")
            time.sleep(self.pause)
            gone = {"Type": "Hangup", "Parameters": {"CallId": call.request["leg_b"], "ParticipantTag": "LEG-B"}}
            answer = self._invoke(call, "HANGUP", action=gone, agent="Disconnected")
            if any(a["Type"] == "Hangup" for a in answer.get("Actions", [])):
                call.events.append("hung up")
        call.request.setdefault("transferred", threading.Event()).set()

    def _ended(self, call: PlacedCall, how: str, duration: int = 0) -> None:
        gone = {"Type": "Hangup", "Parameters": {"CallId": call.request["leg_a"], "ParticipantTag": "LEG-A"}}
        self._invoke(call, "HANGUP", action=gone, person="Disconnected")
        call.events.append("hung up")

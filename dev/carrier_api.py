"""A local stand-in for a carrier's call-control API (Twilio's Calls resource), for `make demo` and the tests:
it accepts the REST request as Twilio documents it (HTTP Basic with the account SID and auth token, the form
fields of twilio-oai's CreateCallRequest), answers 201 with the call's sid, then plays the call the way Twilio
reports one: the status callback ``ringing``, the answer URL requested when the person answers (signed with
Twilio's own RequestValidator, through dev/carrier_signing.py), the <Dial>'s action when the leg to Millis
ends, and the final ``completed`` callback. No SIP is sent: the leg to Millis is reported as Twilio would
report it (connected for ``talk_seconds``).

What the person does depends on the number called (its last four digits):

    ....0000  nobody answers          -> no-answer
    ....1111  busy                    -> busy
    ....2222  a machine answers       -> AnsweredBy machine_start (with MachineDetection), else human
    ....3333  rings until canceled    -> canceled by POST .../Calls/{sid}.json Status=canceled
    anything else: a person answers, the agent talks for ``talk_seconds``, the person hangs up.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs
from xml.etree import ElementTree

import httpx

from dev.carrier_signing import twilio_signature


@dataclass
class PlacedCall:
    sid: str
    form: dict[str, list[str]]
    events: list[str] = field(default_factory=list)  # what happened, in order
    canceled: threading.Event = field(default_factory=threading.Event)
    answer: str = ""  # the TwiML the stack answered


class TwilioStandIn:
    def __init__(self, account_sid: str, auth_token: str, *, talk_seconds: int = 7, pause: float = 0.05) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.talk_seconds = talk_seconds
        self.pause = pause
        self.calls: dict[str, PlacedCall] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []  # method, path, form
        self.answers: list[tuple[str, int, str]] = []  # what the stack answered each request Twilio made
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """The base URL, as TWILIO_API_URL takes it (Twilio's is https://api.twilio.com/2010-04-01)."""
        if self._server is None:
            raise RuntimeError("not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}/2010-04-01"

    @contextmanager
    def running(self) -> Iterator[TwilioStandIn]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                status, body = stand_in.handle(self.path, self.headers.get("authorization", ""), form)
                payload = json.dumps(body).encode()
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

    def handle(self, path: str, authorization: str, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        self.requests.append(("POST", path, form))
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if authorization != expected:
            return 401, {
                "code": 20003,
                "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401,
            }
        calls = f"/2010-04-01/Accounts/{self.account_sid}/Calls"
        if path == f"{calls}.json":
            missing = [name for name in ("To", "From", "Url") if not form.get(name)]
            if missing:
                return 400, {"code": 21205, "message": f"{missing[0]} is required", "status": 400}
            sid = "CA" + uuid.uuid4().hex
            call = PlacedCall(sid, form)
            self.calls[sid] = call
            played = threading.Thread(target=self._play, args=(call,), daemon=True)
            self._threads.append(played)
            played.start()
            return 201, {"sid": sid, "status": "queued", "to": form["To"][0], "from": form["From"][0]}
        if path.startswith(f"{calls}/") and path.endswith(".json"):
            found = self.calls.get(path.removeprefix(f"{calls}/").removesuffix(".json"))
            if found is None:
                return 404, {"code": 20404, "message": "The requested resource was not found", "status": 404}
            if form.get("Status") == ["canceled"]:
                if "answered" in found.events:
                    return 400, {"code": 21220, "message": "Invalid call state for the operation", "status": 400}
                found.canceled.set()
            return 200, {"sid": found.sid, "status": "canceled"}
        return 404, {"code": 20404, "message": "The requested resource was not found", "status": 404}

    def requests_of(self, sid: str) -> dict[str, list[str]]:
        """The form the stack placed call ``sid`` with."""
        return self.calls[sid].form

    # --- the call, as Twilio plays it ---------------------------------------------------------------------

    def _post(self, url: str, params: dict[str, str]) -> httpx.Response:
        signature = twilio_signature(url, params, self.auth_token)
        answer = httpx.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=15)
        self.answers.append((url, answer.status_code, answer.text[:300]))
        return answer

    def _status(self, call: PlacedCall, status: str, duration: int = 0, **extra: str) -> None:
        call.events.append(status)
        params = {**self._base(call), "CallStatus": status, **extra}
        if status == "completed":
            params["CallDuration"] = str(duration)
        self._post(call.form["StatusCallback"][0], params)

    def _base(self, call: PlacedCall) -> dict[str, str]:
        return {
            "CallSid": call.sid,
            "AccountSid": self.account_sid,
            "From": call.form["From"][0],
            "To": call.form["To"][0],
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
        }

    def _play(self, call: PlacedCall) -> None:
        try:
            self._play_call(call)
        except httpx.HTTPError as exc:  # the stack stopped before the call was over
            call.events.append(f"stopped: {type(exc).__name__}")

    def _play_call(self, call: PlacedCall) -> None:
        time.sleep(self.pause)
        to = call.form["To"][0]
        self._status(call, "initiated")
        self._status(call, "ringing")
        time.sleep(self.pause)
        if to.endswith("0000"):
            self._status(call, "no-answer")
            return
        if to.endswith("1111"):
            self._status(call, "busy")
            return
        if to.endswith("3333"):
            call.canceled.wait(timeout=10)
            self._status(call, "canceled")
            return
        call.events.append("answered")
        machine = to.endswith("2222")
        params = {**self._base(call), "CallStatus": "in-progress"}
        if call.form.get("MachineDetection"):
            params["AnsweredBy"] = "machine_start" if machine else "human"
        answer = self._post(call.form["Url"][0], params)
        call.answer = answer.text
        root = ElementTree.fromstring(answer.text)  # noqa: S314 - the local stack's own answer
        dial = root.find("Dial")
        if dial is None or dial.find("Sip") is None:
            call.events.append("hung up by the answer")
            self._status(call, "completed", 0)
            return
        call.events.append("dialed " + (dial.find("Sip").text or "").split(";")[0].split("?")[0])  # type: ignore[union-attr]
        time.sleep(self.pause)
        dialed = {
            **params,
            "DialCallStatus": "completed",
            "DialCallDuration": str(self.talk_seconds),
            "DialCallSid": "CA" + uuid.uuid4().hex,
        }
        self._post(dial.attrib["action"], dialed)
        self._status(call, "completed", self.talk_seconds + 1)

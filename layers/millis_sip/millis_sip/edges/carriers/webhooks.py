"""Every carrier's webhooks on one skeleton, and each carrier as a descriptor (docs/carriers/README.md).

``CarrierWebhooks`` is what every carrier does the same way: the answer webhook (the call comes in, or the
caller keyed in a PIN) and the status webhook (how the leg to Millis went, or the call ended) each verify the
request's signature first, and the verification returns the fields it verified; then the fields are read in
their documented forms (``fields``), ``CarrierFlow`` asks the core, and the carrier's dialect writes the
answer. A carrier's subclass says only what differs: how its requests are signed (``verify``), what its fields
mean (``call``, ``report``), and which dialect answers (``answers``).

``Carrier`` describes one carrier to the inbound function, which iterates ``CARRIERS`` (edges/carriers/
registry.py) to build its route table: its routes, its credential (the local variable and the setting naming
its secret), its patience, and how to build its webhooks. Adding a carrier is one descriptor and one dialect
module. A carrier's outbound calls attach to the same descriptor (``outbound``: its answer and status URLs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from millis_sip.apigw import BadRequest, Request, reply
from millis_sip.core.errors import BridgeError
from millis_sip.core.ports import Secret
from millis_sip.core.router import InboundCall
from millis_sip.edges.carriers import InvalidSignature, Refusal
from millis_sip.edges.carriers.fields import Fields
from millis_sip.edges.carriers.flow import Answers, CarrierFlow, DialReport, Response, refused
from millis_sip.messages import Messages
from millis_sip.observability import count_signature_failure, logger

if TYPE_CHECKING:
    from millis_sip.config import InboundSettings
    from millis_sip.core.ports import Clock
    from millis_sip.edges.carriers.outbound import OutboundDialect

Pairs = Iterable[tuple[str, Any]]


class SignedButUnreadable(Exception):
    """The request's signature holds, but its signed body is not in the carrier's format (a 400, not a 403)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A request refused before anything read it: the answer it gets."""

    response: Response


def authenticate[T](credential: Secret | None, carrier: str, check: Callable[[list[str]], T]) -> T | Rejected:
    """What ``check`` returns when it accepts the request with one of the carrier's keys; else the refusal: 403
    before anything reads the request (not configured, a bad or missing signature), 503 when the key cannot be
    read, 400 when the signed body cannot be read."""
    if credential is None:
        return Rejected(reply(403, f"{carrier} is not configured on this stack."))
    try:
        keys = [line.strip() for line in credential().splitlines() if line.strip()]
    except BridgeError as exc:
        logger.error("Cannot read the carrier's credential", extra={"carrier": carrier, "error": exc.code})
        return Rejected(reply(503, f"The {carrier} credential cannot be read now.", headers={"Retry-After": "1"}))
    try:
        return check(keys)
    except SignedButUnreadable as exc:
        return Rejected(reply(400, f"Bad request: {exc}."))
    except (InvalidSignature, BadRequest) as exc:
        why = exc.reason if isinstance(exc, InvalidSignature) else str(exc)
        logger.warning("Refused a carrier webhook", extra={"carrier": carrier, "reason": why})
        if isinstance(exc, InvalidSignature):
            count_signature_failure(carrier.lower())
        return Rejected(reply(403, f"Forbidden: {why}."))


class CarrierWebhooks:
    """A carrier's answer and status webhooks. Subclasses set ``title`` and implement ``verify``, ``call``,
    ``report`` and ``answers``; ``fields_of`` and ``answering`` have defaults most carriers keep."""

    title: str  # the carrier's name in answers and logs ("Twilio")

    def __init__(self, flow: CarrierFlow, credential: Secret | None, messages: Messages) -> None:
        self._flow = flow
        self._credential = credential
        self._messages = messages

    # --- the skeleton -----------------------------------------------------------------------------------

    def answer(self, request: Request, deadline: float) -> Response:
        """The call comes in (or the caller keyed in the PIN asked for): the router's decision, as an answer."""
        fields = self.verified(request)
        if not isinstance(fields, Fields):
            return fields
        try:
            call = self.answering(self.call(fields, request), fields, request)
        except Refusal as exc:
            return refused(exc)
        return self._flow.answer(call, deadline, self.answers(request))

    def status(self, request: Request, deadline: float) -> Response:
        """How the leg to Millis went (or the call ended): the call's next move."""
        fields = self.verified(request)
        if not isinstance(fields, Fields):
            return fields
        try:
            call = self.call(fields, request)
            report = self.report(fields, request)
            attempt = self._flow.attempt(request.query_pairs, call.call_ref)
        except Refusal as exc:
            return refused(exc)
        return self._flow.report(call, attempt, report, deadline, self.answers(request))

    def fallback(self, request: Request) -> Response:
        """The answer when the function itself fails: the caller hears the failure message, not the carrier's."""
        return self.answers(request).farewell()

    def verified(self, request: Request) -> Fields | Response:
        """The request's fields, once its signature is verified; else the refusal (nothing was read)."""
        verified = authenticate(self._credential, self.title, lambda keys: Fields(self.verify(request, keys)))
        if isinstance(verified, Rejected):
            return self._signed_elsewhere(request) or verified.response
        return verified

    def _signed_elsewhere(self, request: Request) -> Response | None:
        """A refused request that its Host header's URL would have verified (signed for ``localhost`` while the
        stack checks against ``127.0.0.1``, or for the execute-api domain while PUBLIC_BASE_URL names a custom
        one) is told so, instead of a bare signature mismatch. It is refused all the same."""
        host = request.headers.get("host", "").strip()
        parts = urlsplit(request.url)
        if not host or host.lower() == parts.netloc.lower() or any(c in host for c in "/?#@ "):
            return None
        elsewhere = replace(request, url=urlunsplit(parts._replace(netloc=host)))
        again = authenticate(self._credential, self.title, lambda keys: self.verify(elsewhere, keys))
        if isinstance(again, Rejected):
            return None
        expected, signed = f"{parts.scheme}://{parts.netloc}", f"{parts.scheme}://{host}"
        logger.warning("Refused a carrier webhook signed for another host", extra={"carrier": self.title})
        return reply(
            403,
            f"Forbidden: the request is signed for {signed}, but this stack checks {self.title} signatures against"
            f" {expected} (PUBLIC_BASE_URL, else the API's own URL): sign for {expected}, or set PUBLIC_BASE_URL"
            " to the URL the carrier is given.",
        )

    # --- what a carrier says ------------------------------------------------------------------------------

    def verify(self, request: Request, keys: list[str]) -> Pairs:
        """The request's fields, if it is signed with one of ``keys``; raises ``InvalidSignature`` (or
        ``BadRequest`` for a request whose signed parts cannot be read) otherwise, and ``SignedButUnreadable`` for
        a signed body not in the carrier's format."""
        raise NotImplementedError

    def call(self, fields: Fields, request: Request) -> InboundCall:
        """The call the fields describe, each in its documented form (``Refusal`` otherwise)."""
        raise NotImplementedError

    def report(self, fields: Fields, request: Request) -> DialReport:
        """What a status request says about the leg to Millis."""
        raise NotImplementedError

    def answers(self, request: Request) -> Answers:
        """The carrier's dialect, with this stack's URLs as the request reached them."""
        raise NotImplementedError

    def answering(self, call: InboundCall, fields: Fields, request: Request) -> InboundCall:
        """The call as the answer route takes it: the PIN prompt's redirect says nothing was keyed in."""
        if self._flow.declined(request.query_pairs, call.call_ref):
            return replace(call, pin="")
        return call


# --- carriers as descriptors -------------------------------------------------------------------------------

type WebhooksFactory = Callable[[CarrierFlow, Secret | None, "InboundSettings", "Clock"], CarrierWebhooks]


@dataclass(frozen=True, slots=True)
class WebhookRoute:
    method: str
    path: str
    handler: str  # the CarrierWebhooks method that answers it: "answer" or "status"


@dataclass(frozen=True, slots=True)
class Carrier:
    """One carrier, as the inbound function (and later the call-control API) needs to know it."""

    name: str  # the carrier's key: in records (source), markers, metrics, number routes ("twilio")
    title: str  # "Twilio"
    routes: tuple[WebhookRoute, ...]
    credential_variable: str  # the credential's environment variable locally (TWILIO_AUTH_TOKEN)
    credential_setting: str  # the InboundSettings attribute naming its secret in AWS
    patience: str  # its key in millis_sip.patience.PATIENCE
    webhooks: WebhooksFactory
    # Another phone system on the same routes, known by a header of its own: (header, its patience key).
    also: tuple[str, str] | None = None
    # Outbound calls (docs/outbound.md): the dialect of the answer and status URLs the carrier's call-control API
    # is given (its answer_path and status_path are routes of the inbound function); None: no outbound calls.
    outbound: Callable[[InboundSettings], OutboundDialect] | None = None
    # Transfers (docs/transfers.md): the stack moves this carrier's calls with its call control, and serves the
    # transfer's whisper and status URLs (edges/carriers/transfer.py) in the outbound dialect.
    transfers: bool = False
    # How the carrier requests the whisper URL (Vonage fetches an endpoint's onAnswer NCCO with GET).
    whisper_methods: tuple[str, ...] = ("POST",)
    # The carrier moves a call to a URL, not to a document given inline (Plivo's aleg_url): the stack serves the
    # transfer's call document at /carriers/{name}/transfer/answer (the dialect's ``transfer``).
    transfer_answer: bool = False
    # The route the carrier asks when the Millis leg of a call sends SIP REFER (Twilio's <Dial referUrl>): the
    # stack answers a dial to the target, or refuses (docs/transfers.md, "By SIP REFER"). None: the carrier has none.
    refer_path: str | None = None

"""The call transaction: one attempt at one phone call, answered exactly once however often the phone system
asks (docs/router.md, "Exactly once").

The first invocation to ask owns the call through a leased marker in the store (its owner token, a lease that
ends at its deadline, the fingerprint of the call's numbers). Another invocation asking for the same call
waits for the owner to finish, within its own deadline, then replays the owner's answer; one that finds the
lease run out takes the call over. The owner ends the transaction once: it commits (the call's record, or the
claim of a registration, written together with the marker in one store transaction, and only while it still
owns the marker), fails it with a reason (a retry gets the same refusal), or releases it (a retry starts
afresh). Every store round trip gets the call's store budget (``ports.store_budget``); a store that does not
answer in time counts as down, and the call goes on without the transaction.

The router decides what the call gets; this module only keeps the answer exactly once. What the store said
when the transaction opened is one ``Opened`` value (owned, store down, answered, refused, in progress,
challenged, conflict): the marker itself stays in here. The reads a decision needs may run beside the
ownership write (``open(..., reads=...)``); only the PIN prompt (``ask_pin``) is particular to inbound calls.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from millis_sip.core.calls import CallRecord
from millis_sip.core.errors import BridgeError, LeaseLost, StoreUnavailable
from millis_sip.core.ports import (
    Clock,
    InboundCallStore,
    Metrics,
    NoMetrics,
    Parallel,
    TransactionLock,
    TransactionMark,
    TransactionState,
    call_fingerprint,
    in_sequence,
    store_budget,
    transaction_key,
    within_store_budget,
)

log = logging.getLogger(__name__)

STORE_RESERVE_SECONDS = 0.5  # kept back from Millis for the DynamoDB write and the answer
POLL_SECONDS = 0.1  # while another invocation of the same call is still working
MARKER_LIFETIME = timedelta(days=1)  # how long a call's marker outlives its registration


class Opened(StrEnum):
    """What the store said when the transaction was opened: the transaction's first outcome."""

    OWNED = "owned"  # this invocation owns the call: decide, then commit, fail or release
    STORE_DOWN = "store_down"  # the store did not answer: decide without a transaction (nothing is recorded)
    ANSWERED = "answered"  # an earlier invocation answered: replay its answer (``answered_record``)
    REFUSED = "refused"  # an earlier invocation refused the call: the same refusal (``reason``)
    IN_PROGRESS = "in_progress"  # another invocation still owns it and its lease outlives this deadline
    CHALLENGED = "challenged"  # the caller is being asked for a PIN and has not answered yet
    CONFLICT = "conflict"  # the call id was first asked for other numbers: another call reusing the id


_OPENED_BY_STATE = {
    TransactionState.DONE: Opened.ANSWERED,
    TransactionState.FAILED: Opened.REFUSED,
    TransactionState.PENDING: Opened.IN_PROGRESS,
    TransactionState.CHALLENGED: Opened.CHALLENGED,
}


class PinPrompt(NamedTuple):
    """The PIN prompt the caller is answering: the registration it unlocks and the wrong PINs so far."""

    candidate: str
    tries: int


class CallTransaction:
    """One attempt at one call, as one invocation holds it (``Transactions.open``). ``opened`` says what the
    store said; ``lock`` is the marker as this invocation owns it (None unless ``Opened.OWNED``)."""

    def __init__(
        self,
        transactions: Transactions,
        key: str,
        owner: str,
        fingerprint: str,
        deadline: float,
        mark: TransactionMark | None,
    ) -> None:
        self._t = transactions
        self._mark = mark
        self.key = key
        self.deadline = deadline
        if mark is None:
            self.opened = Opened.STORE_DOWN
        elif mark.fingerprint is not None and mark.fingerprint != fingerprint:
            self.opened = Opened.CONFLICT
        else:
            self.opened = _OPENED_BY_STATE.get(mark.state, Opened.OWNED)
        self.lock = TransactionLock(key, owner) if self.opened is Opened.OWNED else None

    @property
    def state(self) -> str | None:
        """The marker's state as the store answered it (for the log); None when the store was down."""
        return self._mark.state.value if self._mark else None

    @property
    def answered_call_id(self) -> str | None:
        """The Millis call an earlier invocation answered with (``Opened.ANSWERED``)."""
        return self._mark.millis_call_id if self._mark else None

    @property
    def reason(self) -> str:
        """Why an earlier invocation refused the call (``Opened.REFUSED``)."""
        return (self._mark.reason if self._mark else None) or "failed"

    @property
    def challenge(self) -> PinPrompt | None:
        """The PIN prompt the caller is answering, when this invocation took a challenged call back."""
        if self.lock is not None and self._mark is not None and self._mark.millis_call_id:
            return PinPrompt(self._mark.millis_call_id, self._mark.tries)
        return None

    def within[T](self, call: Callable[[], T]) -> T:
        """``call()`` within the store's budget; ``StoreUnavailable`` when it does not answer in time."""
        return within_store_budget(self._t.parallel, self._t.clock, self.deadline, call)

    def answered_record(self) -> CallRecord | None:
        """The record an earlier invocation answered with (``Opened.ANSWERED``); None when it cannot be read."""
        call_id = self.answered_call_id
        if not call_id:
            return None
        try:
            return self.within(lambda: self._t.store.get(call_id))
        except StoreUnavailable:
            return None

    def commit(self, record: CallRecord, *, claim: bool) -> bool:
        """Write ``record`` (a claim of a registration, or a new call) and finish the transaction, in one store
        transaction. False when a claim lost to another call. ``LeaseLost`` when a retry took the call over;
        ``StoreUnavailable`` (or another ``BridgeError``) when the store failed."""
        now = self._t.clock.now()
        return self.within(lambda: self._t.store.commit_inbound(record, lock=self.lock, claim=claim, now=now))

    def commit_new(self, record: CallRecord) -> None:
        """Store a new call and finish; a store that fails (or was down when the transaction opened) does not
        stop the call (the record rides with the phone system until a later event writes it), and a lost lease
        leaves the retry's record standing."""
        if self.lock is None:
            log.error(
                "DynamoDB is unavailable: bridging without storing; a later event writes the record",
                extra={"millis_call_id": record.call_id},
            )
            return
        try:
            self.commit(record, claim=False)
        except LeaseLost:
            # This invocation outlived its lease and a retry answered the phone system instead: the retry's
            # record stands, and this Millis call is never bridged (its session lapses unused).
            log.warning(
                "A retry took this phone call over; this registration goes unused",
                extra={"millis_call_id": record.call_id},
            )
            self._t.metrics.inbound_failure("lease_lost")
        except BridgeError as exc:
            log.error(
                "Could not store the phone call's record; bridging anyway",
                extra={"millis_call_id": record.call_id, "error": str(exc)},
            )

    def fail(self, reason: str, *, record: CallRecord | None = None) -> None:
        """Finish without an agent: a retry gets the same refusal. ``record``: a call that was made but cannot be
        used, stored first (as it stands) so that it is not lost."""
        lock = self.lock
        if lock is None:
            return
        if record is not None:
            self.commit_new(record)
        try:
            self.within(lambda: self._t.store.fail_transaction(lock, reason))
        except StoreUnavailable as exc:
            log.warning("Could not mark the phone call's transaction failed", extra={"error": str(exc)})

    def release(self) -> None:
        """Give the call up without an answer: the phone system's next try starts afresh."""
        lock = self.lock
        if lock is None:
            return
        try:
            self.within(lambda: self._t.store.release_transaction(lock))
        except StoreUnavailable as exc:  # its lease runs out by the deadline, and a retry then takes it over
            log.warning("Could not release the phone call's transaction", extra={"error": str(exc)})

    def ask_pin(self, candidate: str, *, tries: int) -> bool:
        """Record that the caller is being asked for ``candidate``'s PIN; False when the store cannot."""
        lock = self.lock
        if lock is None:
            return False
        try:
            self.within(lambda: self._t.store.challenge_transaction(lock, candidate=candidate, tries=tries))
        except StoreUnavailable as exc:
            log.warning("Cannot ask for the PIN (the store is unavailable)", extra={"error": str(exc)})
            return False
        return True


@dataclass
class Transactions:
    """Opens call transactions on one store."""

    store: InboundCallStore
    clock: Clock
    ttl: timedelta
    metrics: Metrics = field(default_factory=NoMetrics)
    parallel: Parallel = in_sequence

    def open(
        self,
        carrier: str,
        call_ref: str,
        attempt: int,
        *,
        caller: str | None,
        dialed: str | None,
        deadline: float,
        resume: bool = False,
        reads: Sequence[Callable[[], Any]] = (),
    ) -> tuple[CallTransaction, list[Any]]:
        """Own the call's attempt, or learn who does and how far they got; with ``reads`` run beside the
        ownership write (they do not depend on it), each within the store's budget: their results, or the
        exception each raised (a ``TimeoutError`` for one that did not answer in time). ``resume``: the caller
        is answering a PIN prompt, so a challenged marker is taken back."""
        key = transaction_key(carrier, call_ref, attempt)
        owner = uuid.uuid4().hex  # this invocation: the marker's later writes hold only while it owns the call
        fingerprint = call_fingerprint(caller, dialed)

        def begin() -> TransactionMark:
            now = self.clock.now()
            return self.store.begin_transaction(
                key,
                owner=owner,
                now=now,
                lease_seconds=max(deadline - self.clock.monotonic(), 0.0),
                expires_at=now + self.ttl + MARKER_LIFETIME,
                resume_challenge=resume,
                fingerprint=fingerprint,
            )

        mark, *results = self.parallel(begin, *reads, timeout=store_budget(self.clock, deadline))
        if isinstance(mark, (StoreUnavailable, TimeoutError)):
            log.warning("Cannot record the phone call's transaction; going on", extra={"error": str(mark) or "timeout"})
            mark = None
        elif isinstance(mark, BaseException):  # a bug, not the store
            raise mark
        if mark is not None and mark.state is TransactionState.PENDING and mark.fingerprint in (None, fingerprint):
            mark = self._wait_for_owner(begin, mark, deadline)
        return CallTransaction(self, key, owner, fingerprint, deadline, mark), results

    def _wait_for_owner(
        self, begin: Callable[[], TransactionMark], mark: TransactionMark, deadline: float
    ) -> TransactionMark | None:
        """Another invocation has the call: ask again until it finishes or its lease runs out (then this one
        takes over), bounded by the deadline. None: the store became unavailable."""
        while mark.state is TransactionState.PENDING:
            if deadline - self.clock.monotonic() < STORE_RESERVE_SECONDS + POLL_SECONDS:
                return mark  # the other invocation still has it and its lease is valid
            self.clock.sleep(POLL_SECONDS)
            try:
                mark = within_store_budget(self.parallel, self.clock, deadline, begin)
            except StoreUnavailable as exc:
                log.warning("Cannot record the phone call's transaction; going on", extra={"error": str(exc)})
                return None
        return mark

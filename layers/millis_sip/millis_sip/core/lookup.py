"""Find a call again: by its Millis call id, or (for a carrier) by the key it was registered with; list calls;
cancel a registration no phone call has claimed yet."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from millis_sip.core.calls import CallRecord, CallStatus, Direction
from millis_sip.core.errors import CallNotCancelable, CallNotFound, InvalidRequest
from millis_sip.core.ports import CallPage, CallQuery, CallStore, Clock

log = logging.getLogger(__name__)

LIST_DEFAULT_WINDOW = timedelta(hours=24)  # GET /calls without since: the last 24 hours
LIST_MAX_WINDOW = timedelta(days=7)  # since to until; calls live CallTtlSeconds (at most a day) after their last move
LIST_DEFAULT_LIMIT = 50
CANCELED_BY_API = "canceled_by_api"


@dataclass(frozen=True, slots=True)
class ListCalls:
    """What a client asks GET /calls for (every field optional): the core fills in the window."""

    limit: int = LIST_DEFAULT_LIMIT
    since: datetime | None = None
    until: datetime | None = None
    status: CallStatus | None = None
    direction: Direction | None = None
    carrier: str | None = None
    agent_id: str | None = None
    number: str | None = None
    after: str | None = None


class CallDirectory:
    def __init__(self, store: CallStore, *, clock: Clock, ttl_seconds: int | None = None) -> None:
        self._store = store
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_seconds) if ttl_seconds else None

    def get(self, call_id: str) -> CallRecord:
        record = self._store.get(call_id)
        if record is None:
            raise CallNotFound(f"No call with id {call_id!r}.")
        return record.as_seen_at(self._clock.now())

    def lookup(self, lookup_key: str) -> CallRecord:
        """The newest registration for ``lookup_key`` that has not expired and that no call has used yet."""
        now = self._clock.now()
        record = self._store.latest_for(lookup_key, now)
        if record is None:
            raise CallNotFound("No unexpired registration for that lookup_key.")
        return record.as_seen_at(now)

    def list(self, request: ListCalls, *, max_limit: int) -> CallPage:
        """Calls created in [since, until), newest first. ``until`` defaults to now, ``since`` to LIST_DEFAULT_WINDOW
        before ``until``; the window may span LIST_MAX_WINDOW at most."""
        if not 1 <= request.limit <= max_limit:
            raise InvalidRequest(f"limit must be between 1 and {max_limit}.")
        now = self._clock.now()
        until = _to_ms(request.until or now)  # created_at is stored to the millisecond
        since = _to_ms(request.since or until - LIST_DEFAULT_WINDOW)
        if since >= until:
            raise InvalidRequest("since must be before until.")
        if until - since > LIST_MAX_WINDOW:
            raise InvalidRequest(f"since to until may span {LIST_MAX_WINDOW.days} days at most.")
        query = CallQuery(
            since=since,
            until=until,
            limit=request.limit,
            now=now,
            status=request.status,
            direction=request.direction,
            carrier=request.carrier,
            agent_id=request.agent_id,
            number=request.number,
            after=request.after,
        )
        page = self._store.list_calls(query)
        return CallPage(tuple(record.as_seen_at(now) for record in page.calls), page.next)

    def cancel(self, call_id: str) -> CallRecord:
        """Cancel a registration no phone call has claimed yet: it becomes ``canceled`` and leaves the lookup
        index, so no carrier lookup or phone call can take it any more. Millis is not told (it has no cancel):
        its registration lapses unused. A cancel repeated answers the canceled record; a registration claimed
        first, or one that has expired, is ``CallNotCancelable`` naming its status."""
        record = self._store.get(call_id)
        if record is None:
            raise CallNotFound(f"No call with id {call_id!r}.")
        now = self._clock.now()
        seen = record.as_seen_at(now)
        if seen.status is CallStatus.CANCELED and record.direction is Direction.INBOUND:
            return seen
        if seen.status is not CallStatus.REGISTERED:
            raise CallNotCancelable(
                f"Call {call_id} is {seen.status.value}: only a registration no phone call has claimed, or an "
                "outbound call that is queued or ringing, can be canceled."
            )
        expires_at = (now + self._ttl).replace(microsecond=0) if self._ttl else record.expires_at
        canceled = replace(
            record, status=CallStatus.CANCELED, reason=CANCELED_BY_API, ended_at=now, expires_at=expires_at
        )
        if not self._store.cancel_registration(canceled, now=now):
            current = self._store.get(call_id)
            if current is None:
                raise CallNotFound(f"No call with id {call_id!r}.")
            current = current.as_seen_at(self._clock.now())
            if current.status is CallStatus.CANCELED:
                return current  # another DELETE of the same registration was first
            raise CallNotCancelable(f"Call {call_id} is {current.status.value} now: it can no longer be canceled.")
        log.info("Registration canceled", extra={"call_id": call_id})
        return canceled


def _to_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

"""Find a call again: by its Millis call id, or (for a carrier) by the key it was registered with."""

from __future__ import annotations

from millis_sip.core.calls import CallRecord
from millis_sip.core.errors import CallNotFound
from millis_sip.core.ports import CallStore, Clock


class CallDirectory:
    def __init__(self, store: CallStore, *, clock: Clock) -> None:
        self._store = store
        self._clock = clock

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

"""In-memory stand-ins for the two ports, for unit tests of logic that does not care about storage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from millis_sip.errors import Attempt, BridgeError, CallAlreadyExists
from millis_sip.millis import MillisRegistration
from millis_sip.models import CallRecord
from millis_sip.regions import MillisRegion


class FakeGateway:
    def __init__(self, fail_with: BridgeError | None = None) -> None:
        self.fail_with = fail_with
        self.calls: list[dict[str, Any]] = []
        self.budgets: list[float] = []

    def register(
        self, payload: Mapping[str, Any], *, budget: float, regions: Sequence[MillisRegion] | None = None
    ) -> MillisRegistration:
        self.calls.append(dict(payload))
        self.budgets.append(budget)
        if self.fail_with is not None:
            raise self.fail_with
        n = len(self.calls)
        return MillisRegistration(
            f"fake-{n}", f"sip:call-fake-{n}@sip.fake.example", MillisRegion.US_WEST, (Attempt("us-west", "ok", 12.0),)
        )


class MemoryStore:
    def __init__(self, fail_with: BridgeError | None = None) -> None:
        self.items: dict[str, CallRecord] = {}
        self.fail_with = fail_with
        self.operations = 0

    def _touch(self) -> None:
        self.operations += 1
        if self.fail_with is not None:
            raise self.fail_with

    def put_new(self, record: CallRecord) -> None:
        self._touch()
        if record.call_id in self.items:
            raise CallAlreadyExists(record.call_id)
        self.items[record.call_id] = record

    def get(self, call_id: str) -> CallRecord | None:
        self._touch()
        return self.items.get(call_id)

    def latest_for(self, lookup_key: str, now: datetime) -> CallRecord | None:
        self._touch()
        live = [r for r in self.items.values() if r.lookup_key == lookup_key and r.expires_at > now]
        return max(live, key=lambda r: r.created_at, default=None)

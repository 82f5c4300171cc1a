"""Events onto the bus with PutEvents: as few requests as its limits allow (10 entries, 256 KB a request), the
entries it did not take (FailedEntryCount) sent again, and what still failed said by the stream record it came
from, so the Lambda event source mapping retries from there (ReportBatchItemFailures). Not Powertools' batch
utility: its processor hands records to a handler one at a time, which would put each record's events in a
request of its own; here the events of the whole batch share requests, and the answer has the same shape."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from millis_sip.edges.events.changes import SOURCE, CallChanges, CallEvent

log = logging.getLogger("millis_sip.edges.events")

MAX_ENTRIES = 10  # PutEvents: at most 10 entries a request
MAX_REQUEST_BYTES = 256 * 1024  # ... and 256 KB, counted as EventBridge counts an entry's size
TIME_BYTES = 14  # an entry's Time counts 14 bytes
ATTEMPTS = 3  # PutEvents requests for one entry, at most, within one invocation


class EventBus(Protocol):
    """The part of botocore's EventBridge client used here (the stand-in bus in dev/ has it too)."""

    def put_events(self, *, Entries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]: ...  # noqa: N803


@dataclass(frozen=True, slots=True)
class Pending:
    """An entry waiting to be put, and the stream record (its sequence number) it came from."""

    sequence: str
    entry: dict[str, Any]
    carrier: str | None = None

    @property
    def size(self) -> int:
        return entry_size(self.entry)


def entry_size(entry: Mapping[str, Any]) -> int:
    """An entry's size as PutEvents counts it (Time, Source, DetailType, Detail, Resources; UTF-8 bytes)."""
    size = TIME_BYTES if "Time" in entry else 0
    for name in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(name, "")).encode())
    size += sum(len(r.encode()) for r in entry.get("Resources", ()))
    return size


def batches(pending: Sequence[Pending]) -> list[list[Pending]]:
    """``pending`` in order, cut into requests PutEvents takes."""
    out: list[list[Pending]] = []
    current: list[Pending] = []
    size = 0
    for item in pending:
        if current and (len(current) == MAX_ENTRIES or size + item.size > MAX_REQUEST_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(item)
        size += item.size
    if current:
        out.append(current)
    return out


class EventPublisher:
    """Stream records in, the sequence numbers of those whose events could not all be put out."""

    def __init__(
        self,
        bus: EventBus,
        *,
        bus_name: str,
        changes: CallChanges,
        attempts: int = ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        counted: Callable[[str, str | None], None] = lambda detail_type, carrier: None,
    ) -> None:
        self._bus, self._bus_name, self._changes = bus, bus_name, changes
        self._attempts, self._sleep, self._counted = attempts, sleep, counted

    def entry(self, event: CallEvent) -> dict[str, Any]:
        return {
            "Source": SOURCE,
            "DetailType": event.detail_type,
            "Detail": json.dumps(event.detail, separators=(",", ":")),
            "Time": event.time,
            "EventBusName": self._bus_name,
        }

    def publish(self, records: Iterable[Mapping[str, Any]]) -> list[str]:
        """Put the events of ``records``; returns the sequence numbers of the records not fully published
        (an unreadable record is one of them: it goes to the dead-letter queue once its retries are spent)."""
        pending: list[Pending] = []
        failed: list[str] = []
        for record in records:
            sequence = str(record.get("dynamodb", {}).get("SequenceNumber", ""))
            try:
                events = self._changes.events(record)
            except (KeyError, ValueError, TypeError) as exc:
                log.error(
                    "A stream record of the calls table could not be read",
                    extra={"sequence_number": sequence, "error": type(exc).__name__},
                )
                failed.append(sequence)
                continue
            pending += [Pending(sequence, self.entry(event), event.detail.get("carrier")) for event in events]
        for batch in batches(pending):
            failed += self._put(batch)
        return list(dict.fromkeys(failed))

    def _put(self, batch: list[Pending]) -> list[str]:
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(0.1 * 2**attempt)
            try:
                answer = self._bus.put_events(Entries=[p.entry for p in batch])
            except Exception as exc:  # noqa: BLE001 - botocore's errors after its own retries: try again, then report
                log.warning("PutEvents failed", extra={"error": type(exc).__name__, "attempt": attempt + 1})
                continue
            results = answer.get("Entries", [])
            for item, result in zip(batch, results, strict=False):
                if result.get("EventId"):
                    self._counted(item.entry["DetailType"], item.carrier)
            if not answer.get("FailedEntryCount"):
                return []
            codes = sorted({str(r.get("ErrorCode")) for r in results if r.get("ErrorCode")})
            log.warning(
                "EventBridge did not take every event",
                extra={"failed": answer["FailedEntryCount"], "error_codes": codes, "attempt": attempt + 1},
            )
            batch = [p for p, result in zip(batch, results, strict=True) if result.get("ErrorCode")]
        log.error("Events not published after retries", extra={"events": len(batch)})
        return [p.sequence for p in batch]

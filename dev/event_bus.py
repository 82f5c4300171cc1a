"""A stand-in EventBridge bus for local runs and tests (like dev/carrier_api.py's stand-ins for the carriers): it
takes PutEvents requests, checks each against botocore's model of the real API (the request, and the answer it
gives), and keeps the events as EventBridge would deliver them to a rule's target. ``fail_next`` makes it refuse
entries, as EventBridge does with FailedEntryCount."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

ACCOUNT = "123456789012"


def _operation() -> Any:
    session = botocore.session.get_session()
    return session.get_service_model("events").operation_model("PutEvents")


_PUT_EVENTS = _operation()


def check(params: Mapping[str, Any], shape: Any) -> None:
    report = ParamValidator().validate(dict(params), shape)
    if report.has_errors():
        raise ValueError(report.generate_report())


class LocalEventBus:
    """``put_events(Entries=[...])`` as botocore's EventBridge client takes it; ``events`` as a rule receives them."""

    def __init__(self, name: str = "millis-sip-bridge-events", region: str = "us-west-2") -> None:
        self.name, self.region = name, region
        self.events: list[dict[str, Any]] = []
        self.requests = 0
        self._failures: list[str] = []
        self._refused: set[str] = set()
        self._refused_code = "InternalFailure"
        self._lock = threading.Lock()

    @property
    def arn(self) -> str:
        return f"arn:aws:events:{self.region}:{ACCOUNT}:event-bus/{self.name}"

    def fail_next(self, count: int, code: str = "ThrottlingException") -> None:
        """The next ``count`` entries are refused with ``code`` (EventBridge's per-entry ErrorCode)."""
        with self._lock:
            self._failures += [code] * count

    def refuse_calls(self, call_ids: set[str], code: str = "InternalFailure") -> None:
        """Every entry about these calls is refused, on every attempt."""
        self._refused = set(call_ids)
        self._refused_code = code

    def put_events(self, **params: Any) -> dict[str, Any]:
        check(params, _PUT_EVENTS.input_shape)
        entries: Sequence[Mapping[str, Any]] = params["Entries"]
        if len(entries) > 10:
            raise ValueError("PutEvents takes at most 10 entries")  # the model has no maxItems; the API does
        results: list[dict[str, Any]] = []
        with self._lock:
            self.requests += 1
            for entry in entries:
                code = self._failures.pop(0) if self._failures else None
                if code is None and json.loads(entry["Detail"]).get("call_id") in self._refused:
                    code = self._refused_code
                if code is not None:
                    results.append({"ErrorCode": code, "ErrorMessage": "refused by the stand-in"})
                    continue
                if entry.get("EventBusName") not in (self.name, self.arn):
                    results.append({"ErrorCode": "ResourceNotFoundException", "ErrorMessage": "no such bus"})
                    continue
                event = self._delivered(entry)
                self.events.append(event)
                results.append({"EventId": event["id"]})
        answer = {"FailedEntryCount": sum(1 for r in results if "ErrorCode" in r), "Entries": results}
        check(answer, _PUT_EVENTS.output_shape)
        return answer

    def _delivered(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        moment = entry.get("Time") or datetime.now(tz=UTC)
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": entry["DetailType"],
            "source": entry["Source"],
            "account": ACCOUNT,
            "time": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": list(entry.get("Resources", [])),
            "detail": json.loads(entry["Detail"]),
        }

    def line(self, event: Mapping[str, Any]) -> str:
        """One short line for an event (what `make demo` prints): time, detail-type, call, carrier, the move."""
        detail = event["detail"]
        before, after = detail["previous_status"], detail["status"]
        move = f"{before} -> {after}" if before not in (None, after) else after
        extra = "".join(f" {k}={detail[k]}" for k in ("reason", "duration_seconds") if detail.get(k) is not None)
        return (
            f"{event['time'][11:19]} {event['detail-type']:<22} {detail['call_id'][:22]:<22} "
            f"{detail['carrier'] or '-':<10} {move}{extra}"
        )

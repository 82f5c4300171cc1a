"""Time, as the domain sees it: one clock port (wall time, monotonic time, sleep) and the record's time format."""

from __future__ import annotations

import time
from datetime import UTC, datetime

ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class SystemClock:
    """The real clock (tests pass a fake with the same three methods: ``tests/support/clock.py``)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def iso(moment: datetime) -> str:
    """``2026-11-26T04:43:26.997Z``: UTC, milliseconds. Sorts as text (the lookup index's sort key)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def from_iso(text: str) -> datetime:
    """The inverse of ``iso`` (ValueError for anything else)."""
    return datetime.strptime(text, ISO_FORMAT).replace(tzinfo=UTC)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)

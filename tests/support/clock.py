"""The one fake clock of the test suites: wall time and monotonic time move together, only when told to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class FakeClock:
    """The core's Clock port. ``sleep`` advances time (and records how long was slept)."""

    def __init__(self, start: datetime = T0) -> None:
        self._start = start
        self.t = 1000.0
        self.slept = 0.0

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.t - 1000.0)

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.t += seconds

    def advance(self, seconds: float) -> None:
        self.t += seconds

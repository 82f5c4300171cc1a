"""The load test in its small form: concurrent registrations and lookups through a pool of execution
environments (one process each), with faults switched on midway. Nothing acknowledged may be lost or
duplicated. `make load` runs the full-size version."""

from __future__ import annotations

import pytest

from dev.load_test import run

pytestmark = pytest.mark.integration


def test_concurrent_registrations_with_faults_lose_and_duplicate_nothing() -> None:
    report = run(requests=60, concurrency=8)
    assert len(report.acknowledged) == 60, report.table()
    assert report.stored == 60
    assert report.lost == []
    assert report.duplicates == 0
    assert report.mismatched_keys == []
    assert report.given_up == 0
    assert report.surprises == []
    assert report.lookups_ok == report.lookups == 60
    assert report.answers[503] > 0  # the faults did bite, and the clients' retries recovered

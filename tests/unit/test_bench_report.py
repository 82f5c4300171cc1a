"""The benchmark suite's reporting (no timing here: speed is measured by `make bench`, not by tests):
the committed results render as the table and the plot the README shows."""

from __future__ import annotations

import json
from pathlib import Path

from dev.bench.__main__ import plot, table
from tests.conftest import ROOT

RESULTS = json.loads((ROOT / "docs" / "benchmarks.json").read_text())


def test_the_table_reports_every_measure_and_every_target() -> None:
    text = table(RESULTS)
    for needle in (
        "cold start",
        "warm hot path: POST /calls",
        "warm hot path: NEW_INBOUND_CALL",
        "failover",
        "footprint",
    ):
        assert needle in text
    assert text.count("(target <=") == len(RESULTS["targets"]) == 6


def test_the_plot_is_drawn(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.png"
    plot(RESULTS, out)
    assert out.read_bytes().startswith(b"\x89PNG")


def test_the_readme_shows_the_committed_plot() -> None:
    assert "![benchmarks](docs/benchmarks.png)" in (ROOT / "README.md").read_text()
    assert (ROOT / "docs" / "benchmarks.png").is_file()

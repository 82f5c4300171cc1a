"""The benchmark suite's reporting (no timing here: speed is measured by `make bench`, not by tests):
a results dict renders as the table and the plot, and `make bench` writes them where a user expects
(bench-results/, untracked) unless told to publish them."""

from __future__ import annotations

import json
from pathlib import Path

from dev.bench.__main__ import DEFAULT_OUT, TARGETS, plot, table, write
from tests.conftest import ROOT

# The published results (docs/performance.md shows them): a complete results dict as `make bench` writes it.
RESULTS = json.loads((ROOT / "docs" / "benchmarks.json").read_text())


def test_the_table_reports_every_measure_and_every_target() -> None:
    text = table(RESULTS)
    for needle in (
        "cold start",
        "cold-start CPU of the import",
        "warm: POST /calls",
        "warm: NEW_INBOUND_CALL",
        "warm: Twilio webhook",
        "warm: GET /route",
        "time to answer Twilio, warm",
        "time to answer Twilio, cold",
        "failover",
        "footprint",
    ):
        assert needle in text
    assert text.count("(target <=") == len(RESULTS["targets"]) == len(TARGETS) + 1


def test_the_table_shows_the_numbers_of_the_results() -> None:
    text = table(RESULTS)
    for name, measured in RESULTS["cold_start"].items():
        assert f"{measured['median_ms']:8.1f} ms" in text, name
        assert f"x{measured['ratio']:.2f}" in text, name
    for key in ("hot_path_api", "hot_path_chime", "hot_path_twilio", "hot_path_route"):
        assert f"p50 {RESULTS[key]['overhead_p50_us']:6.0f} us" in text, key
    assert f"(+{RESULTS['failover']['black_hole_extra_ms']:.1f}," in text
    for name, (value, limit) in RESULTS["targets"].items():
        verdict = "met " if value <= limit else "MISS"
        assert f"{verdict} {name:<58} {value:10.2f}  (target <= {limit:.2f})" in text


def test_a_missed_target_says_so() -> None:
    missed = {**RESULTS, "targets": {"cold_start ApiFunction": (2.5, 1.15)}}
    assert "MISS cold_start ApiFunction" in table(missed)


def test_the_plot_is_drawn(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.png"
    plot(RESULTS, out)
    assert out.read_bytes().startswith(b"\x89PNG")


def test_results_are_written_as_json_and_png_into_the_folder_given(tmp_path: Path) -> None:
    data, image = write(RESULTS, tmp_path / "out")
    assert (data, image) == (tmp_path / "out" / "benchmarks.json", tmp_path / "out" / "benchmarks.png")
    assert json.loads(data.read_text()) == RESULTS
    assert image.read_bytes().startswith(b"\x89PNG")


def test_by_default_results_go_to_an_untracked_folder_not_docs() -> None:
    assert DEFAULT_OUT == ROOT / "bench-results"
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "bench-results/" in ignored

"""Tables over runs: mean and spread per group, columns by evaluation protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qmimic.runs.summary import summarize, write_summary


def run(voc07: float, coco: float, seconds: float = 120.0) -> dict:
    return {
        "test/voc07_map": voc07,
        "test/map": coco,
        "test/map_50": voc07,
        "parameters": 49267,
        "gflops": 0.124,
        "wall_time_s": seconds,
    }


def test_mean_and_sample_spread_in_points():
    # 0.40, 0.44, 0.48: mean 0.44; sample std sqrt((0.04^2 + 0 + 0.04^2) / 2) = 0.04 -> 44.0 ± 4.0
    table, summary = summarize({"qmimic": [run(0.40, 0.2), run(0.44, 0.2), run(0.48, 0.2)]})
    assert "| qmimic | 44.0 ± 4.0 | 20.0 ± 0.0 |" in table
    assert summary["qmimic"]["metrics"]["test/voc07_map"]["mean"] == pytest.approx(0.44)
    assert summary["qmimic"]["metrics"]["test/voc07_map"]["std"] == pytest.approx(0.04)
    assert summary["qmimic"]["runs"] == 3
    assert summary["qmimic"]["minutes"] == pytest.approx(2.0)
    assert "| 49,267 | 0.124 | 2.0 | 3 |" in table


def test_a_single_run_has_no_spread_and_wider_runs_get_wider_columns():
    wider = {"test/wider_easy": 0.5, "test/wider_medium": 0.4, "test/wider_hard": 0.2}
    table, _ = summarize({"teacher": [run(0.6, 0.3)], "face": [wider]})
    header = table.splitlines()[0]
    assert "VOC07 mAP@0.5" in header and "WIDER hard AP" in header
    assert "| teacher | 60.0 |" in table
    assert "| face | - | 50.0 | 40.0 | 20.0 |" in table


def test_written_files_agree(tmp_path: Path):
    table = write_summary(tmp_path, {"scratch": [run(0.28, 0.18), run(0.30, 0.19)]})
    assert (tmp_path / "summary.md").read_text() == table
    stored = json.loads((tmp_path / "summary.json").read_text())
    assert stored["scratch"]["metrics"]["test/map"]["values"] == [0.18, 0.19]


def test_summary_lists_each_distinct_environment_once():
    here, there = {"processor": "A", "threads": 2}, {"processor": "B", "threads": 2}
    runs = [{**run(0.3, 0.2), "environment": e} for e in (here, there, here)]
    _, summary = summarize({"scratch": runs, "mimic": [run(0.3, 0.2)]})
    assert summary["scratch"]["environments"] == [here, there]
    assert summary["mimic"]["environments"] == []


def test_ordering_verdict_reads_the_means():
    from qmimic.runs.summary import ordering_verdict

    runs = {"qmimic": [run(0.40, 0.2), run(0.42, 0.2)], "mimic": [run(0.38, 0.2)]}
    assert ordering_verdict(runs) == ""  # scratch missing: no verdict
    runs["scratch"] = [run(0.30, 0.1)]
    assert "holds (qmimic 41.0 / mimic 38.0 / scratch 30.0)" in ordering_verdict(runs)
    runs["scratch"] = [run(0.39, 0.1)]
    assert "does NOT hold" in ordering_verdict(runs)

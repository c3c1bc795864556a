"""Tables and plots of benchmark results (benchmarks/report.py)."""

from __future__ import annotations

import json
from pathlib import Path

import machine_load
import pytest

from helpers import bench_results_example
from qmimic.errors import UserError
from report import (
    load_results,
    markdown_report,
    merged_with_earlier,
    plot_latency,
    plot_quality,
    plot_width,
)


def test_markdown_report_shows_every_section_with_figures_in_points():
    text = markdown_report(bench_results_example())
    for heading in ("Quality", "mAP against width", "CPU latency", "training, evaluation", "int8"):
        assert f"## {heading}" in text or heading in text
    assert "| ResNet18 qmimic | 28.0 ± 1.0 | 14.0 ± 0.0 | 1,000 |" in text
    assert "22.5x faster" in text and "target >= 10x: met" in text
    assert "Width 1 not trained: too slow on CPU" in text
    assert "1.097 x (student + teacher)" in text
    assert "| onnxruntime int8 | 10.0 | 27.6 | 13.8 |" in text
    assert "1.60x the speed of float32, 0.4 points of VOC07 mAP lost" in text
    assert "| student | 45.0 | 35.0 | 30.0 | 40.0 | 25.0 | 38.0 |" in text
    assert "student / floor 1.75 (target <= 1.3)" in text
    assert "40.0x faster than the teacher" in text
    assert "fastest runtime for the student: OpenVINO float32, 25.0 ms (1.40x PyTorch" in text
    assert "onnxruntime int8 over float32: teacher 3.00x, student 0.75x" in text
    assert "OpenVINO int8 over float32: teacher 2.89x, student 0.66x" in text
    assert "openvino: 1 images, 0 unmatched" in text
    assert "| `aten::mkldnn_convolution` | 23 | 15.00 | 50.0% |" in text
    assert "int8 export: the teacher" not in text  # a section that was not run


def test_teacher_int8_section_has_its_own_heading():
    results = bench_results_example()
    results["int8_teacher"] = {**results["int8"], "model": "teacher seed 0", "speedup": 2.0}
    text = markdown_report(results)
    assert "## int8 export: the teacher" in text and "teacher seed 0: int8 is 2.00x" in text


def test_sizes_section_has_a_column_per_size_and_the_ratio():
    results = bench_results_example()
    results["sizes"] = {
        "sizes": [[320, 533], [600, 1000]], "threads": 2, "load_average": 0.2,
        "rows": [{"model": "teacher", "ms": {"320x533": 300.0, "600x1000": 1000.0}},
                 {"model": "student", "ms": {"320x533": 10.0, "600x1000": 20.0}}],
        "teacher_over_student": {"320x533": 30.0, "600x1000": 50.0},
    }  # fmt: skip
    text = markdown_report(results)
    assert "| model | 320x533 | 600x1000 |" in text
    assert "| student | 10.0 | 20.0 |" in text and "| teacher / student | 30.0x | 50.0x |" in text


def test_photos_section_reads_as_a_table():
    results = bench_results_example()
    results["photos"] = {
        "threads": 2, "load_average": 0.1,
        "decode": {"images": 300, "pil_images_per_s": 700.0, "torchvision_images_per_s": 1400.0,
                   "same_pixels": True},
        "loader": [{"images_per_s": 90.0, "images": 200, "batch_size": 4, "num_workers": 0}],
        "steps": {"student_ms": 80.0, "teacher_forward_ms": 60.0, "distill_ms": 154.0,
                  "ratio": 1.1, "target": 1.15, "batch": 4, "sizes": [[320, 400], [300, 400]]},
    }  # fmt: skip
    text = markdown_report(results)
    assert "## Speed: training on real photographs (Pascal VOC 2007)" in text
    assert (
        "| JPEG decoding, torchvision decode_jpeg | 1400 images/s | same pixels as PIL: True |"
        in text
    )
    assert "| train loader (voc_cpu) | 90.0 images/s | batch 4, 0 workers, 200 images |" in text
    assert "batch 4 of real photos (300x400, 320x400 px in)" in text
    assert "1.100 x (student + teacher); target <= 1.15" in text


def test_int8_line_says_gained_when_int8_scores_higher():
    results = bench_results_example()
    results["int8"]["voc07_map_cost"] = -0.002
    assert "0.2 points gained" in markdown_report(results)


def test_report_leaves_out_sections_that_were_not_run():
    results = bench_results_example()
    del results["widths"], results["int8"], results["inference"]
    text = markdown_report(results)
    assert "int8" not in text and "against width" not in text and "## Quality" in text


def test_load_results_names_the_missing_file_and_the_fix(tmp_path: Path):
    with pytest.raises(
        UserError, match=r"no benchmark results at .*results.json; run `make bench`"
    ):
        load_results(tmp_path / "results.json")
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_results(tmp_path / "results.json")


def test_plots_are_written_as_png(tmp_path: Path):
    pytest.importorskip("matplotlib")
    results = bench_results_example()
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    loaded = load_results(path)
    for plot, name in ((plot_quality, "q.png"), (plot_width, "w.png"), (plot_latency, "l.png")):
        figure = plot(loaded, tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert figure.axes[0].get_title()


def test_header_says_when_training_runs_were_reused():
    results = bench_results_example()
    assert "reused" not in markdown_report(results)
    results["meta"].update(reused_runs=True, runs_dir="outputs/bench")
    assert "found under outputs/bench and reused" in markdown_report(results)


def test_header_says_when_models_were_timed_with_freed_memory_kept():
    results = bench_results_example()
    assert "freed memory" not in markdown_report(results)
    results["meta"]["reuse_memory"] = True
    header = markdown_report(results).split("\n\n")[1]
    assert "Models timed for inference ran with freed memory kept in the process" in header
    assert "training, loader and evaluation timings ran before that was set" in header


def test_a_merged_run_keeps_the_other_sections_each_dated_with_its_own_run():
    old = bench_results_example()
    old["meta"].update(started="2026-01-01T00:00:00+00:00", load_average=0.5)
    new_meta = {**old["meta"], "started": "2026-02-02T00:00:00+00:00", "load_average": 1.25,
                "sections": ["inference"]}  # fmt: skip
    merged = merged_with_earlier(old, new_meta)
    assert merged["quality"] == old["quality"] and merged["meta"] == new_meta
    merged["speed"] = old["speed"]  # the new run measures speed again: no longer dated earlier
    merged["earlier"].pop("speed")
    text = markdown_report(merged)
    quality_part = text.split("## Quality")[1].split("##")[0]
    speed_part = text.split("## Speed: CPU latency per image")[1].split("##")[0]
    assert "From an earlier run: " in quality_part and "2026-01-01" in quality_part
    assert "load average 0.50" in quality_part
    assert "earlier run" not in speed_part
    assert "started 2026-02-02" in text.split("##")[0]
    assert "kept from earlier runs (`--merge`)" in text.split("##")[0]
    again = merged_with_earlier(merged, {**new_meta, "started": "2026-03-03T00:00:00+00:00"})
    assert again["earlier"]["quality"]["started"] == "2026-01-01T00:00:00+00:00"  # its own run
    assert again["earlier"]["speed"]["started"] == "2026-02-02T00:00:00+00:00"


def test_the_load_witness_counts_other_processes_cpu_time_only(monkeypatch):
    # (seconds, system busy CPU seconds, this process's CPU seconds) at start and at the read
    samples = iter([(100.0, 50.0, 10.0), (110.0, 65.0, 20.0)])
    monkeypatch.setattr(machine_load, "_sample", lambda: next(samples))
    monkeypatch.setattr(machine_load.psutil, "cpu_count", lambda: 2)
    load = machine_load.OtherLoad()
    # 15 busy seconds on the system, 10 of them this process's: 5 of 10 s x 2 CPUs
    assert load.share() == pytest.approx(0.25)
    meta = {**bench_results_example()["meta"], "others_cpu_share": 0.25}
    assert "other processes used 25.0% of the CPUs' time meanwhile" in markdown_report(
        {"meta": meta}
    )


def test_the_load_witness_reads_this_machine():
    load = machine_load.OtherLoad()
    sum(i * i for i in range(200_000))  # this process's own work is not "other"
    assert 0.0 <= load.share() <= 1.5  # bounded whatever else runs (timer granularity aside)
